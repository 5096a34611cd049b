"""The adapter page's tabs (Model card | Files and versions | Evaluation | Lineage, and Settings for
its owners): one URL each, each showing its own part, the charts' data and plotly.js (served by the
hub, loaded by the Evaluation tab only), and the base model's baseline row."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from hub.web import views
from tests.hub.web.builders import add_version, make_adapter, make_suite, score

pytestmark = pytest.mark.django_db

TABS = {"": "card", "files/": "files", "evaluation/": "evaluation", "lineage/": "lineage"}
PLOTLY = "/static/vendor/plotly/plotly.min.js"


def get(client: Client, path: str, **params: str) -> str:
    response = client.get(path, params)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def tab_links(html: str) -> dict[str, str]:
    nav = html.split('<nav class="adapter-tabs"', 1)[1].split("</nav>", 1)[0]
    return dict(re.findall(r'<a href="([^"]+)" data-tab="([a-z]+)"', nav))


def current_tab(html: str) -> str:
    found = re.search(r'data-tab="([a-z]+)" class="current" aria-current="page"', html)
    assert found is not None
    return found.group(1)


def test_each_tab_has_its_own_url_and_shows_only_its_own_part(alice: Any) -> None:
    adapter = make_adapter(alice, "sql", card="# SQL adapter\n\nTurns questions into SQL.")
    score(adapter.versions.get(), make_suite(), 0.75)

    pages = {tab: get(Client(), f"/alice/sql/{suffix}") for suffix, tab in TABS.items()}

    for tab, html in pages.items():
        assert current_tab(html) == tab
        assert list(tab_links(html).values()) == ["card", "files", "evaluation", "lineage"]  # no Settings for visitors
        assert 'class="adapter-name"' in html and "hub-test/tiny-llama" in html  # the head on every tab
    card = pages["card"]
    assert "<h1>SQL adapter</h1>" in card and 'id="details"' in card and 'id="use"' in card
    # The card no longer carries the files, versions, scores and lineage below it.
    for elsewhere in ('id="files"', 'id="versions"', 'id="evaluation"', 'id="lineage"', "data-file="):
        assert elsewhere not in card, elsewhere
    assert 'data-file="adapter_model.safetensors"' in pages["files"] and 'id="versions"' in pages["files"]
    assert 'tr data-suite="capitals"' in pages["evaluation"] and 'id="files"' not in pages["evaluation"]
    assert "was not composed from other adapters" in pages["lineage"] and 'id="files"' not in pages["lineage"]


def test_tab_links_keep_the_chosen_version_and_old_links_still_open_the_card(alice: Any) -> None:
    adapter = make_adapter(alice, "sql", versions=2)
    add_version(adapter, label="v3.0")

    links = tab_links(get(Client(), "/alice/sql/files/", version="1"))
    assert links == {
        "/alice/sql/?version=1": "card",
        "/alice/sql/files/?version=1": "files",
        "/alice/sql/evaluation/?version=1": "evaluation",
        "/alice/sql/lineage/?version=1": "lineage",
    }
    assert 'badge-version">v1' in get(Client(), "/alice/sql/evaluation/", version="1")
    assert 'badge-version">v3 · v3.0' in get(Client(), "/alice/sql/", version="v3.0")
    assert tab_links(get(Client(), "/alice/sql/"))["/alice/sql/files/"] == "files"


def test_an_unknown_tab_and_a_private_adapters_tabs_are_404s(alice: Any, bob: Any) -> None:
    make_adapter(alice, "sql")
    make_adapter(alice, "secret", visibility="private")
    as_bob, as_alice = Client(), Client()
    as_bob.force_login(bob)
    as_alice.force_login(alice)

    assert Client().get("/alice/sql/nonsense/").status_code == 404
    for suffix in TABS:
        assert as_bob.get(f"/alice/secret/{suffix}").status_code == 404
        assert Client().get(f"/alice/secret/{suffix}").status_code == 404
        assert as_alice.get(f"/alice/secret/{suffix}").status_code == 200


def test_an_adapter_without_versions_says_so_on_every_tab(alice: Any) -> None:
    make_adapter(alice, "empty", versions=0)
    for suffix in TABS:
        assert "No version published yet" in get(Client(), f"/alice/empty/{suffix}")


def test_one_version_shows_its_scores_as_a_table_without_one_dot_charts_or_plotly(alice: Any) -> None:
    adapter = make_adapter(alice, "sql")
    for suite, value in ((make_suite(name="capitals"), 0.8), (make_suite(name="wiki", higher_is_better=False), 9.1)):
        score(adapter.versions.get(), suite, value)

    html = get(Client(), "/alice/sql/evaluation/")

    assert 'tr data-suite="capitals"' in html and 'tr data-suite="wiki"' in html
    assert "0.8000" in html and "9.1000" in html
    assert 'class="chart-box"' not in html and "adapter-charts" not in html
    assert "plotly" not in html  # nothing to draw: plotly.js is not fetched


def test_several_versions_give_one_chart_per_suite_and_metric_and_skip_suites_scored_once(alice: Any) -> None:
    adapter = make_adapter(alice, "sql", versions=3)
    capitals, wiki, once = (
        make_suite(name="capitals"),
        make_suite(name="wiki", higher_is_better=False),
        make_suite(name="once"),
    )
    for version, (a, b) in zip(adapter.versions.order_by("number"), [(0.5, 12.0), (0.7, 9.5), (0.8, 9.1)], strict=True):
        score(version, capitals, a)
        score(version, wiki, b)
    score(adapter.versions.get(number=2), once, 0.4)

    html = get(Client(), "/alice/sql/evaluation/", version="2")

    data = json.loads(html.split('<script id="adapter-charts" type="application/json">', 1)[1].split("</script>")[0])
    assert [(c["suite"], c["metric"], c["higher_is_better"]) for c in data] == [
        ("capitals", "exact_match", True),
        ("wiki", "perplexity", False),
    ]
    assert data[1]["points"] == [[1, 12.0], [2, 9.5], [3, 9.1]] and data[1]["baseline"] is None
    assert 'data-current-version="2"' in html
    assert 'tr data-suite="once"' in html  # its one score is in the table, not on a one-dot chart
    # plotly.js from the hub itself, then the script that draws with it: on this tab only.
    assert f'<script src="{PLOTLY}" defer></script>' in html and "/static/hub/adapter-charts.js" in html
    assert "cdn" not in html.lower()
    for suffix in ("", "files/", "lineage/"):
        assert "plotly" not in get(Client(), f"/alice/sql/{suffix}")


def test_plotly_js_is_a_static_file_of_the_hub_from_the_installed_plotly_package() -> None:
    found = finders.find("vendor/plotly/plotly.min.js")
    assert found is not None, "hub/settings.py lists plotly's package_data under vendor/plotly"
    assert "site-packages/plotly/package_data" in str(found).replace("\\", "/")
    with open(found, "rb") as script:
        assert b"plotly.js" in script.read(400)


def test_the_base_models_own_scores_show_as_a_baseline_row_and_line_when_known(
    alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = make_adapter(alice, "sql", versions=2)
    capitals, wiki = make_suite(name="capitals"), make_suite(name="wiki", higher_is_better=False)
    for version, (a, b) in zip(adapter.versions.order_by("number"), [(0.5, 12.0), (0.8, 9.0)], strict=True):
        score(version, capitals, a)
        score(version, wiki, b)

    without = get(Client(), "/alice/sql/evaluation/")
    assert "base model (baseline)" not in without and "vs base" not in without

    monkeypatch.setattr(
        views, "baseline_scores_of", lambda base: {"capitals": {"exact_match": 0.25}, "wiki": {"perplexity": 8.5}}
    )
    html = get(Client(), "/alice/sql/evaluation/")

    row = html.split('<tr class="baseline" data-baseline-suite="capitals">', 1)[1].split("</tr>", 1)[0]
    assert "base model (baseline)" in row and "0.2500" in row
    assert re.search(r'class="num delta better">\+0\.5500<', html)  # 0.80 vs 0.25, higher is better
    assert re.search(r'class="num delta worse">\+0\.5000<', html)  # perplexity 9.0 vs 8.5: worse
    data = json.loads(html.split('<script id="adapter-charts" type="application/json">', 1)[1].split("</script>")[0])
    assert [c["baseline"] for c in data] == [0.25, 8.5]


def test_the_settings_tab_is_listed_for_writers_only(alice: Any, bob: Any, org: Any) -> None:
    make_adapter(org, "tool")
    as_alice, as_bob = Client(), Client()
    as_alice.force_login(alice)  # owner of acme
    as_bob.force_login(bob)  # reader of acme

    assert tab_links(get(as_alice, "/acme/tool/")).get("/acme/tool/settings/") == "settings"
    assert "settings" not in tab_links(get(as_bob, "/acme/tool/")).values()
    assert "data-owner-action" not in get(as_bob, "/acme/tool/files/")


def test_every_tab_runs_a_bounded_number_of_queries(alice: Any, django_assert_max_num_queries: Any) -> None:
    adapter = make_adapter(alice, "sql", versions=20)
    suites = [make_suite(name=f"suite-{i}") for i in range(3)]
    for version in adapter.versions.all():
        for suite in suites:
            score(version, suite, version.number / 20)
    client = Client()
    client.force_login(alice)  # the owner's controls too

    for suffix in [*TABS, "settings/"]:
        with django_assert_max_num_queries(18):
            get(client, f"/alice/sql/{suffix}")


def test_the_card_lists_the_data_sets_the_model_card_names(alice: Any) -> None:
    adapter = make_adapter(alice, "qa")
    assert 'class="datasets"' not in get(Client(), "/alice/qa/")
    adapter.datasets = ["squad", "alice/private-set"]
    adapter.save(update_fields=["datasets"])
    assert '<dd class="datasets">squad, alice/private-set</dd>' in get(Client(), "/alice/qa/")

"""The adapter page and its tabs: model card, metadata and snippets (the card tab), versions, files
and downloads (files), scores and validation (evaluation), lineage, and privacy. The tabs
themselves, the charts and the owners' actions: test_adapter_tabs.py, test_adapter_owner_actions.py."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from registry.access import Actor
from registry.models import LineageRole, VersionParent
from registry.services import yank_version
from tests.hub.web.builders import add_version, make_adapter, make_suite, push_folder, score

pytestmark = pytest.mark.django_db

EVIL_CARD = """---
base_model: hub-test/tiny-llama
---
# Fine adapter

Some **bold** claims and a [paper](https://arxiv.org/abs/2106.09685).

<script>alert("card")</script>
<img src="x.png" onerror="alert('img')">
<a href="javascript:alert('link')">click</a>
<p style="color:red" onclick="alert('p')">styled</p>
<iframe src="https://evil.example"></iframe>

| metric | value |
|---|---|
| accuracy | 0.9 |
"""


def page(client: Client, ref: str, **params: str) -> str:
    response = client.get(f"/{ref}/", params)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def test_the_model_card_is_rendered_from_markdown_and_no_script_gets_through(alice: Any) -> None:
    make_adapter(alice, "fine", card=EVIL_CARD)

    html = page(Client(), "alice/fine")
    card = html.split('<div class="markdown">', 1)[1].split("</section>", 1)[0]

    assert "<h1>Fine adapter</h1>" in card and "<strong>bold</strong>" in card
    assert 'href="https://arxiv.org/abs/2106.09685"' in card and "<table>" in card
    assert "base_model:" not in card  # front matter is metadata, not prose
    for forbidden in ("<script", "alert(", "onerror", "onclick", "javascript:", "<iframe", "style="):
        assert forbidden not in card, forbidden


def test_it_shows_metadata_versions_files_and_snippets_of_a_real_push(
    alice: Any, lora_dir: Path, lora_dir_2: Path
) -> None:
    push_folder(
        alice, "alice/sql", lora_dir, task="text-to-sql", tags=["sql"], license="apache-2.0", description="SQL helper"
    )
    second = push_folder(alice, "alice/sql", lora_dir_2).version
    yank_version(actor=Actor(user=alice), version=second, reason="trained on the test set")

    html = page(Client(), "alice/sql")

    # The newest non-yanked version is shown by default.
    assert 'badge-version">v1' in html
    for fact in ("hub-test/tiny-llama", "LoRA", "apache-2.0", "text-to-sql", "SQL helper", "#sql", "q_proj", "v_proj"):
        assert fact in html, fact
    assert re.search(r"<dt>Rank</dt><dd[^>]*>4</dd>", html) and re.search(r"<dt>Alpha</dt><dd[^>]*>8</dd>", html)
    assert "PeftModel.from_pretrained(base, &quot;alice/sql&quot;, revision=&quot;1&quot;)" in html
    assert "HF_ENDPOINT=http://testserver" in html and "ahub pull alice/sql:1" in html

    html = page(Client(), "alice/sql/files")  # the "Files and versions" tab
    assert 'badge-version">v1' in html
    versions = html.split('id="versions"', 1)[1].split("</section>", 1)[0]
    assert 'data-version="2"' in versions and "yanked" in versions and "trained on the test set" in versions
    files = html.split('id="files"', 1)[1].split("</section>", 1)[0]
    sha = hashlib.sha256((lora_dir / "adapter_model.safetensors").read_bytes()).hexdigest()
    assert f'data-sha256="{sha}"' in files
    assert 'href="/api/v1/adapters/alice/sql/versions/1/files/adapter_model.safetensors"' in files

    yanked = page(Client(), "alice/sql", version="2")
    assert "Version 2 was yanked: trained on the test set" in yanked
    assert "revision=&quot;2&quot;" in yanked


def test_the_download_button_serves_the_file_with_the_sha256_shown(alice: Any, lora_dir: Path) -> None:
    push_folder(alice, "alice/sql", lora_dir)
    client = Client()
    html = page(client, "alice/sql/files")

    shown = re.findall(r'<tr data-file="([^"]+)">.*?data-sha256="([0-9a-f]{64})"', html, re.S)
    assert [path for path, _ in shown] == sorted(p.name for p in lora_dir.iterdir() if p.is_file())
    for path, sha in shown:
        url = re.search(rf'href="([^"]+)" download data-download="{re.escape(path)}"', html)
        assert url is not None
        response = client.get(url.group(1))
        assert response.status_code == 200
        assert hashlib.sha256(b"".join(response.streaming_content)).hexdigest() == sha


def test_scores_show_as_a_table_and_as_a_chart_per_suite_across_versions(alice: Any) -> None:
    adapter = make_adapter(alice, "sql", versions=3)
    exact, ppl = make_suite(name="capitals"), make_suite(name="wiki-ppl", higher_is_better=False)
    for version, (a, b) in zip(adapter.versions.order_by("number"), [(0.5, 12.0), (0.7, 9.5), (0.8, 9.1)], strict=True):
        score(version, exact, a)
        score(version, ppl, b)

    html = page(Client(), "alice/sql/evaluation")

    scores = html.split('id="evaluation"', 1)[1].split("</section>", 1)[0]
    assert 'data-suite="capitals"' in scores and "0.8000" in scores and "9.1000" in scores
    history = html.split('id="history"', 1)[1].split("</section>", 1)[0]
    charts = re.findall(r'<figure class="chart-box" id="[^"]+" data-suite="([^"]+)" data-metric="([^"]+)">', history)
    assert charts == [("capitals", "exact_match"), ("wiki-ppl", "perplexity")]
    data = json.loads(history.split('<script id="adapter-charts" type="application/json">', 1)[1].split("</script>")[0])
    assert data[0]["points"] == [[1, 0.5], [2, 0.7], [3, 0.8]] and data[0]["higher_is_better"] is True
    assert "(higher is better)" in history and ">v3<" in history  # the table shown without JavaScript


def test_a_composed_version_shows_its_lineage_graph_with_weights_and_its_validation_badge(alice: Any, bob: Any) -> None:
    sql, chat = make_adapter(alice, "sql"), make_adapter(alice, "chat")
    hidden = make_adapter(bob, "private-base", visibility="private")
    hybrid = make_adapter(alice, "hybrid", versions=0)
    child = add_version(hybrid, validation="rejected")
    child.validation_reasons = [
        "capitals: exact_match 0.41 is below the best parent's 0.80",
        # The shape the validation gate records (registry.evaluations.GateCheck.as_dict).
        {
            "suite": "capitals-qa",
            "metric": "exact_match",
            "value": 0.5,
            "best_parent": "alice/sql:1",
            "best_parent_value": 1.0,
            "required": 0.95,
            "higher_is_better": True,
            "passed": False,
        },
        {
            "suite": "capitals-ppl",
            "metric": "perplexity",
            "value": 3.0,
            "best_parent": "alice/sql:1",
            "best_parent_value": 3.1,
            "required": 3.263,
            "higher_is_better": False,
            "passed": True,
        },
    ]
    child.save(update_fields=["validation_reasons"])
    for position, (parent, weight) in enumerate([(sql, 0.7), (chat, -0.3), (hidden, 0.5)]):
        VersionParent.objects.create(
            child=child,
            parent=parent.versions.get(),
            weight=weight,
            position=position,
            role=LineageRole.NEGATED if weight < 0 else LineageRole.INPUT,
        )

    html = page(Client(), "alice/hybrid")
    assert "✗ rejected" in html and "the checks" in html  # the badge, and a link to the checks
    html = page(Client(), "alice/hybrid/evaluation")
    assert "✗ capitals-qa: exact_match 0.500, needs ≥ 0.950 (from alice/sql:1&#x27;s 1.000)" in html
    assert "✓ capitals-ppl: perplexity 3.000, needs ≤ 3.263" in html
    assert "{&#x27;suite&#x27;" not in html, "gate checks are shown as sentences, not raw data"

    assert "✗ rejected" in html and "below the best parent" in html

    html = page(Client(), "alice/hybrid/lineage")
    lineage = html.split('id="lineage"', 1)[1].split("</section>", 1)[0]
    svg = lineage.split("</svg>", 1)[0]
    assert "alice/sql:1" in svg and "alice/chat:1" in svg and "alice/hybrid:1" in svg
    assert ">+0.7<" in svg and ">-0.3<" in svg and 'class="edge edge-negated"' in svg
    assert "private-base" not in html  # a parent the viewer cannot see is left out entirely

    parent_page = page(Client(), "alice/sql/lineage")
    assert "alice/hybrid:1" in parent_page.split('id="lineage"', 1)[1]


def test_a_private_adapter_is_a_404_for_others_and_shown_to_its_owner(alice: Any, bob: Any) -> None:
    make_adapter(alice, "secret", visibility="private")
    as_bob, as_alice = Client(), Client()
    as_bob.force_login(bob)
    as_alice.force_login(alice)

    assert Client().get("/alice/secret/").status_code == 404
    assert as_bob.get("/alice/secret/").status_code == 404
    assert "HF_TOKEN" in page(as_alice, "alice/secret")
    assert Client().get("/alice/absent/").status_code == 404
    assert Client().get("/alice/secret/", {"version": "1"}).status_code == 404


def test_an_unknown_version_is_a_404_and_a_label_works(alice: Any) -> None:
    adapter = make_adapter(alice, "sql")
    add_version(adapter, label="v2.0")

    assert Client().get("/alice/sql/", {"version": "7"}).status_code == 404
    assert 'badge-version">v2 · v2.0' in page(Client(), "alice/sql", version="v2.0")


def test_the_adapter_page_runs_a_bounded_number_of_queries(alice: Any, django_assert_max_num_queries: Any) -> None:
    adapter = make_adapter(alice, "sql", versions=20)
    suite = make_suite()
    for version in adapter.versions.all():
        score(version, suite, version.number / 20)

    with django_assert_max_num_queries(16):
        page(Client(), "alice/sql")

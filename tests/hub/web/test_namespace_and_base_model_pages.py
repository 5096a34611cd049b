"""Namespace pages, the base model index, and base model pages with their leaderboards."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from tests.hub.web.builders import make_adapter, make_suite, score

pytestmark = pytest.mark.django_db


def shown(html: str) -> list[str]:
    return re.findall(r'data-adapter="([^"]+)"', html)


def test_a_namespace_page_lists_the_adapters_one_may_see(org: Any, alice: Any, bob: Any) -> None:
    make_adapter(org, "public-one", downloads=5)
    make_adapter(org, "internal", visibility="private", downloads=9)
    make_adapter(alice, "elsewhere")
    as_alice, as_bob = Client(), Client()
    as_alice.force_login(alice)
    as_bob.force_login(bob)

    anonymous = Client().get("/acme/").content.decode()
    assert shown(anonymous) == ["acme/public-one"]
    assert "1 adapter you can see" in anonymous
    assert "alice" in anonymous and "owner" in anonymous  # members are listed
    assert shown(as_bob.get("/acme/").content.decode()) == ["acme/internal", "acme/public-one"]  # a reader
    assert shown(as_alice.get("/acme/", {"sort": "name"}).content.decode()) == ["acme/internal", "acme/public-one"]
    assert "Upload an adapter" in as_alice.get("/acme/").content.decode()
    assert "Upload an adapter" not in as_bob.get("/acme/").content.decode()
    assert Client().get("/nobody/").status_code == 404


def test_the_base_model_index_counts_visible_adapters(alice: Any, bob: Any) -> None:
    make_adapter(alice, "a")
    make_adapter(alice, "b", visibility="private")
    make_adapter(bob, "c", base="hub-test/other")

    html = Client().get("/models/").content.decode()

    rows = dict(
        re.findall(r'<a href="/models/([^"]+)/">.*?</a></td><td>.*?</td>\s*<td class="num">(\d+)</td>', html, re.S)
    )
    assert rows == {"hub-test/tiny-llama": "1", "hub-test/other": "1"}


def test_a_base_model_page_shows_its_adapters_and_a_leaderboard_per_suite(alice: Any, bob: Any) -> None:
    exact = make_suite(name="capitals")
    ppl = make_suite(name="wiki-ppl", higher_is_better=False)
    good, okay = make_adapter(alice, "good"), make_adapter(bob, "okay")
    hidden = make_adapter(bob, "secret-champion", visibility="private")
    for adapter, a, b in ((good, 0.9, 8.0), (okay, 0.6, 7.0), (hidden, 0.99, 1.0)):
        score(adapter.versions.get(), exact, a)
        score(adapter.versions.get(), ppl, b)

    html = Client().get("/models/hub-test/tiny-llama/").content.decode()

    assert sorted(shown(html)) == ["alice/good", "bob/okay"]
    boards = dict(re.findall(r'data-suite="([^"]+)">(.*?)</table>', html, re.S))
    ranked = {suite: re.findall(r'\?version=1">([^<]+)</a>', board) for suite, board in boards.items()}
    assert ranked == {"capitals": ["alice/good", "bob/okay"], "wiki-ppl": ["bob/okay", "alice/good"]}
    assert "secret-champion" not in html
    assert f"sort=score&amp;suite={exact.pk}" in html
    assert Client().get("/models/absent/model/").status_code == 404
    assert "base model (baseline)" not in html  # none measured yet


def test_each_leaderboard_ends_with_the_bare_base_models_score(alice: Any) -> None:
    from registry.models import BaselineEvaluation

    exact, other = make_suite(name="capitals"), make_suite(name="wiki-ppl", higher_is_better=False)
    score(make_adapter(alice, "good").versions.get(), exact, 0.9)
    BaselineEvaluation.objects.create(suite=exact, status="succeeded", metric="exact_match", value=0.125)
    BaselineEvaluation.objects.create(suite=other, status="failed", error_code="x", error_message="y")

    html = Client().get("/models/hub-test/tiny-llama/").content.decode()

    boards = dict(re.findall(r'data-suite="([^"]+)">(.*?)</div>', html, re.S))
    (row,) = re.findall(r'<tr class="baseline".*?</tr>', boards["capitals"], re.S)
    assert "hub-test/tiny-llama" in row and re.findall(r'<td class="num muted">([^<]+)</td>', row) == ["–", "0.1250"]
    assert "baseline" not in boards["wiki-ppl"] and "No results yet." in boards["wiki-ppl"]


def test_namespace_and_base_model_pages_run_a_fixed_number_of_queries(
    alice: Any, django_assert_num_queries: Any
) -> None:
    suite = make_suite()
    for i in range(30):
        score(make_adapter(alice, f"a{i}", tags=["x", "y"]).versions.get(), suite, i / 30)

    # namespace page: the namespace, count, page, tags, newest versions;
    # base model page: the base model, count, page, tags, newest versions, suites, one leaderboard per
    # suite, the suites' baselines, its stored files.
    for url, expected in (("/alice/", 5), ("/models/hub-test/tiny-llama/", 9)):
        for size in ("5", "30"):
            with django_assert_num_queries(expected):
                assert Client().get(url, {"page_size": size}).status_code == 200

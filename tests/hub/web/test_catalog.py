"""The catalog page: search, facets with counts, sorts, pages, and privacy."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tests.helpers import postgresql_only
from tests.hub.web.builders import add_version, make_adapter, make_suite, score

pytestmark = pytest.mark.django_db


def shown(response: Any) -> list[str]:
    """The adapters on the page, in order."""
    return re.findall(r'data-adapter="([^"]+)"', response.content.decode())


def facet_counts(response: Any, field: str) -> dict[str, int]:
    html = response.content.decode()
    section = html.split(f'data-facet="{field}"', 1)[1].split("</section>", 1)[0]
    pairs = re.findall(r'data-value="([^"]+)".*?<span class="count">(\d+)</span>', section, re.S)
    return {value: int(count) for value, count in pairs}


@pytest.fixture
def catalog(alice: Any, bob: Any) -> None:
    make_adapter(alice, "sql-lora", task="text-to-sql", tags=["sql", "code"], downloads=50, description="Writes SQL")
    make_adapter(alice, "chat-lora", task="chat", tags=["chat"], downloads=10, versions=2)
    make_adapter(bob, "sql-ia3", method="ia3", task="text-to-sql", tags=["sql"], downloads=30, base="hub-test/other")
    make_adapter(bob, "poems", method="dora", task="poetry", tags=["poetry"], downloads=5, base="hub-test/other")
    make_adapter(alice, "secret-sql", task="text-to-sql", tags=["sql", "internal"], downloads=99, visibility="private")


def test_cards_show_each_adapter_s_key_facts(catalog: None) -> None:
    response = Client().get("/")

    assert response.status_code == 200
    assert shown(response) == ["alice/sql-lora", "bob/sql-ia3", "alice/chat-lora", "bob/poems"]
    html = response.content.decode()
    card = html.split('data-adapter="alice/chat-lora"', 1)[1].split("</article>", 1)[0]
    assert "LoRA" in card and "hub-test/tiny-llama" in card and "chat" in card
    assert "⬇ 10" in card and "v2 · r8" in card
    assert "<strong>4</strong> adapters" in html


def test_words_search_names_descriptions_tasks_and_tags(catalog: None) -> None:
    assert shown(Client().get("/", {"q": "sql"})) == ["alice/sql-lora", "bob/sql-ia3"]
    assert shown(Client().get("/", {"q": "writes"})) == ["alice/sql-lora"]
    assert shown(Client().get("/", {"q": "poetry"})) == ["bob/poems"]
    assert shown(Client().get("/", {"q": "bob sql"})) == ["bob/sql-ia3"]


def test_facets_filter_and_count_over_the_other_filters(catalog: None) -> None:
    response = Client().get("/", {"method": "lora"})

    assert shown(response) == ["alice/sql-lora", "alice/chat-lora"]
    # A facet counts as if its own filter were off, so the other methods stay reachable.
    assert facet_counts(response, "method") == {"lora": 2, "ia3": 1, "dora": 1}
    assert facet_counts(response, "base_model") == {"hub-test/tiny-llama": 2}
    assert facet_counts(response, "task") == {"chat": 1, "text-to-sql": 1}
    assert facet_counts(response, "tag") == {"chat": 1, "code": 1, "sql": 1}
    assert 'class="chip"' in response.content.decode()

    both = Client().get("/", {"base_model": "hub-test/other", "tag": "sql"})
    assert shown(both) == ["bob/sql-ia3"]
    assert facet_counts(both, "base_model") == {"hub-test/tiny-llama": 1, "hub-test/other": 1}


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("downloads", ["alice/sql-lora", "bob/sql-ia3", "alice/chat-lora", "bob/poems"]),
        ("name", ["alice/chat-lora", "alice/sql-lora", "bob/poems", "bob/sql-ia3"]),
        ("recent", ["bob/poems", "bob/sql-ia3", "alice/chat-lora", "alice/sql-lora"]),
    ],
)
def test_it_sorts(catalog: None, sort: str, expected: list[str]) -> None:
    assert shown(Client().get("/", {"sort": sort})) == expected


def test_it_ranks_by_a_suite_s_best_score(alice: Any) -> None:
    suite = make_suite()
    good, bad = make_adapter(alice, "good"), make_adapter(alice, "bad", downloads=100)
    make_adapter(alice, "unscored", downloads=1000)
    make_adapter(alice, "elsewhere", base="hub-test/other")
    score(good.versions.get(), suite, 0.9)
    score(bad.versions.get(), suite, 0.4)

    for params in ({"sort": f"score:{suite.pk}"}, {"sort": "score", "suite": str(suite.pk)}):
        response = Client().get("/", params)
        assert shown(response) == ["alice/good", "alice/bad", "alice/unscored"]
        assert "★ 0.9000" in response.content.decode()
    # An unknown suite falls back to the default order instead of failing.
    assert Client().get("/", {"sort": "score", "suite": "999"}).status_code == 200


def test_pages_split_long_results(alice: Any) -> None:
    for i in range(25):
        make_adapter(alice, f"a{i:02d}", downloads=i, versions=0)

    first = Client().get("/", {"page_size": "10"})
    third = Client().get("/", {"page_size": "10", "page": "3"})

    assert shown(first) == [f"alice/a{i:02d}" for i in range(24, 14, -1)]
    assert shown(third) == [f"alice/a{i:02d}" for i in range(4, -1, -1)]
    assert 'rel="next"' in first.content.decode() and "page=2" in first.content.decode()
    assert Client().get("/", {"page": "99"}).status_code == 200


def test_private_adapters_are_shown_to_their_namespace_only_counts_included(
    catalog: None, alice: Any, bob: Any
) -> None:
    anonymous = Client().get("/", {"q": "sql"})
    as_bob = Client()
    as_bob.force_login(bob)
    as_alice = Client()
    as_alice.force_login(alice)

    for response in (anonymous, as_bob.get("/", {"q": "sql"})):
        assert "secret-sql" not in response.content.decode()
        assert "internal" not in response.content.decode()
        assert facet_counts(response, "tag")["sql"] == 2
    mine = as_alice.get("/", {"q": "sql", "sort": "downloads"})
    assert shown(mine)[0] == "alice/secret-sql"
    assert facet_counts(mine, "tag")["sql"] == 3
    assert "badge-private" in mine.content.decode()


@postgresql_only
def test_a_typo_is_corrected_and_said(catalog: None) -> None:
    page = Client().get("/", {"q": "peoms"})
    assert shown(page) == ["bob/poems"]
    assert "Showing results for <strong>poems</strong>" in page.content.decode()
    assert "“peoms”" in page.content.decode()


def test_a_private_adapter_s_words_never_correct_a_typo(catalog: None, alice: Any) -> None:
    """The vocabulary holds public adapters' words only: "internal" is a private adapter's tag."""
    page = Client().get("/", {"q": "internl"})
    assert shown(page) == [] and "Showing results for" not in page.content.decode()
    as_alice = Client()
    as_alice.force_login(alice)
    assert shown(as_alice.get("/", {"q": "internal"})) == ["alice/secret-sql"]


def test_the_live_search_gets_only_the_results_fragment(catalog: None) -> None:
    response = Client().get("/", {"q": "poems"}, headers={"X-Partial": "catalog"})

    html = response.content.decode()
    assert "<html" not in html and 'data-adapter="bob/poems"' in html and 'data-facet="method"' in html


def test_list_pages_run_a_fixed_number_of_queries_whatever_the_page_size(
    alice: Any, bob: Any, django_assert_num_queries: Any
) -> None:
    suite = make_suite()
    for i in range(60):
        adapter = make_adapter(alice if i % 2 else bob, f"a{i}", tags=[f"t{i % 7}", "common"], task=f"task{i % 3}")
        add_version(adapter)
        score(adapter.versions.first(), suite, i / 100)
    make_adapter(alice, "hidden", visibility="private")

    counts = {}
    for size in ("5", "50"):
        with CaptureQueriesContext(connection) as queries:
            assert Client().get("/", {"page_size": size, "q": "a", "tag": "common"}).status_code == 200
        counts[size] = len(queries)
    assert counts["5"] == counts["50"]

    # Without words: facets and count (1, from the maintained counts on PostgreSQL; 2 GROUP BYs on
    # SQLite), page, tags of the page, newest versions of the page, suites to sort by.
    facet_queries = 1 if connection.vendor == "postgresql" else 2
    with django_assert_num_queries(4 + facet_queries):
        Client().get("/", {"page_size": "50"})
    # + the suite ranked by (the page holds only scored adapters: their number is not needed)
    with django_assert_num_queries(5 + facet_queries):
        Client().get("/", {"page_size": "50", "sort": f"score:{suite.pk}"})
    logged_in = Client()
    logged_in.force_login(alice)
    # + the session and the user, and (maintained counts) the namespaces whose private counts they see
    with django_assert_num_queries(6 + facet_queries + (facet_queries == 1)):
        logged_in.get("/", {"page_size": "50"})


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"q": "sql"},
        {"q": "alice sql"},
        {"q": "code", "method": "lora"},
        {"tag": "SQL"},
        {"base_model": "hub-test/other", "task": "poetry"},
        {"namespace": "bob", "sort": "name"},
    ],
)
def test_the_catalog_finds_exactly_what_the_api_s_selector_finds(
    catalog: None, alice: Any, query: dict[str, str]
) -> None:
    from hub.web.queries import catalog_page_queryset
    from registry.access import Actor
    from registry.selectors import AdapterQuery, search_adapters

    for actor in (Actor(user=None), Actor(user=alice)):
        wanted = AdapterQuery(**query)
        assert list(catalog_page_queryset(actor, wanted, None)) == list(search_adapters(actor, wanted))


def test_the_page_and_its_live_search_fragment_are_kept_apart_by_caches(catalog: None) -> None:
    assert "X-Partial" in Client().get("/", {"q": "sql"})["Vary"]

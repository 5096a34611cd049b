from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from registry.access import Actor
from registry.models import Adapter
from registry.services import AdapterMetadata, create_adapter, register_base_model
from tests.helpers import json_of, postgresql_only

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog(alice: Any, bob: Any) -> None:
    for base in ("llama-8b", "mistral-7b"):
        register_base_model(name=base)

    def make(owner: Any, name: str, downloads: int, **meta: Any) -> None:
        adapter = create_adapter(
            actor=Actor(user=owner),
            namespace=owner.username,
            name=name,
            meta=AdapterMetadata(base_model=meta.pop("base", "llama-8b"), method=meta.pop("method", "lora"), **meta),
        )
        Adapter.objects.filter(pk=adapter.pk).update(downloads=downloads)

    make(alice, "sql-coder", 50, task="text-to-sql", tags=["code", "sql"], description="Writes SQL queries")
    make(alice, "poet", 5, task="poetry", tags=["creative"], method="ia3")
    make(bob, "sql-fixer", 500, task="text-to-sql", tags=["sql"], base="mistral-7b")
    make(bob, "hidden-sql", 10_000, task="text-to-sql", visibility="private")


def ids(response: Any) -> list[str]:
    return [a["id"] for a in json_of(response)["results"]]


def test_full_text_search_matches_name_description_and_tags(catalog: None, client_for: Any) -> None:
    client = client_for(None)
    assert ids(client.get("/api/v1/adapters/?q=sql&sort=downloads")) == ["bob/sql-fixer", "alice/sql-coder"]
    assert ids(client.get("/api/v1/adapters/?q=queries")) == ["alice/sql-coder"]
    assert ids(client.get("/api/v1/adapters/?q=creative")) == ["alice/poet"]
    assert ids(client.get("/api/v1/adapters/?q=sql+writes")) == ["alice/sql-coder"]


def test_relevance_ranks_an_exact_name_first_then_name_words_then_the_rest(
    catalog: None, client_for: Any, alice: Any, bob: Any
) -> None:
    def make(owner: Any, name: str, downloads: int, **meta: Any) -> None:
        adapter = create_adapter(
            actor=Actor(user=owner),
            namespace=owner.username,
            name=name,
            meta=AdapterMetadata(base_model="llama-8b", method="lora", **meta),
        )
        Adapter.objects.filter(pk=adapter.pk).update(downloads=downloads)

    make(alice, "coder", 1)
    make(bob, "helper", 900, description="a general helper that also writes code, like a coder would")
    make(bob, "coder-large", 100)
    client = client_for(None)
    # The exact name first whatever its downloads; then the name match; the description last.
    assert ids(client.get("/api/v1/adapters/?q=coder")) == [
        "alice/coder",
        "bob/coder-large",
        "alice/sql-coder",
        "bob/helper",
    ]
    assert ids(client.get("/api/v1/adapters/?q=coder&sort=downloads"))[0] == "bob/helper"
    # Typed as words of the name, the exact match still comes first.
    assert ids(client.get("/api/v1/adapters/?q=coder+large"))[0] == "bob/coder-large"


def test_words_match_prefixes_name_substrings_and_base_models(catalog: None, client_for: Any) -> None:
    client = client_for(None)
    assert ids(client.get("/api/v1/adapters/?q=quer&sort=downloads")) == ["alice/sql-coder"]  # "queries"
    assert ids(client.get("/api/v1/adapters/?q=l-cod")) == ["alice/sql-coder"]  # inside the name
    assert ids(client.get("/api/v1/adapters/?q=mistral")) == ["bob/sql-fixer"]  # its base model
    assert ids(client.get("/api/v1/adapters/?q=nothing-like-it")) == []


@postgresql_only
def test_typos_are_corrected_from_public_words_only(catalog: None, client_for: Any, bob: Any) -> None:
    assert ids(client_for(None).get("/api/v1/adapters/?q=creatve")) == ["alice/poet"]
    assert ids(client_for(None).get("/api/v1/adapters/?q=poetyr")) == ["alice/poet"]
    # "hidden" is only in a private adapter's name: no correction towards it, even for its owner.
    assert ids(client_for(bob).get("/api/v1/adapters/?q=hiden")) == []
    assert ids(client_for(bob).get("/api/v1/adapters/?q=hidden")) == ["bob/hidden-sql"]


@postgresql_only
def test_a_member_s_private_word_is_not_corrected_into_a_public_one(catalog: None, client_for: Any, bob: Any) -> None:
    """ "hidden" is in no public adapter but "hiding" is: bob, who may see hidden-sql, gets it;
    others get the public word's adapter."""
    create_adapter(
        actor=Actor(user=bob),
        namespace=bob.username,
        name="hiding-place",
        meta=AdapterMetadata(base_model="llama-8b", method="lora"),
    )
    assert ids(client_for(bob).get("/api/v1/adapters/?q=hidden")) == ["bob/hidden-sql"]
    assert ids(client_for(None).get("/api/v1/adapters/?q=hidden")) == ["bob/hiding-place"]


def test_search_words_are_limited(catalog: None, client_for: Any) -> None:
    response = client_for(None).get("/api/v1/adapters/", {"q": " ".join(["w"] * 17)})
    assert response.status_code == 400 and json_of(response)["code"] == "bad_query"


def test_hostile_search_text_is_only_text(catalog: None, client_for: Any) -> None:
    for q in ["sql' | !", "a & b", "%", "_", "\\", "(((", "coder:*", "''", "sql:A"]:
        response = client_for(None).get("/api/v1/adapters/", {"q": q})
        assert response.status_code == 200, q


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("base_model=mistral-7b", ["bob/sql-fixer"]),
        ("method=ia3", ["alice/poet"]),
        ("task=text-to-sql", ["bob/sql-fixer", "alice/sql-coder"]),
        ("tag=sql", ["bob/sql-fixer", "alice/sql-coder"]),
        ("namespace=alice", ["alice/sql-coder", "alice/poet"]),
        ("sort=name", ["alice/poet", "alice/sql-coder", "bob/sql-fixer"]),
        ("sort=downloads", ["bob/sql-fixer", "alice/sql-coder", "alice/poet"]),
    ],
)
def test_filters_and_sorts(catalog: None, client_for: Any, query: str, expected: list[str]) -> None:
    assert ids(client_for(None).get(f"/api/v1/adapters/?{query}")) == expected


def test_pagination_and_counts(catalog: None, client_for: Any) -> None:
    page = json_of(client_for(None).get("/api/v1/adapters/?page_size=2"))
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    second = json_of(client_for(None).get("/api/v1/adapters/?page_size=2&page=2"))
    assert len(second["results"]) == 1


def test_an_unknown_sort_is_a_400(catalog: None, client_for: Any) -> None:
    response = client_for(None).get("/api/v1/adapters/?sort=random")
    assert response.status_code == 400 and json_of(response)["code"] == "bad_sort"


def test_listing_runs_a_bounded_number_of_queries(catalog: None, client_for: Any, alice: Any) -> None:
    client = client_for(None)
    with CaptureQueriesContext(connection) as few:
        client.get("/api/v1/adapters/?page_size=1")
    with CaptureQueriesContext(connection) as many:
        client.get("/api/v1/adapters/?page_size=50")
    assert len(many) == len(few) <= 4


def test_owners_update_metadata_and_others_cannot(catalog: None, client_for: Any, alice: Any, bob: Any) -> None:
    url = "/api/v1/adapters/alice/poet/"
    denied = client_for(bob).patch(url, {"task": "x"}, format="json")
    assert denied.status_code == 403
    changed = client_for(alice).patch(url, {"task": "haiku", "tags": ["short"], "description": "Haiku"}, format="json")
    assert changed.status_code == 200
    body = json_of(changed)
    assert (body["task"], body["tags"], body["description"]) == ("haiku", ["short"], "Haiku")


@postgresql_only
def test_relevance_order_equals_its_definition_on_a_random_catalog(alice: Any) -> None:
    """Every page of a relevance ranking, against the ranking computed here from its definition: the
    exact name, then every word (as a prefix of a word) in the name or namespace, then in those or the
    task and tags, then any other match; most downloads first within a tier. Words without letters
    or digits keep their own condition (a substring of the name)."""
    import random
    import re

    from registry.search import RelevanceRanked, matching

    register_base_model(name="base-x")
    rng = random.Random(5)
    vocabulary = ["chat", "chatty", "code", "coder", "sql", "poem", "helper"]
    for i in range(60):
        name = "-".join(rng.sample(vocabulary, rng.randint(1, 2))) + rng.choice(["", f"-{i}", "--x", "---y"])
        if Adapter.objects.filter(namespace__name=alice.username, name=name).exists():
            continue
        adapter = create_adapter(
            actor=Actor(user=alice),
            namespace=alice.username,
            name=name,
            meta=AdapterMetadata(
                base_model="base-x",
                method="lora",
                task=rng.choice(["chat", "code", ""]),
                tags=rng.sample(vocabulary, rng.randint(0, 2)),
                description=" ".join(rng.sample(vocabulary, 2)),
            ),
        )
        Adapter.objects.filter(pk=adapter.pk).update(downloads=rng.randint(0, 5))

    def parts(text: str) -> list[str]:
        return re.findall(r"[^\W_]+", text.lower())

    def has_all(words: tuple[str, ...], fields: list[str]) -> bool:
        terms = [p for field in fields for p in parts(field)]
        return all(any(t.startswith(p) for t in terms) for w in words for p in parts(w))

    def tier(adapter: Adapter, words: tuple[str, ...]) -> int:
        if adapter.name.lower() in {" ".join(words), "-".join(words)}:
            return 0
        named = [adapter.name, adapter.namespace.name]
        if has_all(words, named):
            return 1
        if has_all(words, [*named, adapter.task, *(t.name for t in adapter.tags.all())]):
            return 2
        return 3

    for words in [
        ("chat",),
        ("chat", "code"),
        ("cod", "sql"),
        ("chat", "--x"),
        ("chat", "---"),
        ("chat-code",),
        ("poem", "helper"),
    ]:
        found = matching(Adapter.objects.all(), words)
        expected = sorted(found, key=lambda a: (tier(a, words), -a.downloads, -a.updated_at.timestamp(), a.pk))
        ranked = RelevanceRanked(found, words)
        got = [a.pk for start in range(0, len(expected) + 7, 7) for a in ranked[start : start + 7]]
        assert got == [a.pk for a in expected], words

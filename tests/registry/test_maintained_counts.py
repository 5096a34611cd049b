"""The counts the database maintains on write (migration 0014) agree with counting the adapters,
through every way an adapter changes: created, tagged and untagged, made private and public,
moved to another base model or method, its task changed, deleted, and bulk loads rebuilt."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from hub.web.queries import _counted_over_matches
from registry import facet_counts
from registry.access import Actor
from registry.models import Adapter, Membership, Namespace
from registry.selectors import AdapterQuery
from registry.services import AdapterMetadata, create_adapter, register_base_model, update_adapter
from tests.helpers import postgresql_only

pytestmark = [pytest.mark.django_db, postgresql_only]

BASES = ("base-a", "base-b", "base-c")
METHODS = ("lora", "ia3", "dora")
TASKS = ("chat", "code", "")
TAGS = ("x", "y", "z", "w")


def agree(actor: Actor) -> None:
    """Every combination of chosen values: the maintained counts equal GROUP BYs over the adapters."""
    for base, method, task, tag in itertools.product(("", *BASES[:2]), ("", "lora"), ("", "chat"), ("", "x")):
        query = AdapterQuery(base_model=base, method=method, task=task, tag=tag, correct_typos=False)
        chosen = {k: v for k, v in {"base_model": base, "method": method, "task": task, "tag": tag}.items() if v}
        maintained = facet_counts.facet_counts(actor, chosen, base_model_id=None, limit=100)
        total, rows = _counted_over_matches(actor, query, None)
        assert maintained.total == total, chosen
        for field in facet_counts.DIMENSIONS:
            assert sorted(maintained.values[field]) == sorted(rows[field]), (chosen, field)


def random_catalog(
    alice: Any,
    bob: Any,
    rng: random.Random,
    n: int,
    *,
    name: Callable[[int], str] = lambda i: f"adapter-{i}",
    description: Callable[[], str] | None = None,
) -> list[Adapter]:
    """`n` adapters of alice, bob and their org "lab" (alice writes to it), a quarter private, with
    random base models, methods, tasks and tags."""
    for base in BASES:
        register_base_model(name=base)
    org = Namespace.objects.create(name="lab", kind=Namespace.Kind.ORG)
    Membership.objects.create(namespace=org, user=alice, role="writer")
    made = []
    for i in range(n):
        owner = rng.choice([alice, bob])
        namespace = "lab" if owner is alice and i % 3 == 0 else owner.username
        made.append(
            create_adapter(
                actor=Actor(user=owner),
                namespace=namespace,
                name=name(i),
                meta=AdapterMetadata(
                    base_model=rng.choice(BASES),
                    method=rng.choice(METHODS),
                    task=rng.choice(TASKS),
                    tags=rng.sample(TAGS, rng.randint(0, 3)),
                    visibility="private" if i % 4 == 0 else "public",
                    description=description() if description is not None else None,
                ),
            )
        )
    return made


def test_maintained_counts_follow_every_change(alice: Any, bob: Any) -> None:
    rng = random.Random(7)
    made = random_catalog(alice, bob, rng, 40)
    actors = [Actor(user=None), Actor(user=alice), Actor(user=bob)]
    for actor in actors:
        agree(actor)

    for adapter in rng.sample(made, 20):
        owner = Actor(user=adapter.created_by)
        update_adapter(
            actor=owner,
            adapter=adapter,
            meta=AdapterMetadata(
                method=rng.choice(METHODS),
                task=rng.choice(TASKS),
                tags=rng.sample(TAGS, rng.randint(0, 4)),
                visibility=rng.choice(["public", "private"]),
            ),
        )
    Adapter.objects.filter(pk=made[1].pk).update(base_model=made[2].base_model)
    made[3].tags.clear()
    Adapter.objects.filter(pk=made[5].pk).delete()
    for actor in actors:
        agree(actor)
    # Folding the pending changes into the counts (beat does it) changes no count.
    facet_counts.fold()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM registry_facetdelta")
        assert cursor.fetchone()[0] == 0
    for actor in actors:
        agree(actor)


def test_a_rebuild_recounts_rows_loaded_with_triggers_off(alice: Any) -> None:
    register_base_model(name="base-a")
    create_adapter(
        actor=Actor(user=alice),
        namespace=alice.username,
        name="one",
        meta=AdapterMetadata(base_model="base-a", method="lora", task="chat", tags=["x"]),
    )
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM registry_facetcount")
        cursor.execute("DELETE FROM registry_facetdelta")
        assert facet_counts.count(Actor(user=None), {}) == 0
        cursor.execute("SELECT registry_facet_rebuild()")
    assert facet_counts.count(Actor(user=None), {}) == 1
    assert facet_counts.count(Actor(user=None), {"tag": "x", "task": "chat"}) == 1
    agree(Actor(user=None))


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_best_scores_follow_results_and_yanks(alice: Any, higher_is_better: bool) -> None:
    """Ranking by a suite reads the maintained best scores; it agrees with computing each adapter's
    best among its non-yanked versions, through new results, yanks and restores."""
    from django.db.models import F

    from registry.scores import best_score_subquery
    from registry.selectors import ScoreRanked
    from tests.hub.web.builders import add_version, make_adapter, make_suite, score

    suite = make_suite(higher_is_better=higher_is_better)
    rng = random.Random(3)
    versions = []
    for i in range(12):
        adapter = make_adapter(alice, f"scored-{i}")
        for _ in range(rng.randint(0, 3)):
            version = add_version(adapter)
            versions.append(version)
            for _ in range(rng.randint(0, 2)):
                score(version, suite, round(rng.random(), 3))

    def agree() -> None:
        found = Adapter.objects.filter(base_model=suite.base_model)
        direction = F("score").desc(nulls_last=True) if higher_is_better else F("score").asc(nulls_last=True)
        expected = [(a.pk, a.score) for a in found.annotate(score=best_score_subquery(suite)).order_by(direction, "pk")]
        ranked = ScoreRanked(found, suite)
        assert ranked.count() == len(expected)
        got = [(a.pk, a.score) for start in range(0, len(expected), 5) for a in ranked[start : start + 5]]
        assert got == expected

    agree()
    for version in rng.sample(versions, 4):
        version.yanked = True
        version.save(update_fields=["yanked"])
    agree()
    versions[0].yanked = False
    versions[0].save(update_fields=["yanked"])
    score(versions[1], suite, 0.5)
    versions[2].eval_results.all().delete()
    agree()


SEARCHES = [("chat",), ("cha",), ("code", "chat"), ("sq",), ("x",), ("gpt-4",), ("elper",)]


def agree_on_words(actor: Actor, words: tuple[str, ...]) -> None:
    """A counted search's maintained total and facets equal counting its matches, for a few choices."""
    for base, method, tag in itertools.product(("", BASES[0]), ("", "lora"), ("", "x")):
        query = AdapterQuery(q=" ".join(words), base_model=base, method=method, tag=tag, correct_typos=False)
        chosen = {k: v for k, v in {"base_model": base, "method": method, "tag": tag}.items() if v}
        maintained = facet_counts.facet_counts(actor, chosen, base_model_id=None, limit=100, words=words)
        assert maintained.maintained, words
        total, rows = _counted_over_matches(actor, query, None)
        assert maintained.total == total, (words, chosen)
        for field in facet_counts.DIMENSIONS:
            assert sorted(maintained.values[field]) == sorted(rows[field]), (words, chosen, field)


def test_counted_searches_follow_every_change(alice: Any, bob: Any, settings: Any) -> None:
    """Once promoted, a search's counts are kept by the database through every change that moves an
    adapter into or out of it (its document: description, tags; its name's substrings) or between
    facets and scopes; they equal counting the matches, for each actor, before and after folding."""
    settings.SEARCH_COUNT_MIN_MATCHES = 1
    rng = random.Random(11)
    vocabulary = ["chat", "chatbot", "code", "sql", "sqlite", "gpt-4", "helper", "summary"]
    made = random_catalog(
        alice,
        bob,
        rng,
        36,
        name=lambda i: f"{rng.choice(vocabulary).replace('-', '')}-{rng.choice(['helper', 'tool', 'mychat'])}-{i}",
        description=lambda: " ".join(rng.sample(vocabulary, 3)),
    )
    for words in SEARCHES:
        facet_counts.note_search(words, 1)
    promoted: list[tuple[str, ...]] = []
    while batch := facet_counts.promote():
        promoted += batch
    assert sorted(promoted) == sorted(SEARCHES)
    actors = [Actor(user=None), Actor(user=alice), Actor(user=bob)]
    for actor in actors:
        for words in SEARCHES:
            agree_on_words(actor, words)

    for adapter in rng.sample(made, 18):
        update_adapter(
            actor=Actor(user=adapter.created_by),
            adapter=adapter,
            meta=AdapterMetadata(
                method=rng.choice(METHODS),
                tags=rng.sample(TAGS, rng.randint(0, 4)),
                visibility=rng.choice(["public", "private"]),
                description=" ".join(rng.sample(vocabulary, 2)),
            ),
        )
    Adapter.objects.filter(pk=made[1].pk).update(description="nothing to find here")
    Adapter.objects.filter(pk=made[2].pk).update(name="renamed-mychat")
    made[3].tags.clear()
    made[4].tags.add(*made[6].tags.all())
    Adapter.objects.filter(pk=made[5].pk).delete()
    for actor in actors:
        for words in SEARCHES:
            agree_on_words(actor, words)
    facet_counts.fold()
    for actor in actors:
        for words in SEARCHES:
            agree_on_words(actor, words)
    # A rebuild (bulk loads) recounts the counted searches too.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM registry_facetcount")
        cursor.execute("SELECT registry_facet_rebuild()")
    for words in SEARCHES:
        agree_on_words(Actor(user=alice), words)


def test_a_common_search_is_noted_then_counted_on_write(client: Any, alice: Any, settings: Any) -> None:
    """The API counts a search live and notes it when it reaches SEARCH_COUNT_MIN_MATCHES; promoted,
    its count comes from the maintained counts (no count over the matches) and stays exact as adapters
    come and go; past SEARCH_COUNTED_MAX the least searched is dropped and counted live again."""
    from django.db import connection as conn
    from django.test.utils import CaptureQueriesContext

    settings.SEARCH_COUNT_MIN_MATCHES = 3
    settings.SEARCH_COUNTED_MAX = 1
    register_base_model(name="base-a")

    def make(name: str) -> None:
        create_adapter(
            actor=Actor(user=alice),
            namespace=alice.username,
            name=name,
            meta=AdapterMetadata(base_model="base-a", method="lora"),
        )

    for i in range(3):
        make(f"chat-{i}")
    make("code-0")
    assert client.get("/api/v1/adapters/", {"q": "code"}).json()["count"] == 1
    live_count = 'AS "__count" FROM "registry_adapter"'
    with CaptureQueriesContext(conn) as queries:
        assert client.get("/api/v1/adapters/", {"q": "chat"}).json()["count"] == 3
    assert any(live_count in q["sql"] for q in queries.captured_queries)
    assert facet_counts.promote() == [("chat",)]  # "code" matched too few to be noted
    make("chat-3")
    with CaptureQueriesContext(conn) as queries:
        assert client.get("/api/v1/adapters/", {"q": "chat"}).json()["count"] == 4
    assert not any(live_count in q["sql"] for q in queries.captured_queries)
    # A more searched common search takes the only place.
    for i in range(4):
        make(f"code-{i + 1}")
    for _ in range(2):
        assert client.get("/api/v1/adapters/", {"q": "code"}).json()["count"] == 5
    assert facet_counts.promote() == [("code",)]
    assert facet_counts.count(Actor(user=None), {}, words=("chat",)) is None
    assert facet_counts.count(Actor(user=None), {}, words=("code",)) == 5
    assert client.get("/api/v1/adapters/", {"q": "chat"}).json()["count"] == 4


@pytest.mark.django_db(transaction=True)
def test_a_first_count_waits_for_writes_that_began_before_it(alice: Any, settings: Any) -> None:
    """An adapter written by a transaction that began before the search was promoted (its trigger
    could not see the search) is in the first count: promote() waits for that transaction to end,
    without holding writes itself, and the counts come out exact."""
    import threading
    import time

    from django.db import connections, transaction

    settings.SEARCH_COUNT_MIN_MATCHES = 1
    register_base_model(name="base-a")

    def make(name: str) -> None:
        create_adapter(
            actor=Actor(user=alice),
            namespace=alice.username,
            name=name,
            meta=AdapterMetadata(base_model="base-a", method="lora", tags=["x"]),
        )

    make("chat-0")
    facet_counts.note_search(("chat",), 1)
    written, release = threading.Event(), threading.Event()

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                make("chat-1")
                written.set()
                release.wait(10)
        finally:
            connections.close_all()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    assert written.wait(10)
    threading.Timer(0.5, release.set).start()
    started = time.monotonic()
    assert facet_counts.promote() == [("chat",)]
    assert time.monotonic() - started >= 0.4  # it waited for the writer
    writer.join()
    make("chat-2")  # and writes after it are counted by the triggers
    agree_on_words(Actor(user=alice), ("chat",))
    assert facet_counts.count(Actor(user=None), {}, words=("chat",)) == 3

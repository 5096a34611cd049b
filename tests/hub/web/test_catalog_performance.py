"""A catalog of 10,000 adapters answers in a fixed number of queries per page, whatever its size,
and its counts match the adapters it shows. Times are bench/catalog.py's business (10k to 1M
adapters, median and p95): a shared test machine cannot assert them."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from registry import facet_counts
from registry.models import Adapter, AdapterVersion, BaseModel, Namespace, Tag
from tests.hub.web.builders import sha

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

N_ADAPTERS = 10_000


@pytest.fixture
def big_catalog(alice: Any) -> None:
    """10,000 adapters over 5 namespaces (one private), 4 base models, 5 methods, 6 tasks, 12 tags."""
    namespaces = [Namespace.objects.create(name=f"org{i}", kind=Namespace.Kind.ORG) for i in range(5)]
    bases = [BaseModel.objects.create(name=f"family-{i}/model-{i}b") for i in range(4)]
    tags = [Tag.objects.create(name=f"tag{i}") for i in range(12)]
    methods = ["lora", "qlora", "dora", "ia3", "loha"]
    adapters = Adapter.objects.bulk_create(
        [
            Adapter(
                namespace=namespaces[i % 5],
                name=f"adapter-{i:05d}",
                base_model=bases[i % 4],
                method=methods[i % 5],
                task=f"task-{i % 6}",
                description=f"Adapter number {i} for benchmarking the catalog",
                downloads=(i * 7919) % 100_003,
                visibility="private" if i % 5 == 4 else "public",
            )
            for i in range(N_ADAPTERS)
        ],
        batch_size=2000,
    )
    through = Adapter.tags.through
    through.objects.bulk_create(
        [through(adapter_id=a.pk, tag_id=tags[(i + k) % 12].pk) for i, a in enumerate(adapters) for k in (0, 5)],
        batch_size=5000,
    )
    AdapterVersion.objects.bulk_create(
        [
            AdapterVersion(
                adapter=a, number=1, config={}, peft_type="LORA", rank=16, total_size=1 << 20, digest=sha(str(a.pk))
            )
            for a in adapters
        ],
        batch_size=2000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # fresh statistics, as autovacuum would have by now on a live server


CASES = {
    "front page": {},
    "search and method": {"q": "adapter 12", "method": "lora"},
    "base model and tag, recent first": {"base_model": "family-1/model-1b", "tag": "tag1", "sort": "recent"},
    "page 40": {"page": "40"},
}


def test_the_catalog_of_10000_adapters_runs_a_fixed_number_of_queries(
    big_catalog: None, alice: Any, settings: Any
) -> None:
    """One test over several pages, so the 10,000 rows are built once."""
    from registry.models import Membership

    anonymous = Client()
    member = Client()
    member.force_login(alice)
    Membership.objects.create(namespace=Namespace.objects.get(name="org4"), user=alice, role="reader")
    measured: dict[str, int] = {}
    for label, params in CASES.items():
        with CaptureQueriesContext(connection) as queries:
            response = anonymous.get("/", params)
        assert 'class="card"' in response.content.decode(), label
        measured[label] = len(queries)
        if label == "search and method":
            live = (response.context["facets"], response.context["page"].paginator.count)
    with CaptureQueriesContext(connection) as queries:
        response = member.get("/")
    measured["a member's front page (private adapters too)"] = len(queries)

    # Facets and count (1 from the maintained counts, 2 GROUP BYs with search words or on SQLite),
    # the page, its tags, its newest versions, the suites to sort by. On PostgreSQL search words
    # add the typo lookup, the relevance ranking's probe of how many match and its page of ids, and
    # the maintained counts' answer that these words are not counted (yet).
    # A member's session adds the session, the user and (maintained counts) their namespaces.
    maintained = connection.vendor == "postgresql"
    words = 4 if maintained else 0
    plain = 5 if maintained else 6
    # A tag filter looks the tag's id up first.
    assert list(measured.values()) == [plain, 6 + words, plain + 1, plain, plain + 2 + maintained], measured
    assert "<strong>10000</strong> adapters" in response.content.decode()
    assert "<strong>8000</strong> adapters" in anonymous.get("/").content.decode()
    if maintained:
        # Once the search is counted on write, its total and facets are one lookup: the two GROUP BYs go.
        settings.SEARCH_COUNT_MIN_MATCHES = 1
        facet_counts.note_search(("adapter", "12"), 1)
        assert facet_counts.promote() == [("adapter", "12")]
        with CaptureQueriesContext(connection) as queries:
            counted = anonymous.get("/", CASES["search and method"])
        assert len(queries) == 6 + words - 2, [q["sql"][:80] for q in queries.captured_queries]
        assert (counted.context["facets"], counted.context["page"].paginator.count) == live

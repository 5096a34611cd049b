"""The catalog's read queries on top of `registry.selectors`: facet counts and the extras a page
of cards shows. Each runs a fixed number of queries, whatever the page size or catalog size."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery

from registry.access import Actor, visible_adapters, visible_base_models
from registry.models import Adapter, AdapterVersion, BaseModel, EvalResult, EvalSuite, Method
from registry.scores import best_score_subquery
from registry.selectors import SORTS, AdapterQuery

FACETS = (("base_model", "Base model"), ("method", "Method"), ("task", "Task"), ("tag", "Tags"))
FACET_LIMIT = 12
METHOD_LABELS = dict(Method.choices)


@dataclass(frozen=True)
class FacetValue:
    value: str
    label: str
    count: int
    selected: bool
    url: str


@dataclass(frozen=True)
class Facet:
    field: str
    title: str
    values: list[FacetValue]


def query_string(params: dict[str, str], **changes: str) -> str:
    """`?a=1&b=2` with `changes` applied; empty values and page=1 are left out."""
    merged = {**params, **changes}
    kept = {k: v for k, v in merged.items() if v and not (k == "page" and v == "1")}
    return "?" + urlencode(kept) if kept else "?"


TagLink = Adapter.tags.through


def catalog_adapters(
    actor: Actor, query: AdapterQuery, suite: EvalSuite | None, *, skip: frozenset[str] = frozenset()
) -> QuerySet[Adapter]:
    """The adapters `registry.selectors.search_adapters` finds for `query`, leaving out the facet
    filters named in `skip`, without ordering.

    Same semantics as the selector, but tags are matched with EXISTS instead of a join, so no row
    repeats and GROUP BY can run on it directly: the selector's `pk IN (...)` wrapper made each
    facet query re-run the whole search (tests/hub/web/test_catalog.py checks the two agree).
    """
    adapters = visible_adapters(actor)
    for word in query.q.split():
        adapters = adapters.filter(
            Q(name__icontains=word)
            | Q(namespace__name__icontains=word)
            | Q(description__icontains=word)
            | Q(task__icontains=word)
            | Exists(TagLink.objects.filter(adapter_id=OuterRef("pk"), tag__name__icontains=word))
        )
    if query.namespace:
        adapters = adapters.filter(namespace__name=query.namespace)
    if suite is not None:
        adapters = adapters.filter(base_model_id=suite.base_model_id)
    if query.base_model and "base_model" not in skip:
        adapters = adapters.filter(base_model__name=query.base_model)
    if query.method and "method" not in skip:
        adapters = adapters.filter(method=query.method)
    if query.task and "task" not in skip:
        adapters = adapters.filter(task=query.task)
    if query.tag and "tag" not in skip:
        adapters = adapters.filter(
            Exists(TagLink.objects.filter(adapter_id=OuterRef("pk"), tag__name=query.tag.lower()))
        )
    return adapters


def catalog_page_queryset(actor: Actor, query: AdapterQuery, suite: EvalSuite | None) -> QuerySet[Adapter]:
    """The matching adapters in the query's order, ready for a page of cards."""
    found = catalog_adapters(actor, query, suite).select_related("namespace", "base_model").prefetch_related("tags")
    if suite is None:
        return found.order_by(*SORTS[query.sort])
    score = F("score").desc(nulls_last=True) if suite.higher_is_better else F("score").asc(nulls_last=True)
    return found.annotate(score=best_score_subquery(suite)).order_by(score, "pk")


@dataclass(frozen=True)
class FacetCounts:
    total: int
    facets: list[Facet]


COLUMN_FACETS = ("base_model", "method", "task")


def facets(actor: Actor, query: AdapterQuery, suite: EvalSuite | None, params: dict[str, str]) -> FacetCounts:
    """The number of results and the counts per base model, method, task and tag, in two queries.

    Each facet counts over the results filtered by every *other* facet, so picking a method still
    shows how many adapters the other methods would give (shop-style facets):

    1. One GROUP BY (base model, method, task) over the results without those three filters; the
       total and the three facets are sums over its rows.
    2. One GROUP BY tag over the results without the tag filter.
    """
    combos = (
        catalog_adapters(actor, query, suite, skip=frozenset(COLUMN_FACETS))
        .values_list("base_model__name", "method", "task")
        .annotate(n=Count("pk"))
        .order_by()
    )
    chosen = {field: getattr(query, field) for field in COLUMN_FACETS}
    counters: dict[str, Counter[str]] = {field: Counter() for field in COLUMN_FACETS}
    total = 0
    for base_model, method, task, n in combos:
        values = {"base_model": base_model, "method": method, "task": task}
        fits = {field: not chosen[field] or values[field] == chosen[field] for field in COLUMN_FACETS}
        if all(fits.values()):
            total += n
        for field in COLUMN_FACETS:
            if values[field] and all(fits[other] for other in COLUMN_FACETS if other != field):
                counters[field][values[field]] += n
    # Grouped from the adapters' side: the search filters each adapter once in a scan, then a hash
    # join brings its tags (a semi-join from the tag links would re-check the search per link).
    tag_rows = (
        catalog_adapters(actor, query, suite, skip=frozenset({"tag"}))
        .filter(tags__isnull=False)
        .values_list("tags__name")
        .annotate(n=Count("pk"))
        .order_by("-n", "tags__name")[:FACET_LIMIT]
    )
    rows = {
        field: sorted(counters[field].items(), key=lambda item: (-item[1], item[0]))[:FACET_LIMIT]
        for field in COLUMN_FACETS
    }
    rows["tag"] = list(tag_rows)
    return FacetCounts(
        total=total, facets=[_facet(field, title, rows[field], query, params) for field, title in FACETS]
    )


def _facet(field: str, title: str, rows: list[tuple[str, int]], query: AdapterQuery, params: dict[str, str]) -> Facet:
    selected = getattr(query, field)
    if field == "tag":
        selected = selected.lower()
    values = []
    for value, count in rows:
        is_selected = value == selected
        values.append(
            FacetValue(
                value=value,
                label=METHOD_LABELS.get(value, value) if field == "method" else value,
                count=count,
                selected=is_selected,
                url=query_string(params, **{field: "" if is_selected else value, "page": ""}),
            )
        )
    if selected and not any(v.selected for v in values):
        # Picked, but with no match left: keep it visible so it can be cleared.
        label = METHOD_LABELS.get(selected, selected) if field == "method" else selected
        values.insert(0, FacetValue(selected, label, 0, True, query_string(params, **{field: "", "page": ""})))
    return Facet(field=field, title=title, values=values)


@dataclass(frozen=True)
class LatestVersion:
    number: int
    rank: int | None
    total_size: int
    validation: str


def latest_versions(adapter_ids: Sequence[int]) -> dict[int, LatestVersion]:
    """The newest non-yanked version of each adapter, in one query."""
    if not adapter_ids:
        return {}
    newest = (
        AdapterVersion.objects.filter(adapter_id=OuterRef("adapter_id"), yanked=False)
        .order_by("-number")
        .values("number")[:1]
    )
    rows = AdapterVersion.objects.filter(adapter_id__in=adapter_ids, yanked=False, number=Subquery(newest)).values_list(
        "adapter_id", "number", "rank", "total_size", "validation"
    )
    return {
        adapter_id: LatestVersion(number, rank, size, validation) for adapter_id, number, rank, size, validation in rows
    }


def sort_suites() -> list[EvalSuite]:
    """Suites one can rank the catalog by: those with at least one result."""
    has_results = Exists(EvalResult.objects.filter(eval_suite_id=OuterRef("pk")))
    return list(EvalSuite.objects.select_related("base_model").filter(has_results).order_by("base_model__name", "name"))


def base_models_with_counts(actor: Actor) -> QuerySet[BaseModel]:
    """Base models with the number of adapters the actor can see, most used first (one query)."""
    visible = visible_adapters(actor).values("pk")
    return (
        visible_base_models(actor)
        .annotate(
            adapter_count=Count("adapters", filter=Q(adapters__in=visible), distinct=True),
            suite_count=Count("eval_suites", distinct=True),
        )
        .order_by("-adapter_count", "name")
    )


def score_history(adapter: Adapter) -> dict[tuple[str, str, bool | None], list[tuple[int, float]]]:
    """(suite, metric, higher_is_better) -> [(version number, newest value)] across the adapter's
    non-yanked versions, in one query (`registry.scores.adapter_score_history` runs one per version)."""
    rows = (
        EvalResult.objects.filter(version__adapter=adapter, version__yanked=False)
        .select_related("eval_suite")
        .order_by("suite", "metric", "version__number", "-created_at")
        .values_list("suite", "metric", "eval_suite__higher_is_better", "version__number", "value")
    )
    history: dict[tuple[str, str, bool | None], list[tuple[int, float]]] = {}
    seen: set[tuple[str, str, int]] = set()
    for suite, metric, higher, number, value in rows:
        if (suite, metric, number) in seen:
            continue  # an older result for the same version
        seen.add((suite, metric, number))
        history.setdefault((suite, metric, higher), []).append((number, value))
    return history

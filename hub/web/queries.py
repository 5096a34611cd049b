"""The catalog's read queries on top of `registry.selectors`: facet counts and the extras a page
of cards shows. Each runs a fixed number of queries, whatever the page size or catalog size."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery

from registry import facet_counts
from registry.access import PRIVATE_REFERENCE, Actor, visible_adapters, visible_base_models
from registry.models import LORA_FAMILY, Adapter, AdapterVersion, BaseModel, EvalResult, EvalSuite, Method
from registry.search import words_of
from registry.selectors import AdapterQuery, Ranking, maintained_choices, matching_adapters, ordered, understood

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


def catalog_page_queryset(actor: Actor, query: AdapterQuery, suite: EvalSuite | None) -> Ranking:
    """The matching adapters in the query's order, ready for a page of cards."""
    query = understood(actor, query)
    found = matching_adapters(actor, query, suite).select_related("namespace", "base_model").prefetch_related("tags")
    return ordered(found, query, suite)


@dataclass(frozen=True)
class FacetCounts:
    total: int
    facets: list[Facet]


COLUMN_FACETS = ("base_model", "method", "task")


def facets(actor: Actor, query: AdapterQuery, suite: EvalSuite | None, params: dict[str, str]) -> FacetCounts:
    """The number of results and the counts per base model, method, task and tag, in one or two
    queries.

    Each facet counts over the results filtered by every *other* facet, so picking a method still
    shows how many adapters the other methods would give (shop-style facets). Without search words,
    on PostgreSQL, and with words the database counts on write (a common search, once promoted: see
    registry.facet_counts), the counts come from those it maintains (one query whose cost does not
    grow with the catalog); otherwise they are counted over the matching adapters.
    """
    chosen = maintained_choices(query)
    words = words_of(understood(actor, query).q)
    counted = None
    if chosen is not None:
        counted = facet_counts.facet_counts(
            actor,
            chosen,
            base_model_id=suite.base_model_id if suite is not None else None,
            limit=FACET_LIMIT,
            words=words,
        )
    if counted is not None and counted.maintained:
        total, rows = counted.total, counted.values
    else:
        total, rows = _counted_over_matches(actor, query, suite)
        facet_counts.note_search(words, total)
    return FacetCounts(
        total=total, facets=[_facet(field, title, rows[field], query, params) for field, title in FACETS]
    )


def _counted_over_matches(
    actor: Actor, query: AdapterQuery, suite: EvalSuite | None
) -> tuple[int, dict[str, list[tuple[str, int]]]]:
    """Facets counted over the matching adapters, in two queries:

    1. One GROUP BY (base model, method, task) over the results without those three filters; the
       total and the three facets are sums over its rows.
    2. One GROUP BY tag over the results without the tag filter.
    """
    combos = (
        matching_adapters(actor, query, suite, skip=frozenset(COLUMN_FACETS))
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
        matching_adapters(actor, query, suite, skip=frozenset({"tag"}))
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
    return total, rows


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
    # The eval gate's per-suite checks (AdapterVersion.validation_reasons), read in the same query.
    validation_reasons: Any = None


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
        "adapter_id", "number", "rank", "total_size", "validation", "validation_reasons"
    )
    return {
        adapter_id: LatestVersion(number, rank, size, validation, reasons)
        for adapter_id, number, rank, size, validation, reasons in rows
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


# --- Compose page ------------------------------------------------------------------------------------

# What the compose page offers as inputs: the LoRA family, as its adapter search does.
COMPOSE_METHODS = tuple(sorted(LORA_FAMILY))
COMPOSE_CHOICES_LIMIT = 100


def composable_base_models(actor: Actor) -> list[tuple[str, int]]:
    """(base model, number of composable adapters the actor can see) for every base model that has
    one, by name, in one query."""
    rows = (
        visible_adapters(actor)
        .filter(method__in=COMPOSE_METHODS)
        .values_list("base_model__name")
        .annotate(n=Count("pk"))
        .order_by("base_model__name")
    )
    return [(name, n) for name, n in rows]


def composable_adapters(actor: Actor, base_model: str, *, limit: int = COMPOSE_CHOICES_LIMIT) -> list[Adapter]:
    """The composable adapters of `base_model` the actor can see, most downloaded first (one query)."""
    found = matching_adapters(actor, AdapterQuery(base_model=base_model, methods=COMPOSE_METHODS), None)
    return list(found.select_related("namespace").order_by("-downloads", "namespace__name", "name")[:limit])


def base_model_of(actor: Actor, references: Iterable[str]) -> str:
    """The base model of the first of `references` (ns/name), if the actor can see that adapter, or
    "" (one query): the compose page's filter when it opens with an adapter already added."""
    first = next((ref for ref in references if ref), "")
    namespace, _, name = first.partition("/")
    if not name:
        return ""
    found = (
        visible_adapters(actor).filter(namespace__name=namespace, name=name).values_list("base_model__name", flat=True)
    )
    return next(iter(found), "")


def hidden_references(actor: Actor, references: Iterable[str]) -> set[str]:
    """Those of `references` (ns/name) that name no adapter the actor can see: private ones of other
    namespaces, and deleted ones, look the same (one query)."""
    wanted = {ref for ref in references if ref}
    pairs = [ref.partition("/") for ref in wanted]
    if not pairs:
        return set()
    match = Q()
    for namespace, _, name in pairs:
        match |= Q(namespace__name=namespace, name=name)
    seen = {f"{ns}/{name}" for ns, name in visible_adapters(actor).filter(match).values_list("namespace__name", "name")}
    return wanted - seen


def visible_recipe(actor: Actor, recipe: dict[str, Any]) -> dict[str, Any]:
    """A job's recipe as `actor` may read it: an input they cannot see (a private adapter of a
    namespace they are not in, which a member of the target namespace may follow the job without)
    reads "(a private adapter)", and the expression, which names every input, is left out then."""
    inputs = recipe.get("inputs") or []
    hidden = hidden_references(actor, [str(item.get("adapter", "")) for item in inputs])
    if not hidden:
        return recipe
    return {
        **recipe,
        "inputs": [
            {**item, "adapter": PRIVATE_REFERENCE, "version": ""} if item.get("adapter") in hidden else item
            for item in inputs
        ],
        "expression": None,
    }

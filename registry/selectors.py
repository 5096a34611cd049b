"""Read queries: catalog search and listings, always scoped to what the actor may see."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, TypeAlias

from django.db.models import Exists, F, OuterRef, QuerySet, prefetch_related_objects

from registry import facet_counts, search
from registry.access import Actor, visible_adapters
from registry.exceptions import InvalidRequest
from registry.models import Adapter, AdapterVersion, EvalSuite, Tag
from registry.scores import best_score_subquery
from registry.search import RelevanceRanked

SORTS = {
    # Without words, relevance is the downloads order.
    "relevance": search.BY_DOWNLOADS,
    "downloads": search.BY_DOWNLOADS,
    "recent": ("-updated_at", "pk"),
    "name": ("namespace__name", "name"),
}

TagLink = Adapter.tags.through
# What a search returns: a queryset, or for rankings that page through several index-backed
# queries (relevance, a suite's score), a sliceable sequence with count() that paginators take.
Ranking: TypeAlias = "QuerySet[Adapter] | ScoreRanked | RelevanceRanked"


@dataclass(frozen=True)
class AdapterQuery:
    q: str = ""
    base_model: str = ""
    method: str = ""
    task: str = ""
    tag: str = ""
    namespace: str = ""
    # Any of these methods (none: any method).
    methods: tuple[str, ...] = ()
    sort: str = "relevance"
    # With sort="score": the id of the EvalSuite to rank by (its base model's adapters only).
    suite: str = ""
    # Replace unknown words of `q` by the nearest known ones (registry.search.understand); a caller
    # that already did, to show the user what it searched, turns this off.
    correct_typos: bool = True


def search_adapters(actor: Actor, query: AdapterQuery) -> Ranking:
    """Adapters visible to the actor matching every given filter, in the query's order; each word
    of `q` must match the name, namespace, description, task, base model or a tag
    (registry.search). sort="relevance" (the default) puts the best matches first, then the most
    downloaded; sort="score" ranks by the best score on `query.suite` (adapters without one last)."""
    suite = suite_for_sort(query)
    query = understood(actor, query)
    found = matching_adapters(actor, query, suite).select_related("namespace", "base_model").prefetch_related("tags")
    return ordered(found, query, suite)


def matching_adapters(
    actor: Actor, query: AdapterQuery, suite: EvalSuite | None, *, skip: frozenset[str] = frozenset()
) -> QuerySet[Adapter]:
    """The adapters visible to the actor that `query` finds, unordered, leaving out the facet
    filters named in `skip` (the catalog's facet counts). No filter joins a many-valued relation,
    so no row repeats and GROUP BY can run on the result directly."""
    adapters = search.matching(visible_adapters(actor), search.words_of(understood(actor, query).q))
    if query.namespace:
        adapters = adapters.filter(namespace__name=query.namespace)
    if query.methods:
        adapters = adapters.filter(method__in=query.methods)
    if suite is not None:
        adapters = adapters.filter(base_model_id=suite.base_model_id)
    if query.base_model and "base_model" not in skip:
        adapters = adapters.filter(base_model__name=query.base_model)
    if query.method and "method" not in skip:
        adapters = adapters.filter(method=query.method)
    if query.task and "task" not in skip:
        adapters = adapters.filter(task=query.task)
    if query.tag and "tag" not in skip:
        # By the tag's id, looked up first: as a literal, the planner reads from its statistics how
        # many adapters carry that tag (a subquery's value would leave it guessing), and picks
        # between walking the sort order and gathering the tag's adapters accordingly.
        tag_id = Tag.objects.filter(name=query.tag.lower()).values_list("pk", flat=True).first()
        adapters = adapters.filter(Exists(TagLink.objects.filter(adapter_id=OuterRef("pk"), tag_id=tag_id or 0)))
    return adapters


def ordered(found: QuerySet[Adapter], query: AdapterQuery, suite: EvalSuite | None) -> Ranking:
    if suite is not None:
        if facet_counts.available():
            return ScoreRanked(found, suite)
        score = F("score").desc(nulls_last=True) if suite.higher_is_better else F("score").asc(nulls_last=True)
        return found.annotate(score=best_score_subquery(suite)).order_by(score, "pk")
    if query.sort == "relevance":
        return search.by_relevance(found, search.words_of(query.q))
    return found.order_by(*SORTS[query.sort])


def maintained_choices(query: AdapterQuery) -> dict[str, str] | None:
    """The query's facet choices (dimension -> value) when the counts the database maintains
    (registry.facet_counts) may answer it: on PostgreSQL, without a namespace or a set of methods
    (with words, only if that search is counted). None: count the matching adapters instead."""
    if not facet_counts.available() or query.namespace or query.methods:
        return None
    chosen = {field: getattr(query, field) for field in facet_counts.DIMENSIONS if getattr(query, field)}
    if "tag" in chosen:
        chosen["tag"] = chosen["tag"].lower()
    return chosen


def counted(actor: Actor, query: AdapterQuery, found: Ranking) -> int:
    """The number of adapters `search_adapters` found (`found`, for `query` as `understood`): from
    the counts the database maintains when they can answer, else counted over the matches. A common
    search counted that way is noted, so that the database counts it on write later
    (registry.facet_counts.promote)."""
    chosen = maintained_choices(query)
    words = search.words_of(query.q)
    if chosen is not None:
        suite = suite_for_sort(query)
        maintained = facet_counts.count(
            actor, chosen, base_model_id=suite.base_model_id if suite is not None else None, words=words
        )
        if maintained is not None:
            return maintained
    total = found.count()
    facet_counts.note_search(words, total)
    return total


def understood(actor: Actor, query: AdapterQuery) -> AdapterQuery:
    """`query` with its typos corrected (registry.search.understand), once: later steps take its
    words as they are."""
    if not query.correct_typos:
        return query
    return replace(query, q=search.understand(query.q, visible_adapters(actor)).query, correct_typos=False)


class ScoreRanked(search.PagedRanking):
    """Adapters ranked by their best score on a suite, those without one after them (by id), as a
    sliceable sequence for paginators.

    Two index-backed queries per page instead of scoring and sorting every adapter of the base
    model: the scored ones walk the (suite, value) index of the best scores the database maintains
    (migration 0015); the rest follow by id. Each adapter carries `score` (None when unscored).
    """

    def __init__(self, found: QuerySet[Adapter], suite: EvalSuite) -> None:
        self.found = found.prefetch_related(None)
        # Prefetched once for the whole page, not per part.
        self.prefetch: tuple[Any, ...] = getattr(found, "_prefetch_related_lookups", ())
        self.suite = suite
        value = F("best_scores__value")
        self.scored = (
            self.found.filter(best_scores__eval_suite=suite)
            .annotate(score=value)
            .order_by(value.desc() if suite.higher_is_better else value.asc(), "pk")
        )
        self.unscored = self.found.exclude(best_scores__eval_suite=suite).order_by("pk")

    def _page(self, start: int, stop: int) -> list[Adapter]:
        page: list[Adapter] = list(self.scored[start:stop])
        if len(page) < stop - start:
            # The scored ones end on this page or before it: the unscored follow. Their number is
            # only counted for pages past the last scored adapter.
            scored_count = start + len(page) if page else self.scored.count()
            rest = list(self.unscored[max(0, start - scored_count) : stop - scored_count])
            for adapter in rest:
                adapter.score = None  # type: ignore[attr-defined]
            page += rest
        prefetch_related_objects(page, *self.prefetch)
        return page


def suite_for_sort(query: AdapterQuery) -> EvalSuite | None:
    """The suite a sort="score" query ranks by; InvalidRequest for an unknown sort or suite."""
    if query.sort not in SORTS and query.sort != "score":
        raise InvalidRequest(f"sort must be one of {', '.join([*SORTS, 'score'])}", code="bad_sort")
    if query.sort != "score":
        return None
    suite = (
        EvalSuite.objects.select_related("base_model").filter(pk=int(query.suite)).first()
        if query.suite.isdigit()
        else None
    )
    if suite is None:
        raise InvalidRequest("sort=score needs suite=<id of an eval suite>", code="bad_sort")
    return suite


def list_versions(adapter: Adapter, *, include_yanked: bool = False) -> QuerySet[AdapterVersion]:
    versions = adapter.versions.prefetch_related("files").order_by("-number")
    return versions if include_yanked else versions.filter(yanked=False)

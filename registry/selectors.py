"""Read queries: catalog search and listings, always scoped to what the actor may see."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Exists, F, OuterRef, Q, QuerySet

from registry.access import Actor, visible_adapters
from registry.exceptions import InvalidRequest
from registry.models import Adapter, AdapterVersion, EvalSuite, Tag
from registry.scores import best_score_subquery

SORTS = {
    "downloads": ("-downloads", "-updated_at", "pk"),
    "recent": ("-updated_at", "pk"),
    "name": ("namespace__name", "name"),
}


@dataclass(frozen=True)
class AdapterQuery:
    q: str = ""
    base_model: str = ""
    method: str = ""
    task: str = ""
    tag: str = ""
    namespace: str = ""
    sort: str = "downloads"
    # With sort="score": the id of the EvalSuite to rank by (its base model's adapters only).
    suite: str = ""


def search_adapters(actor: Actor, query: AdapterQuery) -> QuerySet[Adapter]:
    """Adapters visible to the actor matching every given filter; each word of `q` must match
    the name, namespace, description, task or a tag. sort="score" ranks by the best score on
    `query.suite` (adapters without one last)."""
    if query.sort not in SORTS and query.sort != "score":
        raise InvalidRequest(f"sort must be one of {', '.join([*SORTS, 'score'])}", code="bad_sort")
    suite = _suite_for_sort(query)
    adapters = visible_adapters(actor)
    for word in query.q.split():
        # EXISTS rather than a join through tags: no duplicate rows, so no DISTINCT is needed.
        tagged = Tag.objects.filter(adapters=OuterRef("pk"), name__icontains=word)
        adapters = adapters.filter(
            Q(name__icontains=word)
            | Q(namespace__name__icontains=word)
            | Q(description__icontains=word)
            | Q(task__icontains=word)
            | Exists(tagged)
        )
    if query.base_model:
        adapters = adapters.filter(base_model__name=query.base_model)
    if query.method:
        adapters = adapters.filter(method=query.method)
    if query.task:
        adapters = adapters.filter(task=query.task)
    if query.tag:
        adapters = adapters.filter(Exists(Tag.objects.filter(adapters=OuterRef("pk"), name=query.tag.lower())))
    if query.namespace:
        adapters = adapters.filter(namespace__name=query.namespace)
    if suite is not None:
        adapters = adapters.filter(base_model=suite.base_model)
    found = adapters.select_related("namespace", "base_model").prefetch_related("tags")
    if suite is None:
        return found.order_by(*SORTS[query.sort])
    score = F("score").desc(nulls_last=True) if suite.higher_is_better else F("score").asc(nulls_last=True)
    return found.annotate(score=best_score_subquery(suite)).order_by(score, "pk")


def _suite_for_sort(query: AdapterQuery) -> EvalSuite | None:
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

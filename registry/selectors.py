"""Read queries: catalog search and listings, always scoped to what the actor may see."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, QuerySet

from registry.access import Actor, visible_adapters
from registry.exceptions import BadRequest
from registry.models import Adapter, AdapterVersion

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


def search_adapters(actor: Actor, query: AdapterQuery) -> QuerySet[Adapter]:
    """Adapters visible to the actor matching every given filter; each word of `q` must match
    the name, namespace, description, task or a tag."""
    if query.sort not in SORTS:
        raise BadRequest(f"sort must be one of {', '.join(SORTS)}", code="bad_sort")
    adapters = visible_adapters(actor)
    for word in query.q.split():
        adapters = adapters.filter(
            Q(name__icontains=word)
            | Q(namespace__name__icontains=word)
            | Q(description__icontains=word)
            | Q(task__icontains=word)
            | Q(tags__name__icontains=word)
        )
    if query.base_model:
        adapters = adapters.filter(base_model__name=query.base_model)
    if query.method:
        adapters = adapters.filter(method=query.method)
    if query.task:
        adapters = adapters.filter(task=query.task)
    if query.tag:
        adapters = adapters.filter(tags__name=query.tag.lower())
    if query.namespace:
        adapters = adapters.filter(namespace__name=query.namespace)
    # Joins through tags can repeat rows; filter by primary keys to keep counts exact.
    return (
        Adapter.objects.filter(pk__in=adapters.values("pk"))
        .select_related("namespace", "base_model")
        .prefetch_related("tags")
        .order_by(*SORTS[query.sort])
    )


def list_versions(adapter: Adapter, *, include_yanked: bool = False) -> QuerySet[AdapterVersion]:
    versions = adapter.versions.prefetch_related("files").order_by("-number")
    return versions if include_yanked else versions.filter(yanked=False)

"""`list_models`: the Hub's search, author, filter and sort parameters onto the registry's search."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, TypedDict

from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery

from registry.access import Actor
from registry.hf.serializers import LIBRARY
from registry.models import Adapter, AdapterVersion, Method, Tag
from registry.search import BY_DOWNLOADS
from registry.selectors import AdapterQuery, Ranking, matching_adapters, ordered, understood

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

# Adapters per page when the client gives no smaller `limit` (the Hub pages at 1000; our items
# are heavier with `full=true`).
PAGE_SIZE = 100

_BY_DOWNLOADS = BY_DOWNLOADS
# The client sends the Hub's camelCase sort keys; the Hub sorts descending.
SORTS: dict[str, tuple[str, ...]] = {
    "downloads": _BY_DOWNLOADS,
    "likes": _BY_DOWNLOADS,
    "trendingScore": _BY_DOWNLOADS,
    "lastModified": ("-updated_at", "pk"),
    "createdAt": ("-created_at", "pk"),
    "id": ("namespace__name", "name"),
    "modelId": ("namespace__name", "name"),
}
# Tags every adapter here carries (see serializers.adapter_tags), so filtering on them keeps all.
_UNIVERSAL_TAGS = frozenset({LIBRARY, "safetensors"})


class HeadAnnotations(TypedDict):
    """What search_models annotates each adapter with: its head (newest unyanked) version."""

    head_id: int | None
    head_digest: str | None
    head_created_at: datetime | None


@dataclass(frozen=True)
class ModelQuery:
    search: str = ""
    author: str = ""
    filters: tuple[str, ...] = field(default_factory=tuple)
    pipeline_tag: str = ""
    # Empty: relevance when searching, else downloads (the Hub's own default order).
    sort: str = ""


def search_models(actor: Actor, query: ModelQuery) -> QuerySet[WithAnnotations[Adapter, HeadAnnotations]] | Ranking:  # noqa: E501
    """Adapters visible to the actor matching the query, each annotated with its head version.

    Words of `search` go to the registry's full-text search, except `ns/name` fragments, which
    match the repo id as the Hub's search does. Each `filter` must match a tag the adapter shows.
    Without a `sort`, a search is in relevance order (the registry's), a listing by downloads.
    """
    words = query.search.split()
    adapter_query = understood(
        actor,
        AdapterQuery(
            q=" ".join(w for w in words if "/" not in w),
            namespace=query.author,
            task=query.pipeline_tag,
        ),
    )
    adapters = matching_adapters(actor, adapter_query, None)
    for word in (w for w in words if "/" in w):
        # "a/b" is a substring of "ns/name" exactly when ns ends with a and name starts with b.
        owner_part, name_part = word.split("/", 1)
        adapters = adapters.filter(namespace__name__iendswith=owner_part, name__istartswith=name_part)
    for value in query.filters:
        adapters = adapters.filter(_tag_filter(value))
    head = AdapterVersion.objects.filter(adapter=OuterRef("pk"), yanked=False).order_by("-number")
    annotated = (
        adapters.select_related("namespace", "base_model")
        .prefetch_related("tags")
        .annotate(
            head_id=Subquery(head.values("pk")[:1]),
            head_digest=Subquery(head.values("digest")[:1]),
            head_created_at=Subquery(head.values("created_at")[:1]),
        )
    )
    return annotated.order_by(*SORTS[query.sort]) if query.sort in SORTS else ordered(annotated, adapter_query, None)


def _tag_filter(value: str) -> Q:
    """The adapters whose tags (serializers.adapter_tags) include `value`."""
    if value in _UNIVERSAL_TAGS:
        return Q()
    for prefix in ("base_model:adapter:", "base_model:"):
        if value.startswith(prefix):
            return Q(base_model__name=value[len(prefix) :])
    if value.startswith("license:"):
        return Q(license=value[len("license:") :])
    # An Exists, not a join through tags, so an adapter never comes back twice.
    tagged = Exists(Tag.adapters.through.objects.filter(adapter_id=OuterRef("pk"), tag__name=value.lower()))
    matches = Q(task=value) | Q(tagged)
    if value in Method.values:
        matches |= Q(method=value)
    return matches

"""Adapters: creating one, its metadata (task, tags, license, visibility, card) and the base model it is filed under."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.utils import timezone

from registry.access import Actor, access_namespace, require_write, visible_base_models
from registry.exceptions import InvalidContent, InvalidRequest, StateConflict
from registry.models import (
    PENDING_BASE_MODEL,
    Adapter,
    BaseModel,
    Method,
    Tag,
    Visibility,
    slug_validator,
)

# Tags per adapter: a push naming thousands would bloat every listing that shows them.
MAX_TAGS = 32
MAX_DATASETS = 32


@dataclass(frozen=True)
class AdapterMetadata:
    """Metadata a caller may set on an adapter; None means 'leave as is'."""

    base_model: str | None = None
    method: str | None = None
    task: str | None = None
    tags: Sequence[str] | None = None
    license: str | None = None
    visibility: str | None = None
    description: str | None = None
    datasets: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if self.method is not None and self.method not in Method.values:
            raise InvalidRequest(f"method must be one of {', '.join(Method.values)}", code="bad_method")
        if self.visibility is not None and self.visibility not in Visibility.values:
            raise InvalidRequest("visibility must be 'public' or 'private'", code="bad_visibility")
        if self.tags is not None and len(self.tags) > MAX_TAGS:
            raise InvalidRequest(f"an adapter has at most {MAX_TAGS} tags, not {len(self.tags)}", code="too_many_tags")
        for tag in self.tags or ():
            if not tag or len(tag) > 64:
                raise InvalidRequest(f"tag {tag!r} must have 1 to 64 characters", code="bad_tag")
        if self.datasets is not None and len(self.datasets) > MAX_DATASETS:
            raise InvalidRequest(
                f"an adapter names at most {MAX_DATASETS} data sets, not {len(self.datasets)}", code="too_many_datasets"
            )
        for dataset in self.datasets or ():
            if not dataset or len(dataset) > 200:
                raise InvalidRequest(f"data set {dataset!r} must have 1 to 200 characters", code="bad_dataset")


def create_adapter(*, actor: Actor, namespace: str, name: str, meta: AdapterMetadata) -> Adapter:
    owner = access_namespace(actor, namespace)
    require_write(actor, owner)
    check_slug(name, what="adapter name")
    if not meta.base_model or not meta.method:
        raise InvalidRequest("base_model and method are required", code="missing_field")
    with transaction.atomic():
        if Adapter.objects.filter(namespace=owner, name=name).exists():
            raise StateConflict(f"adapter {namespace}/{name} already exists", code="adapter_exists")
        adapter = Adapter.objects.create(
            namespace=owner,
            name=name,
            base_model=base_model_named(actor, meta.base_model),
            method=meta.method,
            created_by=actor.user,
            # Private from its first row: the search vocabulary takes public adapters' words as they
            # are inserted (migration 0013).
            visibility=meta.visibility or Visibility.PUBLIC,
        )
        apply_metadata(adapter, meta)
    return adapter


def update_adapter(*, actor: Actor, adapter: Adapter, meta: AdapterMetadata) -> Adapter:
    require_write(actor, adapter.namespace)
    if meta.base_model is not None and meta.base_model != adapter.base_model.name and adapter.versions.exists():
        raise StateConflict("the base model of an adapter with versions cannot change", code="base_model_change")
    with transaction.atomic():
        if meta.base_model is not None:
            adapter.base_model = base_model_named(actor, meta.base_model)
        if meta.method is not None:
            adapter.method = meta.method
        apply_metadata(adapter, meta)
    return adapter


def apply_metadata(adapter: Adapter, meta: AdapterMetadata) -> None:
    for field_name in ("task", "license", "visibility", "description"):
        value = getattr(meta, field_name)
        if value is not None:
            setattr(adapter, field_name, value)
    if meta.datasets is not None:
        adapter.datasets = list(dict.fromkeys(d.strip() for d in meta.datasets if d.strip()))
    adapter.updated_at = timezone.now()
    adapter.save()
    if meta.tags is not None:
        names = sorted({t.strip().lower() for t in meta.tags if t.strip()})
        Tag.objects.bulk_create([Tag(name=n) for n in names], ignore_conflicts=True)
        adapter.tags.set(Tag.objects.filter(name__in=names))


def base_model_named(actor: Actor, name: str) -> BaseModel:
    """The registered base model an adapter names (case-insensitively), visible to the actor.

    Unregistered names are refused (unknown_base_model) unless the hub admits them
    (ALLOW_UNREGISTERED_BASE_MODELS): then they are recorded as unverified, without a manifest.
    """
    if name == PENDING_BASE_MODEL:
        return BaseModel.objects.get_or_create(name=name, defaults={"registered": False})[0]
    base = visible_base_models(actor).filter(registered=True, name__iexact=name).first()
    if base is not None:
        return base
    if (
        settings.ALLOW_UNREGISTERED_BASE_MODELS
        and not BaseModel.objects.filter(name__iexact=name, registered=True).exists()
    ):
        unverified = BaseModel.objects.filter(name__iexact=name, registered=False).first()
        return unverified or BaseModel.objects.create(name=name, registered=False)
    raise InvalidContent(
        f"base model {name!r} is not registered on this hub; an admin registers base models "
        "(`manage.py register_base_model`)",
        code="unknown_base_model",
    )


def check_slug(value: str, *, what: str) -> None:
    try:
        slug_validator(value)
    except DjangoValidationError:
        raise InvalidRequest(
            f"{what} {value!r} is invalid: use letters, digits, '.', '_' or '-', starting with a letter or digit",
            code="bad_name",
        ) from None

"""Base model records: registering a name with its architecture and module manifest (their files: registry/base_models.py)."""

from __future__ import annotations

from typing import Any

from registry.exceptions import InvalidRequest, NotFound
from registry.models import (
    PENDING_BASE_MODEL,
    BaseModel,
    Namespace,
    Visibility,
)


def register_base_model(
    *,
    name: str,
    architecture: str = "",
    manifest: dict[str, list[int]] | None = None,
    description: str = "",
    visibility: str = Visibility.PUBLIC,
    namespace: str | None = None,
) -> BaseModel:
    """Create or update a registered base model; the manifest maps linear module names to [out, in].

    A name an unregistered row holds (a hub that admitted it unverified) becomes registered.
    """
    _check_manifest(manifest or {})
    if visibility not in Visibility.values:
        raise InvalidRequest("visibility must be 'public' or 'private'", code="bad_visibility")
    owner = Namespace.objects.filter(name=namespace).first() if namespace else None
    if namespace and owner is None:
        raise NotFound(f"namespace {namespace} does not exist", code="namespace_not_found")
    if visibility == Visibility.PRIVATE and owner is None:
        raise InvalidRequest("a private base model needs the namespace whose members see it", code="missing_namespace")
    if name == PENDING_BASE_MODEL or not name.strip():
        raise InvalidRequest(f"{name!r} cannot name a base model", code="bad_name")
    base, _ = BaseModel.objects.update_or_create(
        name=name,
        defaults={
            "architecture": architecture,
            "manifest": manifest or {},
            "description": description,
            "registered": True,
            "visibility": visibility,
            "namespace": owner,
        },
    )
    return base


def _check_manifest(manifest: dict[str, Any]) -> None:
    for module, shape in manifest.items():
        valid = isinstance(shape, list) and len(shape) == 2 and all(isinstance(d, int) and d > 0 for d in shape)
        if not isinstance(module, str) or not valid:
            raise InvalidRequest(
                f"manifest entry {module!r} must map to [out, in] positive integers", code="bad_manifest"
            )

"""Use-cases of the registry: namespaces, tokens, base models, adapters, pushes, yanks, downloads.

Views call these and nothing else; tests call them directly.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from registry.access import Actor, access_namespace, require_write, visible_base_models
from registry.blobs import get_blob_store
from registry.exceptions import InvalidRequest, StateConflict, AccessDenied, NotFound, InvalidContent
from registry.models import (
    Adapter,
    AdapterVersion,
    ApiToken,
    PENDING_BASE_MODEL,
    RESERVED_NAMESPACES,
    BaseModel,
    Membership,
    Method,
    Namespace,
    Role,
    Tag,
    TokenScope,
    VersionFile,
    Visibility,
    slug_validator,
)

log = logging.getLogger(__name__)



# Tags per adapter: a push naming thousands would bloat every listing that shows them.
MAX_TAGS = 32


# --- Namespaces -----------------------------------------------------------------------------------


def check_namespace_name(name: str) -> None:
    """A user's or organization's name must be a slug and must not be one of the hub's routes."""
    check_slug(name, what="namespace name")
    if name.lower() in RESERVED_NAMESPACES:
        raise InvalidRequest(f"{name!r} is reserved: the hub's own pages and API live there", code="reserved_name")


def ensure_user_namespace(user: AbstractBaseUser) -> Namespace:
    """Every user owns the namespace named after them; created on first need. A user named like
    one of the hub's routes (made in the admin, say) gets none: the route would shadow it."""
    existing = Namespace.objects.filter(user=user).first()
    if existing is not None:
        return existing
    check_namespace_name(user.get_username())
    namespace, _ = Namespace.objects.get_or_create(
        user=user, defaults={"name": user.get_username(), "kind": Namespace.Kind.USER}
    )
    return namespace


def create_organization(*, actor: Actor, name: str, display_name: str = "") -> Namespace:
    if not actor.is_authenticated:
        raise AccessDenied("sign in to create an organization", code="auth_required")
    if actor.token is not None and not actor.token.allows(TokenScope.WRITE):
        raise AccessDenied(f"this token has scope '{actor.token.scope}'; creating an organization needs 'write'", code="token_scope")
    check_namespace_name(name)
    with transaction.atomic():
        if Namespace.objects.filter(name__iexact=name).exists():
            raise StateConflict(f"namespace {name} is taken", code="namespace_taken")
        org = Namespace.objects.create(name=name, kind=Namespace.Kind.ORG, display_name=display_name)
        Membership.objects.create(namespace=org, user=actor.user, role=Role.OWNER)
    return org


def set_membership(*, actor: Actor, namespace: Namespace, username: str, role: str | None) -> Membership | None:
    """Add, change or (role=None) remove a member of an organization. Owners only."""
    if namespace.kind != Namespace.Kind.ORG:
        raise InvalidRequest("only organizations have members", code="not_an_organization")
    if not actor.can_manage(namespace):
        raise AccessDenied(f"only owners of {namespace.name} manage its members", code="owner_required")
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise NotFound(f"user {username} does not exist", code="user_not_found")
    with transaction.atomic():
        owners = Membership.objects.select_for_update().filter(namespace=namespace, role=Role.OWNER)
        is_last_owner = [m.user_id for m in owners] == [user.pk]
        if is_last_owner and role != Role.OWNER:
            raise StateConflict("an organization needs at least one owner", code="last_owner")
        if role is None:
            Membership.objects.filter(namespace=namespace, user=user).delete()
            return None
        if role not in Role.values:
            raise InvalidRequest(f"role must be one of {', '.join(Role.values)}", code="bad_role")
        membership, _ = Membership.objects.update_or_create(
            namespace=namespace, user=user, defaults={"role": role}
        )
    return membership


# --- Tokens ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # shown once; only its hash is stored


def issue_token(
    *,
    user: AbstractBaseUser,
    name: str,
    scope: str = TokenScope.READ,
    namespace: str | None = None,
    expires_at: datetime | None = None,
) -> IssuedToken:
    if scope not in TokenScope.values:
        raise InvalidRequest(f"scope must be one of {', '.join(TokenScope.values)}", code="bad_scope")
    if scope == TokenScope.ADMIN and not user.is_staff:
        raise AccessDenied("only staff users may hold admin tokens", code="admin_required")
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidRequest("expires_at is in the past", code="bad_expiry")
    limited_to = None
    if namespace:
        limited_to = Namespace.objects.filter(name=namespace).first()
        if limited_to is None:
            raise NotFound(f"namespace {namespace} does not exist", code="namespace_not_found")
        if Actor(user=user).role_in(limited_to) is None:
            raise AccessDenied(f"you are not a member of {namespace}", code="namespace_forbidden")
    secret = ApiToken.PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name[:100] or "token",
        key_prefix=secret[: len(ApiToken.PREFIX) + 6],
        key_hash=ApiToken.hash_key(secret),
        scope=scope,
        namespace=limited_to,
        expires_at=expires_at,
    )
    return IssuedToken(token=token, secret=secret)


def authenticate_token(secret: str) -> ApiToken | None:
    """The active token with this secret, marking its use; None when unknown, revoked or expired."""
    token = ApiToken.objects.select_related("user", "namespace").filter(key_hash=ApiToken.hash_key(secret)).first()
    if token is None or not token.is_active or not token.user.is_active:
        return None
    now = timezone.now()
    # Writing on every request would make reads write-heavy; a minute's precision is plenty.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def revoke_token(*, user: AbstractBaseUser, token_id: int) -> None:
    updated = ApiToken.objects.filter(pk=token_id, user=user, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if not updated:
        raise NotFound(f"token {token_id} does not exist or is already revoked", code="token_not_found")


# --- Base models ----------------------------------------------------------------------------------


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
            raise InvalidRequest(f"manifest entry {module!r} must map to [out, in] positive integers", code="bad_manifest")


# --- Adapters -------------------------------------------------------------------------------------


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
    if settings.ALLOW_UNREGISTERED_BASE_MODELS and not BaseModel.objects.filter(name__iexact=name, registered=True).exists():
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


# --- Versions -------------------------------------------------------------------------------------


def resolve_version(adapter: Adapter, ref: str | int | None) -> AdapterVersion:
    """A version by number or label; None or 'latest' means the newest non-yanked one."""
    versions = adapter.versions.all()
    if ref is None or ref == "latest":
        version = versions.filter(yanked=False).order_by("-number").first()
        if version is None:
            raise NotFound(f"{adapter.full_name} has no published version", code="version_not_found")
        return version
    text = str(ref)
    version = versions.filter(number=int(text)).first() if text.isdigit() else versions.filter(label=text).first()
    if version is None:
        raise NotFound(f"{adapter.full_name} has no version {text}", code="version_not_found")
    return version


def yank_version(*, actor: Actor, version: AdapterVersion, reason: str, yanked: bool = True) -> AdapterVersion:
    require_write(actor, version.adapter.namespace)
    if yanked and not reason.strip():
        raise InvalidRequest("say why the version is yanked: users who pinned it will read the reason", code="missing_reason")
    version.yanked = yanked
    version.yanked_reason = reason.strip() if yanked else ""
    version.yanked_at = timezone.now() if yanked else None
    version.save(update_fields=["yanked", "yanked_reason", "yanked_at"])
    return version


def version_file(version: AdapterVersion, path: str) -> VersionFile:
    found = version.files.filter(path=path).first()
    if found is None:
        raise NotFound(f"{version} has no file {path}", code="file_not_found")
    return found


def record_download(adapter: Adapter) -> None:
    # An UPDATE with F() is atomic in the database: concurrent downloads are all counted.
    Adapter.objects.filter(pk=adapter.pk).update(downloads=F("downloads") + 1)


def counts_as_download(path: str, range_start: int) -> bool:
    """One download per fetch of the weights, not per file or per resumed chunk."""
    return path.endswith(".safetensors") and range_start == 0


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def copy_version_files(version: AdapterVersion, folder: Path, paths: Sequence[str] = ADAPTER_FILES) -> dict[str, str]:
    """Stream the version's files named in `paths` from the blob store into `folder`;
    returns their sha256 by path (workers load adapters from the copy)."""
    store = get_blob_store()
    copied: dict[str, str] = {}
    for f in version.files.filter(path__in=paths):
        target = folder / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            for chunk in store.read_range(f.sha256, 0, f.size):
                out.write(chunk)
        copied[f.path] = f.sha256
    return copied

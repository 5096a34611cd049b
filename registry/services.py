"""Use-cases of the registry: namespaces, tokens, base models, adapters, pushes, yanks, downloads.

Views call these and nothing else; tests call them directly.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Max
from django.utils import timezone

from composer.validation import AdapterValidationError, Limits, ValidatedAdapter, normalize_filename, validate_adapter
from composer.validation import validate_adapter_config
from registry.access import Actor, access_namespace, require_write
from registry.blobs import get_blob_store
from registry.exceptions import BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unprocessable
from registry.models import (
    Adapter,
    AdapterVersion,
    ApiToken,
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

MAX_CARD_BYTES = 1024 * 1024
HASH_CHUNK = 1024 * 1024


# --- Namespaces -----------------------------------------------------------------------------------


def ensure_user_namespace(user: AbstractBaseUser) -> Namespace:
    """Every user owns the namespace named after them; created on first need."""
    namespace, _ = Namespace.objects.get_or_create(
        user=user, defaults={"name": user.get_username(), "kind": Namespace.Kind.USER}
    )
    return namespace


def create_organization(*, actor: Actor, name: str, display_name: str = "") -> Namespace:
    if not actor.is_authenticated:
        raise Forbidden("sign in to create an organization", code="auth_required")
    _check_slug(name, what="organization name")
    with transaction.atomic():
        if Namespace.objects.filter(name__iexact=name).exists():
            raise Conflict(f"namespace {name} is taken", code="namespace_taken")
        org = Namespace.objects.create(name=name, kind=Namespace.Kind.ORG, display_name=display_name)
        Membership.objects.create(namespace=org, user=actor.user, role=Role.OWNER)
    return org


def set_membership(*, actor: Actor, namespace: Namespace, username: str, role: str | None) -> Membership | None:
    """Add, change or (role=None) remove a member of an organization. Owners only."""
    if namespace.kind != Namespace.Kind.ORG:
        raise BadRequest("only organizations have members", code="not_an_organization")
    if not actor.can_manage(namespace):
        raise Forbidden(f"only owners of {namespace.name} manage its members", code="owner_required")
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise NotFound(f"user {username} does not exist", code="user_not_found")
    with transaction.atomic():
        owners = Membership.objects.select_for_update().filter(namespace=namespace, role=Role.OWNER)
        is_last_owner = [m.user_id for m in owners] == [user.pk]
        if is_last_owner and role != Role.OWNER:
            raise Conflict("an organization needs at least one owner", code="last_owner")
        if role is None:
            Membership.objects.filter(namespace=namespace, user=user).delete()
            return None
        if role not in Role.values:
            raise BadRequest(f"role must be one of {', '.join(Role.values)}", code="bad_role")
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
        raise BadRequest(f"scope must be one of {', '.join(TokenScope.values)}", code="bad_scope")
    if scope == TokenScope.ADMIN and not user.is_staff:
        raise Forbidden("only staff users may hold admin tokens", code="admin_required")
    if expires_at is not None and expires_at <= timezone.now():
        raise BadRequest("expires_at is in the past", code="bad_expiry")
    limited_to = None
    if namespace:
        limited_to = Namespace.objects.filter(name=namespace).first()
        if limited_to is None:
            raise NotFound(f"namespace {namespace} does not exist", code="namespace_not_found")
        if Actor(user=user).role_in(limited_to) is None:
            raise Forbidden(f"you are not a member of {namespace}", code="namespace_forbidden")
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
    *, name: str, architecture: str = "", manifest: dict[str, list[int]] | None = None, description: str = ""
) -> BaseModel:
    """Create or update a base model; the manifest maps linear module names to [out, in]."""
    _check_manifest(manifest or {})
    base, _ = BaseModel.objects.update_or_create(
        name=name,
        defaults={"architecture": architecture, "manifest": manifest or {}, "description": description},
    )
    return base


def _check_manifest(manifest: dict[str, Any]) -> None:
    for module, shape in manifest.items():
        valid = isinstance(shape, list) and len(shape) == 2 and all(isinstance(d, int) and d > 0 for d in shape)
        if not isinstance(module, str) or not valid:
            raise BadRequest(f"manifest entry {module!r} must map to [out, in] positive integers", code="bad_manifest")


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
            raise BadRequest(f"method must be one of {', '.join(Method.values)}", code="bad_method")
        if self.visibility is not None and self.visibility not in Visibility.values:
            raise BadRequest("visibility must be 'public' or 'private'", code="bad_visibility")
        for tag in self.tags or ():
            if not tag or len(tag) > 64:
                raise BadRequest(f"tag {tag!r} must have 1 to 64 characters", code="bad_tag")


def create_adapter(*, actor: Actor, namespace: str, name: str, meta: AdapterMetadata) -> Adapter:
    owner = access_namespace(actor, namespace)
    require_write(actor, owner)
    _check_slug(name, what="adapter name")
    if not meta.base_model or not meta.method:
        raise BadRequest("base_model and method are required", code="missing_field")
    with transaction.atomic():
        if Adapter.objects.filter(namespace=owner, name=name).exists():
            raise Conflict(f"adapter {namespace}/{name} already exists", code="adapter_exists")
        adapter = Adapter.objects.create(
            namespace=owner,
            name=name,
            base_model=_base_model_named(meta.base_model),
            method=meta.method,
            created_by=actor.user,
        )
        _apply_metadata(adapter, meta)
    return adapter


def update_adapter(*, actor: Actor, adapter: Adapter, meta: AdapterMetadata) -> Adapter:
    require_write(actor, adapter.namespace)
    if meta.base_model is not None and meta.base_model != adapter.base_model.name and adapter.versions.exists():
        raise Conflict("the base model of an adapter with versions cannot change", code="base_model_change")
    with transaction.atomic():
        if meta.base_model is not None:
            adapter.base_model = _base_model_named(meta.base_model)
        if meta.method is not None:
            adapter.method = meta.method
        _apply_metadata(adapter, meta)
    return adapter


def _apply_metadata(adapter: Adapter, meta: AdapterMetadata) -> None:
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


def _base_model_named(name: str) -> BaseModel:
    # Unknown base models are recorded without a manifest: their pushes skip the shape check
    # until an operator registers the manifest (see `manage.py register_base_model`).
    base, _ = BaseModel.objects.get_or_create(name=name)
    return base


def _check_slug(value: str, *, what: str) -> None:
    try:
        slug_validator(value)
    except DjangoValidationError:
        raise BadRequest(
            f"{what} {value!r} is invalid: use letters, digits, '.', '_' or '-', starting with a letter or digit",
            code="bad_name",
        ) from None


# --- Push -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncomingFile:
    """One uploaded file: its path inside the version, a seekable stream, and its size."""

    path: str
    stream: IO[bytes]
    size: int


@dataclass(frozen=True)
class PushResult:
    version: AdapterVersion
    created: bool


def upload_limits() -> Limits:
    return Limits(
        max_file_size=settings.MAX_FILE_SIZE,
        max_version_size=settings.MAX_VERSION_SIZE,
        max_files=settings.MAX_FILES_PER_VERSION,
    )


def push_version(
    *,
    actor: Actor,
    namespace: str,
    name: str,
    files: Sequence[IncomingFile],
    meta: AdapterMetadata = AdapterMetadata(),
    label: str | None = None,
) -> PushResult:
    """Publish `files` as the next version of `namespace/name`, creating the adapter on first push.

    1. Check the caller may write the namespace, and normalize the file names.
    2. Validate everything (config, safetensors headers, shapes against the base model) before
       any byte is stored.
    3. Hash the files; an identical file set returns the existing version.
    4. Store missing blobs, then create the version and its files in one transaction that locks
       the adapter row, so concurrent pushes get consecutive numbers.
    5. On any failure after storing, delete the blobs this push added and nothing references.
    """
    checked = check_push(actor=actor, namespace=namespace, name=name, files=files, meta=meta, label=label)
    by_path = checked.files
    hashed = {path: _sha256_of(f.stream) for path, f in by_path.items()}
    same = identical_version(checked, hashed)
    if same is not None:
        return PushResult(version=same, created=False)

    added = _store_blobs(by_path, hashed)
    try:
        return publish_checked_push(actor=actor, checked=checked, hashed=hashed)
    except BaseException:
        _discard_unreferenced(added)
        raise


@dataclass(frozen=True)
class CheckedPush:
    """A push that passed every check and validation of steps 1-2 of push_version; nothing is stored."""

    owner: Namespace
    name: str
    existing: Adapter | None
    base_model_name: str
    validated: ValidatedAdapter
    meta: AdapterMetadata
    label: str | None
    files: dict[str, IncomingFile]  # by normalized path
    card: str | None


def check_label(label: str | None) -> str | None:
    """The label as stored (blank means none); a bare number is refused."""
    if label is not None:
        label = label.strip() or None
        if label is not None and label.isdigit():
            raise BadRequest("a label must not be a bare number: numbers are version numbers", code="bad_label")
    return label


def check_push(
    *,
    actor: Actor,
    namespace: str,
    name: str,
    files: Sequence[IncomingFile],
    meta: AdapterMetadata = AdapterMetadata(),
    label: str | None = None,
) -> CheckedPush:
    """Steps 1-2 of push_version: permissions, names, and validation of every file's content.

    The streams must be seekable; they are read (the weights in full, for the NaN check) and
    rewound. Resumable uploads call this on readers over their staged bytes.
    """
    owner = access_namespace(actor, namespace)
    require_write(actor, owner)
    _check_slug(name, what="adapter name")
    label = check_label(label)
    by_path = _normalized_files(files)
    existing = Adapter.objects.select_related("base_model").filter(namespace=owner, name=name).first()

    base_model_name = _resolve_base_model_name(existing, meta, by_path)
    base = BaseModel.objects.filter(name=base_model_name).first()
    method = meta.method or (existing.method if existing else None)
    try:
        validated = validate_adapter(
            {path: (f.stream, f.size) for path, f in by_path.items()},
            method=method,
            manifest=base.manifest if base is not None and base.manifest else None,
            base_model=base_model_name,
            limits=upload_limits(),
        )
    except AdapterValidationError as exc:
        raise _as_registry_error(exc) from None
    return CheckedPush(
        owner=owner,
        name=name,
        existing=existing,
        base_model_name=base_model_name,
        validated=validated,
        meta=meta,
        label=label,
        files=by_path,
        card=_read_card(by_path.get("README.md")),
    )


def identical_version(checked: CheckedPush, hashed: dict[str, str]) -> AdapterVersion | None:
    """The first version of the adapter whose file set is exactly this one, if any (idempotent push)."""
    if checked.existing is None:
        return None
    digest = AdapterVersion.compute_digest([(p, sha, checked.files[p].size) for p, sha in hashed.items()])
    same: AdapterVersion | None = checked.existing.versions.filter(digest=digest).order_by("number").first()
    return same


def publish_checked_push(*, actor: Actor, checked: CheckedPush, hashed: dict[str, str]) -> PushResult:
    """Step 4's transaction: create the version of a checked push whose blobs (`hashed`: path ->
    verified sha256) are all in the store already."""
    by_path = checked.files
    digest = AdapterVersion.compute_digest([(p, sha, by_path[p].size) for p, sha in hashed.items()])
    return _commit_version(
        actor=actor,
        owner=checked.owner,
        name=checked.name,
        base_model_name=checked.base_model_name,
        validated=checked.validated,
        meta=checked.meta,
        label=checked.label,
        files=[(p, hashed[p], by_path[p].size) for p in sorted(by_path)],
        digest=digest,
        card=checked.card,
    )


def precheck_push(
    *, actor: Actor, namespace: str, name: str, files: Sequence[tuple[str, int]], label: str | None = None
) -> tuple[Namespace, str | None, dict[str, int]]:
    """The checks of a push that need no file content: write access, names, label, file names and
    sizes. Resumable uploads run them before a byte is sent; check_push runs them all again.

    Returns the namespace, the label as stored and the sizes by normalized path.
    """
    owner = access_namespace(actor, namespace)
    require_write(actor, owner)
    _check_slug(name, what="adapter name")
    label = check_label(label)
    sizes: dict[str, int] = {}
    for raw, size in files:
        try:
            path = normalize_filename(raw)
        except AdapterValidationError as exc:
            raise _as_registry_error(exc) from None
        if path in sizes:
            raise BadRequest(f"file {path} was sent twice", code="duplicate_file")
        sizes[path] = size
    if not sizes:
        raise BadRequest("an upload needs at least one file", code="no_files")
    if "adapter_config.json" not in sizes:
        raise BadRequest(
            "adapter_config.json is missing: push the whole folder that save_pretrained wrote", code="missing_config"
        )
    limits = upload_limits()
    if len(sizes) > limits.max_files:
        raise PayloadTooLarge(
            f"The upload has {len(sizes)} files; at most {limits.max_files} are allowed per version.",
            code="too_many_files",
        )
    for path, size in sizes.items():
        if size > limits.max_file_size:
            raise PayloadTooLarge(
                f"{path} is {size} bytes; at most {limits.max_file_size} bytes are allowed per file.",
                code="file_too_large",
                path=path,
            )
    if sum(sizes.values()) > limits.max_version_size:
        raise PayloadTooLarge(
            f"The upload is over {limits.max_version_size} bytes in total; that is the per-version limit.",
            code="version_too_large",
        )
    return owner, label, sizes


def _normalized_files(files: Sequence[IncomingFile]) -> dict[str, IncomingFile]:
    if not files:
        raise BadRequest("no files were sent: send one multipart part named 'files' per file", code="no_files")
    by_path: dict[str, IncomingFile] = {}
    for f in files:
        try:
            path = normalize_filename(f.path)
        except AdapterValidationError as exc:
            raise _as_registry_error(exc) from None
        if path in by_path:
            raise BadRequest(f"file {path} was sent twice", code="duplicate_file")
        by_path[path] = IncomingFile(path=path, stream=f.stream, size=f.size)
    return by_path


def _resolve_base_model_name(existing: Adapter | None, meta: AdapterMetadata, by_path: dict[str, IncomingFile]) -> str:
    config_file = by_path.get("adapter_config.json")
    if config_file is None:
        raise BadRequest(
            "adapter_config.json is missing: push the whole folder that save_pretrained wrote", code="missing_config"
        )
    config_file.stream.seek(0)
    raw = config_file.stream.read(config_file.size + 1)
    config_file.stream.seek(0)
    try:
        config_name = validate_adapter_config(raw).get("base_model_name_or_path") or None
    except AdapterValidationError as exc:
        raise _as_registry_error(exc) from None
    if existing is not None:
        if meta.base_model and meta.base_model != existing.base_model.name:
            raise Conflict(
                f"{existing.full_name} is an adapter of {existing.base_model.name}, not {meta.base_model}",
                code="base_model_change",
            )
        return existing.base_model.name
    name = meta.base_model or config_name
    if not name:
        raise Unprocessable(
            "the base model is unknown: send a 'base_model' field or set base_model_name_or_path in adapter_config.json",
            code="missing_base_model",
        )
    return name


def _sha256_of(stream: IO[bytes]) -> str:
    stream.seek(0)
    digest = hashlib.sha256()
    while chunk := stream.read(HASH_CHUNK):
        digest.update(chunk)
    stream.seek(0)
    return digest.hexdigest()


def _store_blobs(by_path: dict[str, IncomingFile], hashed: dict[str, str]) -> list[str]:
    """Store each distinct blob that is missing; returns the ones this call added."""
    store = get_blob_store()
    added: list[str] = []
    try:
        for path, sha in hashed.items():
            if sha in added or store.exists(sha):
                continue
            stream = by_path[path].stream
            stream.seek(0)
            info = store.put(stream, max_size=settings.MAX_FILE_SIZE)
            if info.sha256 != sha:
                raise Conflict(f"{path} changed while it was being stored", code="upload_changed")
            added.append(sha)
    except BaseException:
        _discard_unreferenced(added)
        raise
    return added


def _discard_unreferenced(shas: Iterable[str]) -> None:
    shas = list(shas)
    if not shas:
        return
    referenced = set(VersionFile.objects.filter(sha256__in=shas).values_list("sha256", flat=True))
    store = get_blob_store()
    for sha in shas:
        if sha not in referenced:
            try:
                store.delete(sha)
            except Exception:  # gc_blobs sweeps whatever is left
                log.exception("could not delete orphan blob %s", sha)


def _read_card(card_file: IncomingFile | None) -> str | None:
    if card_file is None:
        return None
    card_file.stream.seek(0)
    raw = card_file.stream.read(MAX_CARD_BYTES)
    card_file.stream.seek(0)
    return raw.decode("utf-8", errors="replace")


def _commit_version(
    *,
    actor: Actor,
    owner: Namespace,
    name: str,
    base_model_name: str,
    validated: ValidatedAdapter,
    meta: AdapterMetadata,
    label: str | None,
    files: list[tuple[str, str, int]],
    digest: str,
    card: str | None,
) -> PushResult:
    with transaction.atomic():
        adapter = _lock_or_create_adapter(actor, owner, name, base_model_name, validated, meta)
        same = adapter.versions.filter(digest=digest).order_by("number").first()
        if same is not None:
            return PushResult(version=same, created=False)
        if label is not None and adapter.versions.filter(label=label).exists():
            raise Conflict(
                f"label {label} already names another version of {adapter.full_name}", code="label_taken"
            )
        number = (adapter.versions.aggregate(n=Max("number"))["n"] or 0) + 1
        version = AdapterVersion.objects.create(
            adapter=adapter,
            number=number,
            label=label,
            config=validated.config,
            peft_type=validated.peft_type,
            rank=validated.rank,
            lora_alpha=validated.lora_alpha,
            target_modules=validated.target_modules,
            total_size=sum(size for _, _, size in files),
            digest=digest,
            created_by=actor.user,
        )
        VersionFile.objects.bulk_create(
            [VersionFile(version=version, path=p, sha256=sha, size=size) for p, sha, size in files]
        )
        if card is not None:
            adapter.card = card
        _apply_metadata(adapter, meta)
    return PushResult(version=version, created=True)


def _lock_or_create_adapter(
    actor: Actor, owner: Namespace, name: str, base_model_name: str, validated: ValidatedAdapter, meta: AdapterMetadata
) -> Adapter:
    base = _base_model_named(base_model_name)
    try:
        with transaction.atomic():
            Adapter.objects.get_or_create(
                namespace=owner,
                name=name,
                defaults={
                    "base_model": base,
                    "method": meta.method or validated.method,
                    "created_by": actor.user,
                    "visibility": meta.visibility or Visibility.PUBLIC,
                },
            )
    except IntegrityError:
        pass  # a concurrent first push created it; the locked read below finds it
    # The row lock serializes concurrent pushes to one adapter so version numbers never collide.
    return Adapter.objects.select_for_update().select_related("namespace", "base_model").get(namespace=owner, name=name)


def _as_registry_error(exc: AdapterValidationError) -> BadRequest | PayloadTooLarge | Unprocessable:
    kind = {400: BadRequest, 413: PayloadTooLarge}.get(exc.status, Unprocessable)
    return kind(exc.message, code=exc.code, path=exc.path)


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
        raise BadRequest("say why the version is yanked: users who pinned it will read the reason", code="missing_reason")
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


@contextlib.contextmanager
def folder_files(folder: Path) -> Iterator[list[IncomingFile]]:
    """Every file under `folder` as an IncomingFile (path relative to it), open for the block."""
    paths = sorted(p for p in folder.rglob("*") if p.is_file())
    with contextlib.ExitStack() as stack:
        yield [
            IncomingFile(path=p.relative_to(folder).as_posix(), stream=stack.enter_context(p.open("rb")), size=p.stat().st_size)
            for p in paths
        ]

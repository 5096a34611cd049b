"""The push pipeline: every way in goes through these steps, written once.

REST multipart pushes, upload sessions (`ahub push`), Hugging Face commits (`upload_folder`,
`push_to_hub`), the web upload form, compositions and the demo all call `check_push` and then
`publish` (or `push_version`, which is the two together):

    check_push
      1. check_target        write access, adapter name, label
      2. check_file_list     file names, duplicates, adapter_config.json present, size caps
      3. read_card           README.md's YAML: base_model, license, tags, pipeline_tag
      4. validate_content    adaptercheck on every byte (config, headers, NaN/Inf)
      5. resolve_base_model  explicit > card > config; a path is matched by tensor shapes
      6. normalize_config    the stored adapter_config.json names the resolved base model
    publish
      7. hash what is not stored yet; an identical file set is the existing version
      8. store missing blobs, then one transaction creates the version (and the adapter)

Resumable uploads run steps 1-2 before a byte is sent (`check_target`, `check_file_list`), and
the rest on the staged bytes when the upload completes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max

from adaptercheck import (
    CONFIG_NAME,
    AdapterValidationError,
    Limits,
    ValidatedAdapter,
    check_base_shapes,
    declared_base_model,
    fits_base,
    how_to_choose_base,
    looks_like_path,
    match_base_model,
    normalize_filename,
    validate_adapter,
    with_base_model,
)
from adaptercheck import check_file_list as validation_file_list
from registry import blob_claims
from registry.access import Actor, access_namespace, require_write, visible_base_models
from registry.blobs import get_blob_store
from registry.exceptions import InvalidContent, InvalidRequest, StateConflict, TooLarge
from registry.models import (
    PENDING_BASE_MODEL,
    Adapter,
    AdapterVersion,
    BaseModel,
    Namespace,
    VersionFile,
    Visibility,
)
from registry.services import MAX_DATASETS, MAX_TAGS, AdapterMetadata, apply_metadata, check_slug
from storage import BlobMismatch

log = logging.getLogger(__name__)

MAX_CARD_BYTES = 1024 * 1024
HASH_CHUNK = 1024 * 1024
_README = "README.md"
_TAG_MAX = 64


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


def as_registry_error(exc: AdapterValidationError) -> InvalidRequest | StateConflict | TooLarge | InvalidContent:
    kinds: dict[str, type[InvalidRequest | StateConflict | TooLarge | InvalidContent]] = {
        "request": InvalidRequest,
        "conflict": StateConflict,
        "size": TooLarge,
    }
    kind = kinds.get(exc.kind, InvalidContent)
    if exc.candidates:
        return kind(exc.message, code=exc.code, path=exc.path, candidates=list(exc.candidates))
    return kind(exc.message, code=exc.code, path=exc.path)


# --- 1. The target --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    owner: Namespace
    name: str
    label: str | None
    existing: Adapter | None


_COMMIT_LIKE = re.compile(r"[0-9a-fA-F]{7,64}")


def check_label(label: str | None) -> str | None:
    """The label as stored (blank means none). A label must never read as another kind of
    revision, or the REST API and HF clients could disagree on the version it names: bare numbers
    (version numbers), `main` and `latest` (the moving head) and hex strings of 7 to 64
    characters (commit ids and their prefixes) are refused."""
    if label is None:
        return None
    label = label.strip() or None
    if label is None:
        return None
    if label.isdigit():
        raise InvalidRequest("a label must not be a bare number: numbers are version numbers", code="bad_label")
    if label.casefold() in ("main", "latest"):
        raise InvalidRequest(f"{label!r} names the newest version already; choose another label", code="bad_label")
    if _COMMIT_LIKE.fullmatch(label):
        raise InvalidRequest(
            f"{label!r} reads as a commit id; choose a label that is not hexadecimal", code="bad_label"
        )
    if len(label) > 64:
        raise InvalidRequest("a label has at most 64 characters", code="bad_label")
    return label


def check_target(*, actor: Actor, namespace: str, name: str, label: str | None) -> Target:
    owner = access_namespace(actor, namespace)
    require_write(actor, owner)
    check_slug(name, what="adapter name")
    label = check_label(label)
    existing = Adapter.objects.select_related("base_model", "namespace").filter(namespace=owner, name=name).first()
    return Target(owner=owner, name=name, label=label, existing=existing)


# --- 2. The file list -----------------------------------------------------------------------------


def check_file_list(files: Sequence[tuple[str, int]]) -> dict[str, int]:
    """adaptercheck.check_file_list with this hub's limits."""
    try:
        return validation_file_list(files, upload_limits())
    except AdapterValidationError as exc:
        raise as_registry_error(exc) from None


# --- 3. The model card ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Card:
    """README.md's text and what its YAML metadata says, as the Hub reads a model card."""

    text: str | None = None
    base_model: str | None = None
    meta: AdapterMetadata = AdapterMetadata()


def read_card(stream: IO[bytes] | None) -> Card:
    """Parse a README with huggingface_hub.ModelCard. Only values the registry accepts are
    taken: `base_model:*` tags are derived, not stored, and malformed metadata is ignored rather
    than failing a push over a card."""
    if stream is None:
        return Card()
    stream.seek(0)
    text = stream.read(MAX_CARD_BYTES).decode("utf-8", errors="replace")
    stream.seek(0)
    if not text.lstrip("\ufeff").startswith("---"):
        return Card(text=text)  # no metadata block (ModelCard would log a warning per push)
    from huggingface_hub import ModelCard, ModelCardData

    try:
        data = ModelCard(text, ignore_metadata_errors=True).data
    except Exception:  # the YAML itself does not parse; huggingface_hub raises several kinds
        return Card(text=text)
    if not isinstance(data, ModelCardData):  # a ModelCard's data always is; its annotation says CardData
        return Card(text=text)
    base = data.base_model
    if isinstance(base, list):
        base = base[0] if len(base) == 1 else None
    tags = None
    if isinstance(data.tags, list):
        tags = [
            t.strip()
            for t in data.tags
            if isinstance(t, str) and 0 < len(t.strip()) <= _TAG_MAX and not t.startswith("base_model:")
        ][:MAX_TAGS]
    return Card(
        text=text,
        base_model=base.strip() if isinstance(base, str) and base.strip() else None,
        meta=AdapterMetadata(
            license=_short(data.license),
            task=_short(data.pipeline_tag),
            tags=tags,
            datasets=_datasets(data.datasets),
        ),
    )


def _datasets(value: Any) -> list[str] | None:
    """A card's `datasets:`, one name or a list of them."""
    names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    kept = [n.strip() for n in names if isinstance(n, str) and 0 < len(n.strip()) <= 200][:MAX_DATASETS]
    return kept or None


def _short(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= _TAG_MAX else None


def merged_metadata(explicit: AdapterMetadata, card: AdapterMetadata) -> AdapterMetadata:
    """What the caller said, completed by the card where the caller said nothing."""
    values = {f.name: getattr(explicit, f.name) for f in fields(AdapterMetadata)}
    for name, value in values.items():
        if value is None:
            values[name] = getattr(card, name)
    return AdapterMetadata(**values)


# --- 4. The content -------------------------------------------------------------------------------


def validate_content(files: Mapping[str, IncomingFile], *, method: str | None) -> ValidatedAdapter:
    """Every file's content, before the base model is known (its shapes are checked in step 5)."""
    try:
        return validate_adapter(
            {path: (f.stream, f.size) for path, f in files.items()}, method=method, limits=upload_limits()
        )
    except AdapterValidationError as exc:
        raise as_registry_error(exc) from None


# --- 5. The base model ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedBase:
    """The base model a push is filed under. `base` is None for a name this hub admits unverified
    (ALLOW_UNREGISTERED_BASE_MODELS): its row is created with the version, not before."""

    name: str
    base: BaseModel | None
    # The config's base_model_name_or_path when it differs from `name` (kept on the version).
    trained_from: str


def resolve_base_model(
    *,
    actor: Actor,
    existing: Adapter | None,
    explicit: str | None,
    card: str | None,
    config: str | None,
    validated: ValidatedAdapter,
) -> ResolvedBase:
    """The base model a push is filed under, the same on every path.

    1. An existing adapter keeps its base model: an explicit other name is a 409, a card or config
       naming another base model a 422 (a path names none; its shapes are checked instead).
    2. Otherwise the first of the explicit value, the card's `base_model` and the config's
       `base_model_name_or_path` decides. A path is never a name: it is matched against the
       registered base models by the adapter's shapes, the path's last segment breaking ties.
    3. A name must be registered (case-insensitively), unless the hub admits unregistered ones.
    4. The adapter's shapes are checked against the base model's manifest.
    """
    trained_from = config or ""
    kept = existing.base_model if existing is not None and existing.base_model.name != PENDING_BASE_MODEL else None
    try:
        chosen = declared_base_model(
            existing=(existing.full_name, kept.name) if existing is not None and kept is not None else None,
            explicit=explicit,
            card=card,
            config=config,
        )
    except AdapterValidationError as exc:
        raise as_registry_error(exc) from None
    if kept is not None:
        return _checked(ResolvedBase(kept.name, kept, _differs(trained_from, kept.name)), validated)
    candidates = visible_base_models(actor).filter(registered=True)
    if looks_like_path(chosen):
        base = match_base_by_shapes(chosen, candidates.exclude(manifest={}), validated)
        return _checked(ResolvedBase(base.name, base, _differs(trained_from, base.name)), validated)
    named = candidates.filter(name__iexact=chosen).first()
    if named is not None:
        return _checked(ResolvedBase(named.name, named, _differs(trained_from, named.name)), validated)
    if (
        settings.ALLOW_UNREGISTERED_BASE_MODELS
        and not BaseModel.objects.filter(name__iexact=chosen, registered=True).exists()
    ):
        unverified = BaseModel.objects.filter(name__iexact=chosen, registered=False).first()
        name = unverified.name if unverified is not None else chosen
        return ResolvedBase(name, unverified, _differs(trained_from, name))
    fitting = sorted(b.name for b in candidates if b.manifest and fits_base(validated, b.manifest))
    raise InvalidContent(
        f"base model {chosen!r} is not registered on this hub. {how_to_choose_base(fitting)}",
        code="unknown_base_model",
        candidates=fitting[:10],
    )


def _differs(trained_from: str, name: str) -> str:
    return trained_from if trained_from and trained_from != name else ""


def _checked(resolved: ResolvedBase, validated: ValidatedAdapter) -> ResolvedBase:
    if resolved.base is not None and resolved.base.manifest:
        try:
            check_base_shapes(validated, resolved.base.manifest)
        except AdapterValidationError as exc:
            raise as_registry_error(exc) from None
    return resolved


def match_base_by_shapes(
    path: str, candidates: Iterable[BaseModel], validated: ValidatedAdapter | Sequence[ValidatedAdapter]
) -> BaseModel:
    """adaptercheck.match_base_model over registered base models."""
    by_name = {b.name: b for b in candidates}
    try:
        return by_name[match_base_model(path, validated, {name: b.manifest for name, b in by_name.items()})]
    except AdapterValidationError as exc:
        raise as_registry_error(exc) from None


# --- 6. The stored config -------------------------------------------------------------------------


def normalize_config(
    files: dict[str, IncomingFile], base_name: str, paths: Sequence[str] = (CONFIG_NAME,)
) -> frozenset[str]:
    """Make each stored adapter_config.json (`paths`) name the resolved base model, so that
    `AutoPeftModelForCausalLM.from_pretrained(...)` finds it through the hub on any machine.
    Replaces the entries in `files`; returns the paths whose bytes now differ from those sent."""
    rewritten = set()
    for path in paths:
        config = files[path]
        config.stream.seek(0)
        raw = config.stream.read(config.size + 1)
        config.stream.seek(0)
        new = with_base_model(raw, base_name)
        if new != raw:
            files[path] = IncomingFile(path=path, stream=io.BytesIO(new), size=len(new))
            rewritten.add(path)
    return frozenset(rewritten)


# --- check_push: steps 1-6 ------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckedPush:
    """A push that passed every check; nothing is stored yet."""

    target: Target
    base: ResolvedBase
    validated: ValidatedAdapter
    meta: AdapterMetadata
    files: dict[str, IncomingFile]  # by normalized path, the config as it will be stored
    rewritten: frozenset[str]  # paths whose bytes differ from those sent
    card: str | None


def check_push(
    *,
    actor: Actor,
    namespace: str,
    name: str,
    files: Sequence[IncomingFile],
    meta: AdapterMetadata = AdapterMetadata(),
    label: str | None = None,
) -> CheckedPush:
    """Steps 1-6. The streams must be seekable; they are read (the weights in full, for the NaN
    check) and rewound."""
    target = check_target(actor=actor, namespace=namespace, name=name, label=label)
    check_file_list([(f.path, f.size) for f in files])
    by_path = {normalize_filename(f.path): f for f in files}
    by_path = {path: replace(f, path=path) for path, f in by_path.items()}
    card = read_card(by_path[_README].stream if _README in by_path else None)
    existing = target.existing
    method = meta.method or (existing.method if existing and existing.base_model.name != PENDING_BASE_MODEL else None)
    validated = validate_content(by_path, method=method)
    base = resolve_base_model(
        actor=actor,
        existing=existing,
        explicit=meta.base_model,
        card=card.base_model,
        config=(validated.base_model or "").strip() or None,  # validation read the config already
        validated=validated,
    )
    # Each PEFT config (a hybrid's parts' too) names the base; the `adapters` library's is kept byte for byte.
    rewritten = normalize_config(by_path, base.name, validated.config_paths)
    return CheckedPush(
        target=target,
        base=base,
        validated=validated,
        meta=replace(merged_metadata(meta, card.meta), base_model=None),
        files=by_path,
        rewritten=rewritten,
        card=card.text,
    )


# --- publish: steps 7-8 ---------------------------------------------------------------------------


def publish(
    *,
    actor: Actor,
    checked: CheckedPush,
    stored: Mapping[str, str] | None = None,
    then: Callable[[AdapterVersion], None] | None = None,
) -> PushResult:
    """Publish a checked push as the next version (or find the identical one).

    `stored` maps paths to the verified sha256 of bytes already in the blob store (an upload
    session's); every other file is hashed here and stored if missing. `then` runs in the
    transaction that commits the version:
    a composition records its lineage there. On any failure after storing, the blobs this call
    added and nothing references are deleted. Call it outside any transaction: its blob claims
    must be visible to gc_blobs.
    """
    stored = stored or {}
    in_store = {p: sha for p, sha in stored.items() if p in checked.files and p not in checked.rewritten}
    to_store = {p: f for p, f in checked.files.items() if p not in in_store}
    hashed = {**in_store, **{p: sha256_of(f.stream) for p, f in to_store.items()}}
    # An identical version is found in _commit_version, after the blobs are stored: a push of the
    # same files thus restores any of them gone from the store (gc_blobs --verify deletes broken ones).
    added: list[str] = []
    try:
        # Claimed until the version is committed: gc_blobs cannot delete them meanwhile.
        with blob_claims.push_claims(hashed.values()):
            _require_stored(in_store)
            added = _store_blobs(to_store, hashed, added)
            return _commit_version(actor=actor, checked=checked, hashed=hashed, then=then)
    except BaseException:
        _discard_unreferenced(added)
        raise


def push_version(
    *,
    actor: Actor,
    namespace: str,
    name: str,
    files: Sequence[IncomingFile],
    meta: AdapterMetadata = AdapterMetadata(),
    label: str | None = None,
    then: Callable[[AdapterVersion], None] | None = None,
) -> PushResult:
    """Publish `files` as the next version of `namespace/name`, creating the adapter on first
    push: check_push, then publish."""
    checked = check_push(actor=actor, namespace=namespace, name=name, files=files, meta=meta, label=label)
    return publish(actor=actor, checked=checked, then=then)


def _digest(checked: CheckedPush, hashed: Mapping[str, str]) -> str:
    return AdapterVersion.compute_digest([(p, sha, checked.files[p].size) for p, sha in hashed.items()])


def sha256_of(stream: IO[bytes]) -> str:
    stream.seek(0)
    digest = hashlib.sha256()
    while chunk := stream.read(HASH_CHUNK):
        digest.update(chunk)
    stream.seek(0)
    return digest.hexdigest()


def _require_stored(in_store: Mapping[str, str]) -> None:
    """Bytes an upload session verified must still be in the store (they are claimed now)."""
    store = get_blob_store()
    for path, sha in in_store.items():
        if not store.exists(sha):
            raise StateConflict(
                f"{path}: blob {sha} is no longer in the store; push again to send it", code="blob_missing", path=path
            )


def _store_blobs(files: Mapping[str, IncomingFile], hashed: Mapping[str, str], added: list[str]) -> list[str]:
    """Store each distinct blob that is missing, appending the ones this call adds to `added`."""
    store = get_blob_store()
    for path, f in files.items():
        sha = hashed[path]
        if sha in added or store.exists(sha):
            continue
        f.stream.seek(0)
        try:
            # The digest is known: the store writes straight to the blob's key, checking it.
            store.put(f.stream, max_size=settings.MAX_FILE_SIZE, sha256=sha)
        except BlobMismatch:
            raise StateConflict(f"{path} changed while it was being stored", code="upload_changed") from None
        added.append(sha)
    return added


def _discard_unreferenced(shas: Iterable[str]) -> None:
    """Delete the blobs a failed push added, unless something references them or another push
    holds them (the sweep's own rule)."""
    store = get_blob_store()
    for sha in set(shas):
        try:
            blob_claims.delete_if_unused(store, sha)
        except Exception:  # gc_blobs sweeps whatever is left
            log.exception("could not delete orphan blob %s", sha)


def _commit_version(
    *, actor: Actor, checked: CheckedPush, hashed: Mapping[str, str], then: Callable[[AdapterVersion], None] | None
) -> PushResult:
    digest = _digest(checked, hashed)
    files = [(p, hashed[p], checked.files[p].size) for p in sorted(checked.files)]
    label = checked.target.label
    with transaction.atomic():
        adapter = _lock_or_create_adapter(actor, checked)
        same = adapter.versions.filter(digest=digest).order_by("number").first()
        if same is not None:
            if then is not None:
                then(same)
            return PushResult(version=same, created=False)
        if label is not None and adapter.versions.filter(label=label).exists():
            raise StateConflict(
                f"label {label} already names another version of {adapter.full_name}", code="label_taken"
            )
        number = (adapter.versions.aggregate(n=Max("number"))["n"] or 0) + 1
        validated = checked.validated
        version = AdapterVersion.objects.create(
            adapter=adapter,
            number=number,
            label=label,
            config=_stored_config(checked),
            peft_type=validated.peft_type,
            rank=validated.rank,
            lora_alpha=validated.lora_alpha,
            target_modules=validated.target_modules,
            total_size=sum(size for _, _, size in files),
            digest=digest,
            trained_from=checked.base.trained_from[:500],
            created_by=actor.user,
        )
        VersionFile.objects.bulk_create(
            [VersionFile(version=version, path=p, sha256=sha, size=size) for p, sha, size in files]
        )
        if checked.card is not None:
            adapter.card = checked.card
        apply_metadata(adapter, checked.meta)
        if then is not None:
            then(version)
    return PushResult(version=version, created=True)


def _stored_config(checked: CheckedPush) -> dict[str, Any]:
    return {**checked.validated.config, "base_model_name_or_path": checked.base.name}


def _base_row(resolved: ResolvedBase) -> BaseModel:
    if resolved.base is not None:
        return resolved.base
    # Only reached on hubs that admit unregistered base models: created with the first version.
    base, _ = BaseModel.objects.get_or_create(name=resolved.name, defaults={"registered": False})
    return base


def _lock_or_create_adapter(actor: Actor, checked: CheckedPush) -> Adapter:
    owner, name, meta = checked.target.owner, checked.target.name, checked.meta
    base = _base_row(checked.base)
    method = meta.method or checked.validated.method
    try:
        with transaction.atomic():
            Adapter.objects.get_or_create(
                namespace=owner,
                name=name,
                defaults={
                    "base_model": base,
                    "method": method,
                    "created_by": actor.user,
                    "visibility": meta.visibility or Visibility.PUBLIC,
                },
            )
    except IntegrityError:
        pass  # a concurrent first push created it; the locked read below finds it
    # The row lock serializes concurrent pushes to one adapter so version numbers never collide.
    # of=("self",): lock the adapter row only, not the base model and namespace rows joined to it.
    adapter = (
        Adapter.objects.select_for_update(of=("self",))
        .select_related("namespace", "base_model")
        .get(namespace=owner, name=name)
    )
    if adapter.base_model.name == PENDING_BASE_MODEL:
        # An empty repo (HF create_repo) learns its base model and method from its first version.
        adapter.base_model, adapter.method = base, method
        adapter.save(update_fields=["base_model", "method"])
    return adapter


# --- Helpers for callers --------------------------------------------------------------------------


@contextlib.contextmanager
def folder_files(folder: Path) -> Iterator[list[IncomingFile]]:
    """Every file under `folder` as an IncomingFile (path relative to it), open for the block."""
    paths = sorted(p for p in folder.rglob("*") if p.is_file())
    with contextlib.ExitStack() as stack:
        yield [
            IncomingFile(
                path=p.relative_to(folder).as_posix(), stream=stack.enter_context(p.open("rb")), size=p.stat().st_size
            )
            for p in paths
        ]

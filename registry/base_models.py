"""Base models as first-class registry objects: registered with their manifest, their files stored
in the blob store (content-addressed and deduplicated like adapter files), served read-only over
the Hugging Face protocol, and fetched by workers that have no local copy.
"""

from __future__ import annotations

import fcntl
import fnmatch
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import transaction

from adaptercheck import CONTENT_FILES, ValidatedAdapter, looks_like_path, validate_adapter
from registry import blob_claims, services
from registry.blobs import get_blob_store
from registry.exceptions import InvalidContent, InvalidRequest, RegistryError
from registry.lru import to_evict
from registry.manifests import manifest_from_folder
from registry.models import BASE_MODEL_FILE_PATTERNS, AdapterVersion, BaseModel, BaseModelFile, Visibility
from registry.push import match_base_by_shapes, sha256_of

log = logging.getLogger(__name__)

HASH_CHUNK = 8 * 1024 * 1024


# --- Registering -----------------------------------------------------------------------------------


def model_folder_files(folder: Path) -> list[Path]:
    """The files of a model folder the hub stores: config, generation config, tokenizer files and
    safetensors weights (with their index). Pickled weights are never stored."""
    found = [
        p
        for p in sorted(folder.iterdir())
        if p.is_file() and any(fnmatch.fnmatch(p.name, pattern) for pattern in BASE_MODEL_FILE_PATTERNS)
    ]
    if not any(p.name.endswith(".safetensors") for p in found):
        raise ValueError(f"{folder} has no *.safetensors weights (pickled weights are not stored)")
    return found


def register_from_folder(
    *,
    name: str,
    folder: Path,
    description: str = "",
    visibility: str = Visibility.PUBLIC,
    namespace: str | None = None,
    manifest_only: bool = False,
) -> BaseModel:
    """Register (or update) a base model from a model folder: its manifest from the safetensors
    headers and, unless manifest_only, its files in the blob store.

    Blobs are stored before the rows that reference them, under claims that keep gc_blobs from
    deleting them in between (registry/blob_claims.py), so a failure leaves at most unreferenced
    blobs (gc_blobs sweeps them), never a row without its bytes.
    """
    architecture, manifest = manifest_from_folder(folder)
    paths = [] if manifest_only else model_folder_files(folder)
    stored = [(p.name, _sha256_file(p), p.stat().st_size) for p in paths]
    with blob_claims.push_claims(sha for _, sha, _ in stored):
        for path, (_, sha, _) in zip(paths, stored, strict=True):
            _store_file(path, sha)
        with transaction.atomic():
            base = services.register_base_model(
                name=name,
                architecture=architecture,
                manifest=manifest,
                description=description,
                visibility=visibility,
                namespace=namespace,
            )
            if not manifest_only:  # a manifest-only registration keeps the files it had
                base.files.all().delete()
                BaseModelFile.objects.bulk_create(
                    [BaseModelFile(base_model=base, path=path, sha256=sha, size=size) for path, sha, size in stored]
                )
                base.files_digest = AdapterVersion.compute_digest(stored)
                base.save(update_fields=["files_digest"])
    return base


def register_from_uploads(
    *,
    name: str,
    files: Sequence[tuple[str, BinaryIO]],
    description: str = "",
    visibility: str = Visibility.PUBLIC,
    namespace: str | None = None,
) -> BaseModel:
    """register_from_folder over uploaded files (the admin API): they are written to a temporary
    folder under their base names, then registered exactly as a folder on the server is."""
    with tempfile.TemporaryDirectory(prefix="base-upload-", dir=settings.FILE_UPLOAD_TEMP_DIR) as tmp:
        folder = Path(tmp)
        for raw, stream in files:
            file_name = raw.replace("\\", "/").rsplit("/", 1)[-1]
            if file_name in ("", ".", "..") or (folder / file_name).exists():
                raise InvalidRequest(f"file name {raw!r} is empty or sent twice", code="bad_filename")
            with (folder / file_name).open("wb") as out:
                shutil.copyfileobj(stream, out, length=HASH_CHUNK)
        try:
            return register_from_folder(
                name=name, folder=folder, description=description, visibility=visibility, namespace=namespace
            )
        except (OSError, ValueError) as exc:
            raise InvalidContent(str(exc).replace(tmp, "the upload"), code="bad_base_model") from None


def _store_file(path: Path, sha: str) -> None:
    """Store one file whose sha256 is known, unless its blob exists already."""
    store = get_blob_store()
    if store.exists(sha):
        return
    with path.open("rb") as f:
        info = store.put(f)
    if info.sha256 != sha:
        raise InvalidRequest(f"{path.name} changed while it was being stored", code="upload_changed")


# --- Serving ---------------------------------------------------------------------------------------


def names_revision(base: BaseModel, revision: str | None) -> bool:
    """Whether a revision names the base model's (only) file set: `main` or its commit id."""
    rev = revision or "main"
    return rev in ("main", "latest") or (
        bool(base.files_digest) and len(rev) in (40, 64) and base.files_digest.startswith(rev)
    )


# --- Fetching (workers) ----------------------------------------------------------------------------


class BaseModelUnavailable(Exception):
    pass


@dataclass(frozen=True)
class CachedBase:
    folder: Path
    fetched_bytes: int  # 0 when the cache already held it


def cache_root() -> Path:
    return Path(settings.WORKER_BASE_CACHE_DIR)


def fetch_base_model(base: BaseModel, *, root: Path | None = None, budget: int | None = None) -> CachedBase:
    """A local folder with the base model's stored files, fetched from the blob store on first use.

    1. The folder is named after the file set's digest, so a re-registered base is a new folder.
    2. A lock file serializes fetches of one base model across the worker's processes: concurrent
       jobs fetch it once, the later ones find it complete.
    3. Each file is downloaded to `<path>.part`, resumed from its length after an interruption,
       and renamed into place only once its sha256 matches.
    4. A `.complete` marker ends the fetch; its mtime records use, and folders least recently used
       are evicted while the cache holds more than WORKER_BASE_CACHE_BYTES.
    """
    if not base.files_digest:
        raise BaseModelUnavailable(f"the hub stores no files of {base.name} (registered with --manifest-only)")
    root = root or cache_root()
    budget = settings.WORKER_BASE_CACHE_BYTES if budget is None else budget
    folder = root / base.files_digest
    marker = folder / ".complete"
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f"{base.files_digest}.lock"):
        if marker.is_file():
            os.utime(marker)
            return CachedBase(folder, 0)
        fetched = 0
        folder.mkdir(exist_ok=True)
        for f in base.files.all():
            fetched += _fetch_file(f, folder)
        marker.write_text(json.dumps({"name": base.name, "files": base.files.count()}))
    _evict(root, budget, keep=folder)
    return CachedBase(folder, fetched)


def _fetch_file(f: BaseModelFile, folder: Path) -> int:
    target = folder / f.path
    if target.is_file() and target.stat().st_size == f.size and _sha256_file(target) == f.sha256:
        return 0
    partial = target.with_name(target.name + ".part")
    start = partial.stat().st_size if partial.is_file() else 0
    if start > f.size:
        partial.unlink()
        start = 0
    with partial.open("ab") as out:
        for chunk in get_blob_store().read_range(f.sha256, start, f.size):
            out.write(chunk)
    if _sha256_file(partial) != f.sha256:
        partial.unlink()
        raise BaseModelUnavailable(f"{f.path} of {f.base_model} did not match its sha256 after download")
    partial.rename(target)
    return f.size - start


def _sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return sha256_of(f)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _evict(root: Path, budget: int, *, keep: Path) -> None:
    """Remove complete cached bases, least recently used first, until the cache fits its budget;
    the one just used is kept even when it alone is larger."""
    entries: list[tuple[float, int, Path]] = []
    for folder in root.iterdir():
        marker = folder / ".complete"
        if folder.is_dir() and marker.is_file():
            entries.append((marker.stat().st_mtime, _folder_bytes(folder), folder))
    for folder in to_evict(entries, budget, keep=lambda folder: folder == keep):
        with _locked(root / f"{folder.name}.lock"):
            shutil.rmtree(folder, ignore_errors=True)
        log.info("evicted base model cache %s", folder.name)


def cached_bases(root: Path | None = None) -> Sequence[Path]:
    root = root or cache_root()
    return sorted(p for p in root.iterdir() if (p / ".complete").is_file()) if root.is_dir() else []


# --- Refiling adapters filed under path-named base models ----------------------------------------


@dataclass(frozen=True)
class Refiling:
    adapter: str
    source: str  # the path-named base model it was filed under
    target: str | None  # the registered base model it matches; None when none or several do
    reason: str = ""


def refile_path_named(*, dry_run: bool = False) -> tuple[list[Refiling], list[str]]:
    """Move adapters filed under base models named by a filesystem path (as pushes did before base
    models were resolved) to the registered base model their shapes match, the path's last segment
    breaking ties; then remove the path-named rows left empty.

    Published versions are immutable: their files still say what they said. Returns the moves
    (with the adapters left where they are, and why) and the names of the rows removed.
    """
    registered = list(BaseModel.listed.filter(registered=True).exclude(manifest={}))
    moves: list[Refiling] = []
    removed: list[str] = []
    for source in BaseModel.listed.all():
        if not looks_like_path(source.name):
            continue
        for adapter in source.adapters.select_related("namespace"):
            validated = [_validated_version(v) for v in adapter.versions.all()]
            try:
                target = match_base_by_shapes(source.name, registered, validated)
            except RegistryError as exc:
                moves.append(Refiling(adapter.full_name, source.name, None, exc.message))
                continue
            moves.append(Refiling(adapter.full_name, source.name, target.name))
            if not dry_run:
                type(adapter).objects.filter(pk=adapter.pk).update(base_model=target)
        if dry_run:
            continue
        if not source.adapters.exists() and not source.eval_suites.exists():
            removed.append(source.name)
            source.delete()
    return moves, removed


def _validated_version(version: AdapterVersion) -> ValidatedAdapter:
    """A published version's adapter as validation sees it, read back from the blob store."""
    store = get_blob_store()
    with ExitStack() as stack:
        files = {}
        for f in version.files.filter(path__in=CONTENT_FILES):
            copy = stack.enter_context(tempfile.TemporaryFile())
            with store.open(f.sha256) as blob:
                shutil.copyfileobj(blob, copy, length=HASH_CHUNK)
            copy.seek(0)
            files[f.path] = (copy, f.size)
        return validate_adapter(files)

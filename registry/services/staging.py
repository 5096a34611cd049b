"""Worker staging: a version's files out of the blob store into a folder, for a composition or an
evaluation, through the worker's cache of blobs by sha256.

Every file is fetched at most once per worker host while it stays in the cache: the cache keeps each
blob under its digest (verified as it is written), and a job's folder gets hard links to the cached
copies, so staging a cached input copies no bytes. Files of one call are fetched in parallel.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db.models import QuerySet

from registry.blobs import get_blob_store
from registry.exceptions import StateConflict
from registry.lru import to_evict
from registry.models import AdapterVersion, VersionFile

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


@dataclass(frozen=True)
class Staged:
    """What staging one version put in its folder: each file's sha256 by path, and the bytes that
    had to come from the blob store (0 when the cache held every file)."""

    folder: Path
    files: dict[str, str]
    fetched_bytes: int


def copy_version_files(version: AdapterVersion, folder: Path, paths: Sequence[str] | None = None) -> dict[str, str]:
    """The version's files named in `paths` in `folder`; by default the files an adapter loads from:
    ADAPTER_FILES, or every file of a hybrid (its parts are in subfolders). Returns their sha256 by
    path (workers load adapters from the copy)."""
    return stage_versions([(version, folder)], paths)[0].files


def stage_versions(targets: Sequence[tuple[AdapterVersion, Path]], paths: Sequence[str] | None = None) -> list[Staged]:
    """Stage several versions at once (a composition's inputs): every missing blob is fetched in
    parallel, then each folder is filled with links to the cache."""
    wanted = [(version, folder, list(_files(version, paths))) for version, folder in targets]
    blobs = {(f.sha256, f.size) for _, _, files in wanted for f in files}
    fetched = dict(_fetch_all(blobs))
    staged = []
    for _, folder, files in wanted:
        for f in files:
            try:
                _place(cache_path(f.sha256), folder / f.path)
            except FileNotFoundError:  # another job's eviction took it just now: fetch it again
                fetched[f.sha256] = fetched.get(f.sha256, 0) + _cached(f.sha256, f.size)
                _place(cache_path(f.sha256), folder / f.path)
        # A blob two inputs share was fetched once: it counts for the first.
        fetched_here = sum(fetched.pop(sha, 0) for sha in {f.sha256 for f in files})
        staged.append(Staged(folder, {f.path: f.sha256 for f in files}, fetched_here))
    evict(cache_root(), settings.WORKER_BLOB_CACHE_BYTES, keep={sha for sha, _ in blobs})
    return staged


def _files(version: AdapterVersion, paths: Sequence[str] | None) -> QuerySet[VersionFile]:
    files = version.files.all()
    if paths is not None or not version.config.get("hybrid"):
        files = files.filter(path__in=ADAPTER_FILES if paths is None else paths)
    return files


def cache_root() -> Path:
    return Path(settings.WORKER_BLOB_CACHE_DIR)


def scratch_folder(prefix: str) -> tempfile.TemporaryDirectory[str]:
    """A job's temporary folder beside the cache, on its file system: staged files are links there."""
    root = cache_root() / "jobs"
    root.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=prefix, dir=root)


def cache_path(sha256: str) -> Path:
    return cache_root() / sha256[:2] / sha256


def _fetch_all(blobs: set[tuple[str, int]]) -> list[tuple[str, int]]:
    """(sha256, bytes fetched) for each blob, fetching the missing ones several at a time."""
    if len(blobs) <= 1:
        return [(sha, _cached(sha, size)) for sha, size in blobs]
    with ThreadPoolExecutor(max_workers=settings.WORKER_FETCH_THREADS, thread_name_prefix="stage") as pool:
        return list(pool.map(lambda blob: (blob[0], _cached(*blob)), blobs))


def _cached(sha256: str, size: int) -> int:
    """Make sure the cache holds the blob; return how many bytes that took from the store."""
    path = cache_path(sha256)
    try:
        if path.stat().st_size == size:
            os.utime(path)  # the mtime is the last use, for eviction
            return 0
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique temp name in the same folder: concurrent fetches of one blob each write their own
    # file, hash it, and rename identical bytes onto the same name.
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{sha256[:12]}-", suffix=".part")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for chunk in get_blob_store().read_range(sha256, 0, size):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            # A damaged store: the job fails with this, and `gc_blobs --verify` finds the blob.
            raise StateConflict(f"blob {sha256} reads back as other bytes ({digest.hexdigest()})", code="blob_corrupt")
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return size


def _place(source: Path, target: Path) -> None:
    """A hard link to the cached file (its bytes stay readable if the cache evicts it meanwhile); a
    copy where the job's folder is on another file system."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copyfile(source, target)


def evict(root: Path, budget: int, *, keep: set[str]) -> int:
    """Delete cached blobs, least recently used first, until the cache holds at most `budget`
    bytes; the blobs in `keep` (those a job just staged) stay. Returns how many went."""
    entries = []
    for path in root.glob("??/*"):
        if path.name.startswith("."):
            continue
        try:
            stat = path.stat()
        except FileNotFoundError:  # another process evicted it
            continue
        entries.append((stat.st_mtime, stat.st_size, path))
    going = to_evict(entries, budget, keep=lambda path: path.name in keep)
    for path in going:
        path.unlink(missing_ok=True)
    return len(going)

"""Blobs as files under one directory: the embedded default, no server needed."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from storage.hashing import CHUNK_SIZE, HashingReader
from storage.interfaces import (
    BLOB_PREFIX,
    BlobInfo,
    BlobNotFound,
    blob_key,
    validate_sha256,
)

if TYPE_CHECKING:
    from storage.interfaces import BlobStore


class LocalBlobStore:
    """Blobs at <root>/blobs/sha256/ab/cd/<sha256>, uploads staged in <root>/tmp.

    The temp directory sits inside root so the final os.replace is a same-filesystem rename:
    atomic, so readers see either no blob or the whole blob, never a partial file.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.tmp_dir = self.root / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        (self.root / BLOB_PREFIX).mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def path(self, sha256: str) -> Path:
        """Where the blob's file is (or would be)."""
        return self.root / blob_key(sha256)

    def put(self, stream: BinaryIO, *, max_size: int | None = None) -> BlobInfo:
        """Store a stream under its sha256.

        1. Copy the stream into a temp file in root/tmp, hashing and counting as it goes.
        2. fsync it, so the rename below can never expose a file whose data is not on disk.
        3. Rename it onto the content-addressed path, or drop it if that blob already exists.
        """
        reader = HashingReader(stream, max_size=max_size)
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp_dir, prefix="upload-", suffix=".part")
        tmp_path = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as tmp:
                while chunk := reader.read(CHUNK_SIZE):
                    tmp.write(chunk)
                tmp.flush()
                os.fsync(tmp.fileno())
            info = reader.info()
            target = self.path(info.sha256)
            if target.exists():
                tmp_path.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                # Two puts of the same bytes may race to here; both renames carry identical
                # content, so whichever lands last is still correct.
                os.replace(tmp_path, target)
                _fsync_dir(target.parent)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise
        return info

    def open(self, sha256: str) -> BinaryIO:
        try:
            return open(self.path(sha256), "rb")
        except FileNotFoundError:
            raise BlobNotFound(f"no such blob: {sha256}") from None

    def read_range(self, sha256: str, start: int, end: int) -> Iterator[bytes]:
        _check_range(start, end)
        # Opened here rather than inside the generator so a missing blob raises at call time.
        f = self.open(sha256)
        return _iter_file_range(f, start, end)

    def size(self, sha256: str) -> int:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(f"no such blob: {sha256}") from None

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def presigned_url(
        self, sha256: str, *, filename: str | None = None, expires: int = 300
    ) -> str | None:
        validate_sha256(sha256)
        return None

    def iter_blobs(self) -> Iterator[tuple[str, datetime]]:
        base = self.root / BLOB_PREFIX
        for path in base.glob("*/*/*"):
            name = path.name
            # Skip anything that is not a blob at its own key (stray files, editor backups).
            try:
                if path != self.path(name):
                    continue
            except ValueError:
                continue
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:  # deleted while we were listing
                continue
            yield name, datetime.fromtimestamp(mtime, tz=UTC)

    def cleanup_temp(self, older_than: timedelta) -> int:
        """Remove temp files not written to for older_than; return how many were removed.

        An upload in progress keeps bumping its temp file's mtime, so only abandoned ones
        (a killed worker, a power cut) are old enough to go.
        """
        cutoff = time.time() - older_than.total_seconds()
        removed = 0
        for path in self.tmp_dir.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed


def _check_range(start: int, end: int) -> None:
    if start < 0 or end < start:
        raise ValueError(f"invalid byte range [{start}, {end})")


def _iter_file_range(f: BinaryIO, start: int, end: int) -> Iterator[bytes]:
    with f:
        f.seek(start)
        remaining = end - start
        while remaining > 0:
            chunk = f.read(min(remaining, CHUNK_SIZE))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk


def _fsync_dir(path: Path) -> None:
    # The rename is only durable once the directory entry itself is on disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


if TYPE_CHECKING:
    _: type[BlobStore] = LocalBlobStore

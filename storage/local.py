"""Blobs as files under one directory: the embedded default, no server needed."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO

from storage.hashing import CHUNK_SIZE, HashingReader, verify_stream
from storage.interfaces import (
    BLOB_PREFIX,
    EMPTY_SHA256,
    UPLOAD_PREFIX,
    BlobInfo,
    BlobMismatch,
    BlobNotFound,
    MultipartUpload,
    StorageError,
    UploadedPart,
    UploadNotFound,
    blob_key,
    validate_sha256,
)

if TYPE_CHECKING:
    from storage.interfaces import BlobStore, MultipartBlobStore

_UPLOAD_ID_RE = re.compile(r"[0-9a-f]{32}")
_PART_RE = re.compile(r"part-(\d{5})")
_ASSEMBLED = "assembled"


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

    def put(self, stream: IO[bytes], *, max_size: int | None = None, sha256: str | None = None) -> BlobInfo:
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
            if sha256 is not None and info.sha256 != sha256:
                raise BlobMismatch(sha256, info.sha256)
            target = self.path(info.sha256)
            if self.exists(info.sha256):
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
        """Whether the blob is stored; an empty file at a non-empty blob's path (a crash's or an
        operator's leftover) is not it, so nothing deduplicates against it and put() replaces it."""
        try:
            size = self.path(sha256).stat().st_size
        except FileNotFoundError:
            return False
        return size > 0 or sha256 == EMPTY_SHA256

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def presigned_url(self, sha256: str, *, filename: str | None = None, expires: int = 300) -> str | None:
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

    def verify(self, sha256: str) -> str | None:
        try:
            f = self.open(sha256)
        except BlobNotFound:
            return "missing"
        with f:
            return verify_stream(f, sha256)

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

    # --- multipart uploads ---------------------------------------------------------------------
    # An upload is a directory root/uploads/<id>/ holding one file per part (part-00001, ...),
    # written through the hub since a directory cannot presign; completing concatenates them
    # into root/uploads/<id>/assembled, and promoting renames that onto the blob's path.

    def _upload_dir(self, upload: MultipartUpload) -> Path:
        if _UPLOAD_ID_RE.fullmatch(upload.upload_id) is None or upload.key != f"{UPLOAD_PREFIX}{upload.upload_id}":
            raise ValueError(f"not an upload of this store: {upload!r}")
        return self.root / upload.key

    def _existing_upload_dir(self, upload: MultipartUpload) -> Path:
        path = self._upload_dir(upload)
        if not path.is_dir():
            raise UploadNotFound(f"no such upload: {upload.upload_id}")
        return path

    def start_multipart(self, sha256: str) -> MultipartUpload:
        validate_sha256(sha256)  # a rename needs no layout hint, but the contract takes one
        upload_id = uuid.uuid4().hex
        upload = MultipartUpload(key=f"{UPLOAD_PREFIX}{upload_id}", upload_id=upload_id)
        self._upload_dir(upload).mkdir(parents=True)
        return upload

    def part_upload_url(self, upload: MultipartUpload, number: int, *, expires: int = 3600) -> str | None:
        return None

    def put_part(self, upload: MultipartUpload, number: int, stream: BinaryIO, *, size: int) -> UploadedPart:
        """Write the part to a temp file, then rename it into place: a part is whole or absent."""
        if not 1 <= number <= 99_999:
            raise ValueError(f"part number out of range: {number}")
        folder = self._existing_upload_dir(upload)
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=".incoming-")
        digest = hashlib.md5(usedforsecurity=False)  # an ETag, as S3 gives one; integrity comes from sha256
        try:
            with os.fdopen(fd, "wb") as tmp:
                remaining = size
                while remaining > 0:
                    chunk = stream.read(min(remaining, CHUNK_SIZE))
                    if not chunk:
                        raise StorageError(f"part {number} ended after {size - remaining} of {size} bytes")
                    digest.update(chunk)
                    tmp.write(chunk)
                    remaining -= len(chunk)
            os.replace(tmp_name, folder / f"part-{number:05d}")
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return UploadedPart(number=number, size=size, etag=digest.hexdigest())

    def list_parts(self, upload: MultipartUpload) -> list[UploadedPart]:
        folder = self._existing_upload_dir(upload)
        if (folder / _ASSEMBLED).is_file():
            # As on S3, a completed upload has no parts any more, only its assembled bytes.
            raise UploadNotFound(f"upload {upload.upload_id} is assembled")
        parts: list[UploadedPart] = []
        for path in folder.iterdir():
            match = _PART_RE.fullmatch(path.name)
            if match is None:
                continue
            with contextlib.suppress(FileNotFoundError):
                # The size is what resuming needs; the md5 ETag is only worth its cost at put time.
                parts.append(UploadedPart(number=int(match.group(1)), size=path.stat().st_size, etag=""))
        return sorted(parts, key=lambda part: part.number)

    def complete_multipart(self, upload: MultipartUpload, parts: Sequence[UploadedPart]) -> int:
        """Concatenate the parts into `assembled` (via a temp file, so it is whole or absent), then
        drop the parts."""
        folder = self._existing_upload_dir(upload)
        assembled = folder / _ASSEMBLED
        if assembled.is_file():
            return assembled.stat().st_size
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=".assembling-")
        try:
            with os.fdopen(fd, "wb") as out:
                for part in parts:
                    try:
                        with open(folder / f"part-{part.number:05d}", "rb") as source:
                            shutil.copyfileobj(source, out, CHUNK_SIZE)
                    except FileNotFoundError:
                        raise StorageError(f"part {part.number} of upload {upload.upload_id} is missing") from None
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp_name, assembled)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        for part in parts:
            (folder / f"part-{part.number:05d}").unlink(missing_ok=True)
        return assembled.stat().st_size

    def staged_size(self, upload: MultipartUpload) -> int | None:
        try:
            return (self._upload_dir(upload) / _ASSEMBLED).stat().st_size
        except FileNotFoundError:
            return None

    def open_multipart(self, upload: MultipartUpload) -> BinaryIO:
        try:
            return open(self._existing_upload_dir(upload) / _ASSEMBLED, "rb")
        except FileNotFoundError:
            raise UploadNotFound(f"upload {upload.upload_id} is not assembled") from None

    def promote_multipart(self, upload: MultipartUpload, sha256: str) -> bool:
        target = self.path(sha256)
        assembled = self._existing_upload_dir(upload) / _ASSEMBLED
        if not assembled.is_file():
            raise UploadNotFound(f"upload {upload.upload_id} is not assembled")
        added = False
        if not self.exists(sha256):
            with open(assembled, "rb") as f:
                os.fsync(f.fileno())
            target.parent.mkdir(parents=True, exist_ok=True)
            # Same filesystem, so an atomic rename: readers see no blob or the whole blob.
            os.replace(assembled, target)
            _fsync_dir(target.parent)
            added = True
        self.abort_multipart(upload)
        return added

    def abort_multipart(self, upload: MultipartUpload) -> None:
        shutil.rmtree(self._upload_dir(upload), ignore_errors=True)

    def abort_stale_multiparts(self, older_than: timedelta) -> int:
        """Remove upload directories none of whose files changed for older_than."""
        base = self.root / UPLOAD_PREFIX
        if not base.is_dir():
            return 0
        cutoff = time.time() - older_than.total_seconds()
        removed = 0
        for folder in base.iterdir():
            if not folder.is_dir() or _UPLOAD_ID_RE.fullmatch(folder.name) is None:
                continue
            with contextlib.suppress(FileNotFoundError):
                newest = max([folder.stat().st_mtime, *(f.stat().st_mtime for f in folder.iterdir())])
                if newest < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
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
    _multipart: type[MultipartBlobStore] = LocalBlobStore

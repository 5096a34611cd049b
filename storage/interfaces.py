"""The blob-store contract: content-addressed, immutable byte blobs keyed by their sha256."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, BinaryIO, Protocol, runtime_checkable

# Blobs live under one prefix so a bucket or directory can also hold temp data (and later other
# things) without the garbage collector mistaking them for blobs.
BLOB_PREFIX = "blobs/sha256/"
# Multipart uploads (resumable pushes) are staged here, apart from tmp/: a session may stay open
# far longer than the garbage collector's grace period for temp data.
UPLOAD_PREFIX = "uploads/"
# S3 refuses parts smaller than this at completion, except the last one.
MIN_PART_SIZE = 5 * 1024 * 1024
# S3's limit on parts per multipart upload.
MAX_PARTS = 10_000

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
# The sha256 of no bytes: the one blob that may be empty.
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@dataclass(frozen=True)
class BlobInfo:
    sha256: str  # lowercase hex
    size: int


class StorageError(Exception):
    """Base class for every error a blob store raises on purpose."""


class BlobTooLarge(StorageError):
    """The stream passed to put() exceeded max_size; nothing was stored."""

    def __init__(self, limit: int) -> None:
        # args stays (limit,) so the exception pickles (Celery) and rebuilds with the same limit.
        super().__init__(limit)
        self.limit = limit

    def __str__(self) -> str:
        return f"blob exceeds the size limit of {self.limit} bytes"


class BlobMismatch(StorageError):
    """The bytes given to put() do not hash to the sha256 the caller announced; nothing was stored."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(expected, actual)
        self.expected = expected
        self.actual = actual

    def __str__(self) -> str:
        return f"the bytes hash to {self.actual}, not to the announced {self.expected}"


class BlobNotFound(StorageError, FileNotFoundError):
    """No blob is stored under this sha256."""


class UploadNotFound(StorageError, FileNotFoundError):
    """The multipart upload does not exist: never started, aborted, or already promoted."""


@dataclass(frozen=True)
class MultipartUpload:
    """A multipart upload staged at `key` (under UPLOAD_PREFIX); `upload_id` is the store's id."""

    key: str
    upload_id: str


@dataclass(frozen=True)
class UploadedPart:
    number: int  # 1-based, as in S3
    size: int
    etag: str


def validate_sha256(sha256: str) -> str:
    """Return sha256 unchanged if it is 64 lowercase hex digits, else raise ValueError.

    Every key is built from this string, so rejecting anything else is what keeps a caller from
    reaching outside the blob prefix ("../", absolute paths, uppercase twins of a real key).
    """
    if not isinstance(sha256, str) or _SHA256_RE.fullmatch(sha256) is None:
        raise ValueError(f"not a sha256 hex digest (64 lowercase hex digits): {sha256!r}")
    return sha256


def blob_key(sha256: str) -> str:
    """The storage key of a blob: blobs/sha256/ab/cd/<full sha256>."""
    validate_sha256(sha256)
    # Two levels of fan-out keep directories (and S3 listing pages per prefix) small.
    return f"{BLOB_PREFIX}{sha256[:2]}/{sha256[2:4]}/{sha256}"


@runtime_checkable
class BlobStore(Protocol):
    def put(self, stream: IO[bytes], *, max_size: int | None = None, sha256: str | None = None) -> BlobInfo:
        """Stream into the store, hashing on the fly; identical bytes are stored once.

        Raises BlobTooLarge as soon as more than max_size bytes have been read. Temp data is
        cleaned on any error, so a failed put leaves nothing behind. A caller that already knows
        the digest passes it as sha256: the store may then write straight to the blob's key (no
        staging copy), and raises BlobMismatch, storing nothing, when the bytes hash otherwise.
        """
        ...

    def open(self, sha256: str) -> BinaryIO:
        """Open the blob for reading; raises BlobNotFound."""
        ...

    def read_range(self, sha256: str, start: int, end: int) -> Iterator[bytes]:
        """Yield bytes [start, end) in chunks, clamped to the blob's size like a slice.

        BlobNotFound is raised by the call itself, before the first chunk, so a caller can turn
        it into a 404 before it starts a streaming response.
        """
        ...

    def size(self, sha256: str) -> int:
        """The blob's size in bytes; raises BlobNotFound."""
        ...

    def exists(self, sha256: str) -> bool:
        """Whether a blob is stored under sha256."""
        ...

    def delete(self, sha256: str) -> None:
        """Remove the blob; deleting a missing blob is not an error."""
        ...

    def presigned_url(self, sha256: str, *, filename: str | None = None, expires: int = 300) -> str | None:
        """A time-limited GET URL (as an attachment named filename), or None if unsupported."""
        ...

    def iter_blobs(self) -> Iterator[tuple[str, datetime]]:
        """Yield (sha256, last_modified as an aware UTC datetime) for every stored blob."""
        ...

    def verify(self, sha256: str) -> str | None:
        """Read the blob back and hash it: None when its bytes hash to sha256, else what is wrong
        (missing, a link to nothing, other bytes). Costs a full read; for audits, not requests."""
        ...

    def cleanup_temp(self, older_than: timedelta) -> int:
        """Remove temporary data of puts idle for older_than (abandoned by a dead process);
        return how many items went."""
        ...


@runtime_checkable
class MultipartBlobStore(BlobStore, Protocol):
    """A blob store that also takes resumable multipart uploads, whose bytes need not pass
    through the hub: parts go to presigned URLs when the store has them, else through put_part.

    The store never trusts an upload's claimed sha256: the caller reads the assembled bytes back
    (open_multipart), hashes them, and only then promotes them to their content-addressed key.
    """

    def start_multipart(self, sha256: str) -> MultipartUpload:
        """Begin a staged multipart upload of bytes announced to hash to sha256 (a layout hint for
        the store, trusted for nothing)."""
        ...

    def part_upload_url(self, upload: MultipartUpload, number: int, *, expires: int = 3600) -> str | None:
        """A presigned URL that takes part `number` in a PUT body, or None when parts go to put_part."""
        ...

    def put_part(self, upload: MultipartUpload, number: int, stream: BinaryIO, *, size: int) -> UploadedPart:
        """Store part `number` from exactly `size` bytes of stream, replacing an earlier copy of it."""
        ...

    def list_parts(self, upload: MultipartUpload) -> list[UploadedPart]:
        """The parts stored so far, by number; raises UploadNotFound, also once it is assembled."""
        ...

    def staged_size(self, upload: MultipartUpload) -> int | None:
        """The size of the assembled bytes, or None while the upload is not assembled (or gone)."""
        ...

    def complete_multipart(self, upload: MultipartUpload, parts: Sequence[UploadedPart]) -> int:
        """Assemble `parts` (in order) into the staged object and return its size.

        Idempotent: once assembled, a second call returns the size. Raises UploadNotFound.
        """
        ...

    def open_multipart(self, upload: MultipartUpload) -> BinaryIO:
        """A seekable reader over the assembled bytes; raises UploadNotFound."""
        ...

    def promote_multipart(self, upload: MultipartUpload, sha256: str) -> bool:
        """Make the assembled bytes, which the caller has verified hash to sha256, that blob
        without copying them (a rename, or a link at the blob's key); False when that blob was
        already stored (the staged bytes are dropped)."""
        ...

    def abort_multipart(self, upload: MultipartUpload) -> None:
        """Drop the upload's parts and staged bytes; a missing upload is not an error."""
        ...

    def abort_stale_multiparts(self, older_than: timedelta) -> int:
        """Drop every multipart upload begun more than older_than ago (orphans whose session
        record is gone); return how many."""
        ...

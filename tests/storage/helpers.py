"""Streams that produce bytes on demand, and a backend-neutral view of what a store holds."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any, BinaryIO

from storage import LocalBlobStore, S3BlobStore

_BLOCK = 64 * 1024


def pattern_block(seed: int, index: int) -> bytes:
    """Block `index` of a deterministic, incompressible byte sequence."""
    out = bytearray()
    counter = 0
    while len(out) < _BLOCK:
        out += hashlib.sha256(f"{seed}:{index}:{counter}".encode()).digest() * 64
        counter += 1
    return bytes(out[:_BLOCK])


class GeneratedStream(io.RawIOBase):
    """`size` bytes computed block by block as they are read; never holds more than one block.

    size=None streams forever, which proves a reader stops at its cap instead of draining.
    """

    def __init__(self, size: int | None, *, seed: int = 0) -> None:
        super().__init__()
        self.size = size
        self.seed = seed
        self.pos = 0
        self._block_index = -1
        self._block = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        want = len(view)
        if self.size is not None:
            want = min(want, self.size - self.pos)
        if want <= 0:
            return 0
        index, offset = divmod(self.pos, _BLOCK)
        if index != self._block_index:
            self._block_index, self._block = index, pattern_block(self.seed, index)
        n = min(want, _BLOCK - offset)
        view[:n] = self._block[offset : offset + n]
        self.pos += n
        return n


def generated(size: int | None, *, seed: int = 0) -> BinaryIO:
    """GeneratedStream behind a small buffer, typed as the file object put() takes."""
    return io.BufferedReader(GeneratedStream(size, seed=seed), buffer_size=_BLOCK)


def generated_digest(size: int, *, seed: int = 0) -> str:
    """The sha256 of GeneratedStream(size, seed=seed), computed without holding it."""
    hasher = hashlib.sha256()
    stream = GeneratedStream(size, seed=seed)
    while chunk := stream.read(1024 * 1024):
        hasher.update(chunk)
    return hasher.hexdigest()


class FailingStream(io.RawIOBase):
    """Yields `good` bytes, then raises OSError, like a client that disconnects mid-upload."""

    def __init__(self, good: int) -> None:
        super().__init__()
        self._inner = GeneratedStream(good)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self._inner.readinto(b)
        if n == 0:
            raise OSError("client went away")
        return n


def stored_keys(store: object) -> list[str]:
    """Every object or file the store holds, blobs and temp data alike, as sorted keys."""
    if isinstance(store, LocalBlobStore):
        root = Path(store.root)
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert isinstance(store, S3BlobStore)
    keys: list[str] = []
    for page in store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return sorted(keys)


def pending_uploads(store: object) -> list[str]:
    """Keys of multipart uploads still in progress (always none for the local store)."""
    if isinstance(store, LocalBlobStore):
        return []
    assert isinstance(store, S3BlobStore)
    keys: list[str] = []
    for page in store.client.get_paginator("list_multipart_uploads").paginate(Bucket=store.bucket):
        keys.extend(upload["Key"] for upload in page.get("Uploads", []))
    return keys

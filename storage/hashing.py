"""Reading an upload once: hash and count while streaming, and stop at the size cap."""

from __future__ import annotations

import hashlib
from typing import IO

from storage.interfaces import BlobInfo, BlobTooLarge

CHUNK_SIZE = 1024 * 1024


class HashingReader:
    """Wraps a stream so every byte read is hashed and counted.

    BlobTooLarge is raised from read() as soon as the count passes max_size, so an oversized
    (or endless) upload costs at most one chunk beyond the cap, never the whole stream.
    """

    def __init__(self, stream: IO[bytes], *, max_size: int | None = None) -> None:
        if max_size is not None and max_size < 0:
            raise ValueError(f"max_size must be >= 0, got {max_size}")
        self._stream = stream
        self._max_size = max_size
        self._hasher = hashlib.sha256()
        self.size = 0

    def read(self, n: int = CHUNK_SIZE) -> bytes:
        """Up to n bytes; b"" only at the end of the stream."""
        chunk = self._stream.read(n)
        if not chunk:
            return b""
        self.size += len(chunk)
        if self._max_size is not None and self.size > self._max_size:
            raise BlobTooLarge(self._max_size)
        self._hasher.update(chunk)
        return chunk

    def fill(self, buf: bytearray, target: int) -> bool:
        """Read into buf until it holds target bytes; return True if the stream ended first."""
        while len(buf) < target:
            chunk = self.read(min(target - len(buf), CHUNK_SIZE))
            if not chunk:
                return True
            buf += chunk
        return False

    def info(self) -> BlobInfo:
        return BlobInfo(sha256=self._hasher.hexdigest(), size=self.size)


def verify_stream(stream: IO[bytes], sha256: str) -> str | None:
    """None when the stream's bytes hash to sha256, else a sentence saying what they hash to."""
    reader = HashingReader(stream)
    while reader.read(CHUNK_SIZE):
        pass
    info = reader.info()
    if info.sha256 == sha256:
        return None
    return f"its {info.size} bytes hash to {info.sha256}"

"""Moving bytes: hashing local files, sending upload parts, resumable verified downloads."""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

CHUNK = 1024 * 1024
HASH_CHUNK = 8 * 1024 * 1024


def sha256_file(path: Path, *, on_bytes: Callable[[int], object] | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)  # hashlib releases the GIL: other threads keep working
            if on_bytes is not None:
                on_bytes(len(chunk))
    return digest.hexdigest()


class FileSlice:
    """A request body of `length` bytes of a file from `offset`, read in 1 MiB chunks as it is
    sent: parts stream from disk, so memory stays flat whatever the part size.

    requests sends an iterable that has a length with that Content-Length (presigned S3 URLs
    refuse chunked bodies).
    """

    def __init__(self, path: Path, offset: int, length: int, on_bytes: Callable[[int], object] | None = None) -> None:
        self.path = path
        self.offset = offset
        self.length = length
        self.on_bytes = on_bytes
        self.sent = 0

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        self.sent = 0
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            remaining = self.length
            while remaining > 0:
                chunk = f.read(min(CHUNK, remaining))
                if not chunk:
                    raise OSError(f"{self.path} shrank while it was being pushed")
                remaining -= len(chunk)
                self.sent += len(chunk)
                if self.on_bytes is not None:
                    self.on_bytes(len(chunk))
                yield chunk


class BackgroundHash:
    """Feeds chunks to a hash in a thread of its own, so that hashing a download overlaps
    receiving and writing it (hashlib releases the GIL while it hashes). At most `depth` chunks
    wait their turn, which bounds the memory it holds.

        with BackgroundHash(hashlib.sha256()) as hashing:
            for chunk in chunks:
                hashing.update(chunk)
        hashing.digest.hexdigest()   # every chunk hashed, in order
    """

    def __init__(self, digest: hashlib._Hash, *, depth: int = 8) -> None:
        self.digest = digest
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name="ahub-verify", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            self.digest.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._chunks.put(chunk)

    def __enter__(self) -> BackgroundHash:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._chunks.put(None)
        self._thread.join()


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (created if needed), so two pulls of one blob do not
    write the same partial file; a no-op where fcntl does not exist."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def hash_prefix(path: Path, length: int) -> hashlib._Hash:
    """A sha256 fed with the first `length` bytes of path (a partial download being resumed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        remaining = length
        while remaining > 0:
            chunk = f.read(min(HASH_CHUNK, remaining))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
    return digest


def place(source: Path, target: Path, *, link: bool) -> None:
    """Put source's bytes at target atomically: a hard link when asked and possible, else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        with contextlib.suppress(OSError):
            if link and os.path.samefile(source, target):
                return
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        if link:
            try:
                os.link(source, tmp)
            except OSError:  # another filesystem, or no hard links here
                _copy(source, tmp)
        else:
            _copy(source, tmp)
            os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _copy(source: Path, target: Path) -> None:
    with open(source, "rb") as src, open(target, "wb") as dst:
        _copy_stream(src, dst)


def _copy_stream(src: IO[bytes], dst: IO[bytes]) -> None:
    while chunk := src.read(HASH_CHUNK):
        dst.write(chunk)

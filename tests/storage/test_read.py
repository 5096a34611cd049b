from __future__ import annotations

import io
import os

import pytest

from storage import BlobNotFound, BlobStore

MISSING = "0" * 64


@pytest.fixture
def data() -> bytes:
    return os.urandom(3 * 1024 * 1024 + 17)  # several read chunks, not a round number


def test_open_reads_the_blob_back(blob_store: BlobStore, data: bytes) -> None:
    info = blob_store.put(io.BytesIO(data))

    with blob_store.open(info.sha256) as f:
        assert f.read(10) == data[:10]
        assert f.read() == data[10:]


def test_open_can_seek(blob_store: BlobStore, data: bytes) -> None:
    info = blob_store.put(io.BytesIO(data))

    with blob_store.open(info.sha256) as f:
        f.seek(1_000_000)
        assert f.read(5) == data[1_000_000:1_000_005]
        f.seek(-4, io.SEEK_END)
        assert f.read() == data[-4:]
        f.seek(2)
        assert f.read(3) == data[2:5]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (0, 1),
        (0, 3 * 1024 * 1024 + 17),  # the whole blob
        (5, 6),
        (1024 * 1024 - 1, 1024 * 1024 + 1),  # across a chunk boundary
        (3 * 1024 * 1024 + 16, 3 * 1024 * 1024 + 17),  # the last byte
        (10, 10),  # empty
        (3 * 1024 * 1024, 4 * 1024 * 1024),  # runs past the end: clamped like a slice
        (3 * 1024 * 1024 + 17, 3 * 1024 * 1024 + 20),  # starts at the end
        (5 * 1024 * 1024, 6 * 1024 * 1024),  # starts past the end
    ],
)
def test_read_range_returns_exactly_the_slice(blob_store: BlobStore, data: bytes, start: int, end: int) -> None:
    info = blob_store.put(io.BytesIO(data))

    assert b"".join(blob_store.read_range(info.sha256, start, end)) == data[start:end]


def test_read_range_yields_bounded_chunks(blob_store: BlobStore, data: bytes) -> None:
    info = blob_store.put(io.BytesIO(data))

    chunks = list(blob_store.read_range(info.sha256, 0, len(data)))

    assert len(chunks) > 1
    assert max(len(c) for c in chunks) <= 1024 * 1024


def test_read_range_rejects_a_backwards_or_negative_range(blob_store: BlobStore) -> None:
    info = blob_store.put(io.BytesIO(b"abc"))

    with pytest.raises(ValueError):
        blob_store.read_range(info.sha256, 2, 1)
    with pytest.raises(ValueError):
        blob_store.read_range(info.sha256, -1, 2)


def test_size_reports_the_stored_size(blob_store: BlobStore) -> None:
    info = blob_store.put(io.BytesIO(b"12345"))

    assert blob_store.size(info.sha256) == 5


def test_reading_a_missing_blob_raises_blob_not_found(blob_store: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        blob_store.open(MISSING)
    with pytest.raises(BlobNotFound):
        blob_store.size(MISSING)
    # Raised by the call itself, before iteration, so a view can answer 404 up front.
    with pytest.raises(BlobNotFound):
        blob_store.read_range(MISSING, 0, 10)
    with pytest.raises(BlobNotFound):
        blob_store.read_range(MISSING, 0, 0)


def test_blob_not_found_is_a_file_not_found_error(blob_store: BlobStore) -> None:
    with pytest.raises(FileNotFoundError):
        blob_store.open(MISSING)

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
from collections.abc import Callable

import pytest

from storage import BlobInfo, BlobStore, BlobTooLarge, S3BlobStore, blob_key
from tests.storage.helpers import (
    FailingStream,
    generated,
    generated_digest,
    pending_uploads,
    stored_keys,
)

MiB = 1024 * 1024


def test_it_returns_the_sha256_and_size_of_what_it_stored(blob_store: BlobStore) -> None:
    data = os.urandom(100_000)

    info = blob_store.put(io.BytesIO(data))

    assert info == BlobInfo(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    with blob_store.open(info.sha256) as f:
        assert f.read() == data


def test_it_stores_an_empty_stream(blob_store: BlobStore) -> None:
    info = blob_store.put(io.BytesIO(b""))

    assert info == BlobInfo(sha256=hashlib.sha256(b"").hexdigest(), size=0)
    assert blob_store.size(info.sha256) == 0


def test_it_stores_identical_bytes_once(blob_store: BlobStore) -> None:
    data = b"same bytes" * 1000

    first = blob_store.put(io.BytesIO(data))
    second = blob_store.put(io.BytesIO(data))

    assert first == second
    assert stored_keys(blob_store) == [blob_key(first.sha256)]


def test_it_accepts_a_stream_of_exactly_max_size(blob_store: BlobStore) -> None:
    info = blob_store.put(io.BytesIO(b"x" * 1000), max_size=1000)

    assert info.size == 1000


def test_it_rejects_a_stream_over_max_size_and_leaves_nothing_behind(
    blob_store: BlobStore,
) -> None:
    with pytest.raises(BlobTooLarge) as exc_info:
        blob_store.put(io.BytesIO(b"x" * 1001), max_size=1000)

    assert exc_info.value.limit == 1000
    assert stored_keys(blob_store) == []
    assert pending_uploads(blob_store) == []


def test_it_stops_reading_an_endless_stream_at_the_cap_mid_multipart(
    tuned_store: Callable[..., BlobStore],
) -> None:
    store = tuned_store(multipart_threshold=5 * MiB, part_size=5 * MiB)
    stream = generated(None)

    with pytest.raises(BlobTooLarge):
        store.put(stream, max_size=12 * MiB)

    # At most one chunk beyond the cap was read, not the (infinite) rest.
    assert stream.raw.pos <= 14 * MiB  # type: ignore[attr-defined]
    assert stored_keys(store) == []
    assert pending_uploads(store) == []


def test_it_cleans_up_when_the_stream_fails_mid_upload(
    tuned_store: Callable[..., BlobStore],
) -> None:
    store = tuned_store(multipart_threshold=5 * MiB, part_size=5 * MiB)

    with pytest.raises(OSError, match="client went away"):
        store.put(io.BufferedReader(FailingStream(11 * MiB)))

    assert stored_keys(store) == []
    assert pending_uploads(store) == []


def test_a_multipart_upload_round_trips_without_holding_the_file_in_memory(
    tuned_store: Callable[..., BlobStore],
) -> None:
    size = 40 * MiB + 12345  # 9 parts of 5 MiB, the last one short
    store = tuned_store(multipart_threshold=5 * MiB, part_size=5 * MiB)
    expected = generated_digest(size, seed=7)

    tracemalloc.start()
    try:
        info = store.put(generated(size, seed=7))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert info == BlobInfo(sha256=expected, size=size)
    # About two 5 MiB parts (the one being filled, the one botocore still holds); the file is
    # 40 MiB, so the stream was never held whole.
    assert peak < 16 * MiB, f"peak {peak / MiB:.1f} MiB"
    assert stored_keys(store) == [blob_key(expected)]
    assert pending_uploads(store) == []
    hasher = hashlib.sha256()
    for chunk in store.read_range(info.sha256, 0, size):
        hasher.update(chunk)
    assert hasher.hexdigest() == expected


def test_a_multipart_upload_of_known_bytes_is_stored_once(
    tuned_store: Callable[..., BlobStore],
) -> None:
    store = tuned_store(multipart_threshold=5 * MiB, part_size=5 * MiB)
    size = 11 * MiB

    first = store.put(generated(size, seed=3))
    second = store.put(generated(size, seed=3))

    assert first == second
    assert stored_keys(store) == [blob_key(first.sha256)]
    assert pending_uploads(store) == []


def test_a_blob_over_the_single_copy_limit_is_copied_in_parts(
    s3_blob_store: S3BlobStore,
) -> None:
    # Real S3 caps CopyObject at 5 GiB; lowering the limit exercises the managed multipart
    # copy (UploadPartCopy) on an 11 MiB blob instead.
    store = S3BlobStore(
        bucket=s3_blob_store.bucket,
        client=s3_blob_store.client,
        multipart_threshold=5 * MiB,
        part_size=5 * MiB,
    )
    store._single_copy_limit = 5 * MiB
    size = 11 * MiB + 3

    info = store.put(generated(size, seed=11))

    assert info.sha256 == generated_digest(size, seed=11)
    assert store.size(info.sha256) == size
    hasher = hashlib.sha256()
    with store.open(info.sha256) as f:
        while chunk := f.read(MiB):
            hasher.update(chunk)
    assert hasher.hexdigest() == info.sha256
    assert stored_keys(store) == [blob_key(info.sha256)]
    assert pending_uploads(store) == []

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
from collections.abc import Callable

import pytest

from storage import BlobInfo, BlobMismatch, BlobStore, BlobTooLarge, S3BlobStore, blob_key
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
    store = tuned_store(multipart_threshold=5 * MiB, part_size=5 * MiB, part_workers=2)
    expected = generated_digest(size, seed=7)

    tracemalloc.start()
    try:
        info = store.put(generated(size, seed=7))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert info == BlobInfo(sha256=expected, size=size)
    # About four 5 MiB parts (the one being filled, two in flight, one botocore still holds);
    # the file is 40 MiB, so the stream was never held whole.
    assert peak < 24 * MiB, f"peak {peak / MiB:.1f} MiB"
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


@pytest.mark.parametrize("size", [1000, 11 * MiB + 5], ids=["small", "multipart"])
def test_bytes_that_do_not_hash_to_the_announced_digest_are_not_stored(
    tuned_store: Callable[..., BlobStore], size: int
) -> None:
    store = tuned_store(multipart_threshold=5 * MiB, part_size=5 * MiB)
    announced = hashlib.sha256(b"other bytes").hexdigest()

    with pytest.raises(BlobMismatch) as exc_info:
        store.put(generated(size, seed=5), sha256=announced)

    assert exc_info.value.actual == generated_digest(size, seed=5)
    assert stored_keys(store) == []
    assert pending_uploads(store) == []


def test_announced_bytes_go_in_parallel_parts_straight_to_the_blob_key(s3_blob_store: S3BlobStore) -> None:
    store = S3BlobStore(
        bucket=s3_blob_store.bucket,
        client=s3_blob_store.client,
        multipart_threshold=5 * MiB,
        part_size=5 * MiB,
        part_workers=3,
    )
    store._single_copy_limit = 0  # any server-side copy would now fail loudly
    size = 26 * MiB + 77  # 6 parts, sent three at a time
    expected = generated_digest(size, seed=9)
    keys_written: list[str] = []
    original = store.client.create_multipart_upload

    def recording(**kwargs: object) -> object:
        keys_written.append(str(kwargs["Key"]))
        return original(**kwargs)  # type: ignore[arg-type]

    store.client.create_multipart_upload = recording  # type: ignore[method-assign]
    try:
        info = store.put(generated(size, seed=9), sha256=expected)
    finally:
        del store.client.create_multipart_upload

    assert info == BlobInfo(sha256=expected, size=size)
    assert keys_written == [blob_key(expected)]  # no temp key, so nothing to copy
    assert stored_keys(store) == [blob_key(expected)]
    assert pending_uploads(store) == []
    hasher = hashlib.sha256()
    for chunk in store.read_range(expected, 0, size):
        hasher.update(chunk)
    assert hasher.hexdigest() == expected

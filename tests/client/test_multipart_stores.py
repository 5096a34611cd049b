"""The multipart-upload side of both blob stores, as the upload sessions use it."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from storage import (
    MIN_PART_SIZE,
    LocalBlobStore,
    MultipartBlobStore,
    S3BlobStore,
    StorageError,
    UploadNotFound,
    blob_key,
)

ANY_SHA = "0" * 64


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MultipartBlobStore]:
    if request.param == "local":
        yield LocalBlobStore(tmp_path / "blobs")
    else:
        yield request.getfixturevalue("s3_blob_store")


def stored_bytes(store: S3BlobStore) -> int:
    pages = store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket)
    return sum(obj["Size"] for page in pages for obj in page.get("Contents", []))


def assemble(store: MultipartBlobStore, data: bytes) -> Any:
    upload = store.start_multipart(hashlib.sha256(data).hexdigest())
    send(store, upload, 1, data)
    store.complete_multipart(upload, store.list_parts(upload))
    return upload


def send(store: MultipartBlobStore, upload: Any, number: int, data: bytes) -> None:
    url = store.part_upload_url(upload, number)
    if url is None:
        store.put_part(upload, number, io.BytesIO(data), size=len(data))
    else:
        assert requests.put(url, data=data, timeout=30).status_code == 200


def test_parts_assemble_into_bytes_that_promote_to_their_blob_key(store: MultipartBlobStore) -> None:
    first, last = b"a" * MIN_PART_SIZE, b"the end"
    sha = hashlib.sha256(first + last).hexdigest()
    upload = store.start_multipart(sha)
    send(store, upload, 2, last)
    send(store, upload, 1, first)
    send(store, upload, 1, first)  # a part sent again (a retry) is stored once

    parts = store.list_parts(upload)
    assert [(p.number, p.size) for p in parts] == [(1, MIN_PART_SIZE), (2, len(last))]
    assert store.staged_size(upload) is None
    assert store.complete_multipart(upload, parts) == len(first + last)
    assert store.complete_multipart(upload, parts) == len(first + last), "completing is idempotent"
    with pytest.raises(UploadNotFound):
        store.list_parts(upload)  # assembled: no parts any more
    with store.open_multipart(upload) as staged:
        assert hashlib.sha256(staged.read()).hexdigest() == sha
    assert not store.exists(sha), "staged bytes are not a blob until promoted"

    assert store.promote_multipart(upload, sha) is True
    assert store.exists(sha) and b"".join(store.read_range(sha, 0, 10**9)) == first + last
    assert store.size(sha) == len(first + last)
    with store.open(sha) as blob:
        assert blob.read() == first + last
    assert sha in [s for s, _ in store.iter_blobs()]
    if isinstance(store, LocalBlobStore):
        assert store.staged_size(upload) is None, "renamed onto the blob's path"
    else:
        assert stored_bytes(store) == len(first + last), "promoting copied nothing"


def test_promoting_bytes_already_stored_drops_the_staged_copy(store: MultipartBlobStore) -> None:
    data = b"same bytes"
    info = store.put(io.BytesIO(data))
    upload = store.start_multipart(info.sha256)
    send(store, upload, 1, data)
    store.complete_multipart(upload, store.list_parts(upload))

    assert store.promote_multipart(upload, info.sha256) is False
    assert store.staged_size(upload) is None and b"".join(store.read_range(info.sha256, 0, 100)) == data


def test_aborting_is_idempotent_and_stale_uploads_are_swept(store: MultipartBlobStore) -> None:
    upload = store.start_multipart(ANY_SHA)
    send(store, upload, 1, b"partial")
    store.abort_multipart(upload)
    store.abort_multipart(upload)
    with pytest.raises(UploadNotFound):
        store.list_parts(upload)

    kept = store.start_multipart(ANY_SHA)
    assert store.abort_stale_multiparts(timedelta(hours=1)) == 0
    assert store.abort_stale_multiparts(timedelta(seconds=-1)) >= 1
    with pytest.raises(UploadNotFound):
        store.list_parts(kept)


# --- S3: a promoted upload stays where it was uploaded, and its blob key links to it -----------


def test_a_promoted_upload_is_linked_not_copied(s3_blob_store: S3BlobStore) -> None:
    store, data = s3_blob_store, b"linked bytes " * 1000
    sha = hashlib.sha256(data).hexdigest()
    upload = assemble(store, data)
    assert store.promote_multipart(upload, sha) is True

    link = store.client.head_object(Bucket=store.bucket, Key=blob_key(sha))
    assert link["ContentLength"] == 0 and link["Metadata"]["ahub-link"] == upload.key
    assert stored_bytes(store) == len(data)
    assert b"".join(store.read_range(sha, 5, 17)) == data[5:17]
    assert list(store.read_range(sha, len(data), len(data) + 10)) == [], "a slice past the end is empty"
    url = store.presigned_url(sha, filename="adapter_model.safetensors")
    assert url is not None and requests.get(url, timeout=30).content == data

    assert store.promote_multipart(upload, sha) is False, "a retried promotion finds the blob linked"
    store.abort_multipart(upload)  # a session cleaning up after its verified upload
    assert b"".join(store.read_range(sha, 0, len(data))) == data, "an upload a blob links to is kept"

    store.delete(sha)
    assert not store.exists(sha) and stored_bytes(store) == 0, "deleting a blob deletes the bytes it links to"
    store.delete(sha)


def test_a_second_promotion_of_the_same_bytes_drops_its_upload(s3_blob_store: S3BlobStore) -> None:
    store, data = s3_blob_store, b"pushed twice at once"
    sha = hashlib.sha256(data).hexdigest()
    first, second = assemble(store, data), assemble(store, data)
    assert store.promote_multipart(first, sha) is True
    assert store.promote_multipart(second, sha) is False
    assert store.staged_size(second) is None and stored_bytes(store) == len(data)
    assert b"".join(store.read_range(sha, 0, 100)) == data


def test_the_stale_sweep_keeps_linked_uploads(s3_blob_store: S3BlobStore) -> None:
    store = s3_blob_store
    kept_data, dropped_data = b"verified and promoted", b"assembled, never promoted"
    kept, dropped = assemble(store, kept_data), assemble(store, dropped_data)
    store.promote_multipart(kept, hashlib.sha256(kept_data).hexdigest())

    assert store.abort_stale_multiparts(timedelta(seconds=-1)) == 1
    assert store.staged_size(dropped) is None
    assert b"".join(store.read_range(hashlib.sha256(kept_data).hexdigest(), 0, 100)) == kept_data


def test_an_upload_promotes_only_to_the_blob_it_was_staged_for(s3_blob_store: S3BlobStore) -> None:
    store, data = s3_blob_store, b"staged for one blob"
    upload = assemble(store, data)

    with pytest.raises(StorageError):
        store.promote_multipart(upload, hashlib.sha256(b"another blob").hexdigest())
    assert store.staged_size(upload) == len(data), "the staged bytes stay for their own blob"


def test_part_urls_cannot_change_bytes_once_assembled(s3_blob_store: S3BlobStore) -> None:
    """What makes linking safe: the client's presigned part URLs die when the hub completes the
    upload, so the bytes it verifies and links to are the bytes every later reader gets."""
    store, data = s3_blob_store, b"verified bytes"
    sha = hashlib.sha256(data).hexdigest()
    upload = store.start_multipart(sha)
    url = store.part_upload_url(upload, 1)
    assert url is not None and requests.put(url, data=data, timeout=30).status_code == 200
    store.complete_multipart(upload, store.list_parts(upload))
    assert store.promote_multipart(upload, sha) is True

    another = store.part_upload_url(upload, 2)
    assert another is not None
    assert requests.put(url, data=b"other bytes", timeout=30).status_code == 404
    assert requests.put(another, data=b"more bytes", timeout=30).status_code == 404
    assert b"".join(store.read_range(sha, 0, 100)) == data

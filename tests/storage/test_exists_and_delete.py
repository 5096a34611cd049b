from __future__ import annotations

import io

from storage import BlobStore
from tests.storage.helpers import stored_keys


def test_exists_is_true_only_for_stored_blobs(blob_store: BlobStore) -> None:
    info = blob_store.put(io.BytesIO(b"present"))

    assert blob_store.exists(info.sha256)
    assert not blob_store.exists("f" * 64)


def test_delete_removes_the_blob(blob_store: BlobStore) -> None:
    info = blob_store.put(io.BytesIO(b"doomed"))

    blob_store.delete(info.sha256)

    assert not blob_store.exists(info.sha256)
    assert stored_keys(blob_store) == []


def test_delete_is_idempotent(blob_store: BlobStore) -> None:
    info = blob_store.put(io.BytesIO(b"doomed twice"))

    blob_store.delete(info.sha256)
    blob_store.delete(info.sha256)
    blob_store.delete("e" * 64)

    assert not blob_store.exists(info.sha256)


def test_a_deleted_blob_can_be_stored_again(blob_store: BlobStore) -> None:
    info = blob_store.put(io.BytesIO(b"phoenix"))
    blob_store.delete(info.sha256)

    assert blob_store.put(io.BytesIO(b"phoenix")) == info
    assert blob_store.exists(info.sha256)

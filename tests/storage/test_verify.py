"""A blob key holds only bytes that hash to its name: the stores treat anything else there as
missing (so nothing deduplicates against it), replace it when the right bytes arrive, and
verify() finds it."""

from __future__ import annotations

import hashlib
import io

import pytest

from storage import BlobStore, LocalBlobStore, S3BlobStore, blob_key
from storage.interfaces import EMPTY_SHA256
from tests.client.test_multipart_stores import assemble


def test_verify_passes_stored_blobs_and_reports_missing_ones(blob_store: BlobStore) -> None:
    info = blob_store.put(io.BytesIO(b"sound bytes"))
    empty = blob_store.put(io.BytesIO(b""))

    assert blob_store.verify(info.sha256) is None
    assert empty.sha256 == EMPTY_SHA256 and blob_store.verify(EMPTY_SHA256) is None
    assert blob_store.exists(EMPTY_SHA256), "the empty blob is the one empty object that is a blob"
    assert blob_store.verify("a" * 64) == "missing"


def test_verify_reports_other_bytes_at_a_blob_key(blob_store: BlobStore) -> None:
    sha = hashlib.sha256(b"the real bytes").hexdigest()
    plant(blob_store, sha, b"tampered")

    problem = blob_store.verify(sha)

    assert problem is not None and hashlib.sha256(b"tampered").hexdigest() in problem


def test_an_empty_object_at_a_blob_key_is_not_that_blob(blob_store: BlobStore) -> None:
    data = b"a file whose address holds an empty object"
    sha = hashlib.sha256(data).hexdigest()
    plant(blob_store, sha, b"")

    assert not blob_store.exists(sha), "a push must not deduplicate against it"
    assert blob_store.verify(sha) not in (None, "missing")
    assert blob_store.put(io.BytesIO(data)).sha256 == sha
    assert blob_store.exists(sha) and blob_store.open(sha).read() == data


def test_a_link_to_nothing_is_not_a_blob_and_promotion_replaces_it(s3_blob_store: S3BlobStore) -> None:
    store, data = s3_blob_store, b"linked, then its bytes vanished " * 100
    sha = hashlib.sha256(data).hexdigest()
    first = assemble(store, data)
    assert store.promote_multipart(first, sha) is True
    store.client.delete_object(Bucket=store.bucket, Key=first.key)  # an operator's mistake, a lost volume

    assert not store.exists(sha)
    assert "does not hold" in (store.verify(sha) or "")
    second = assemble(store, data)
    assert store.promote_multipart(second, sha) is True, "the verified upload replaces the broken link"
    assert store.exists(sha) and store.verify(sha) is None
    assert b"".join(store.read_range(sha, 0, len(data))) == data


def test_deleting_a_broken_blob_removes_what_sits_at_its_key(blob_store: BlobStore) -> None:
    sha = hashlib.sha256(b"never stored").hexdigest()
    plant(blob_store, sha, b"")

    blob_store.delete(sha)

    assert blob_store.verify(sha) == "missing"


def plant(store: BlobStore, sha: str, data: bytes) -> None:
    """Write bytes at a blob key behind the store's back."""
    if isinstance(store, S3BlobStore):
        store.client.put_object(Bucket=store.bucket, Key=blob_key(sha), Body=data)
    elif isinstance(store, LocalBlobStore):
        path = store.path(sha)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    else:
        pytest.fail(f"unknown store {store!r}")

from __future__ import annotations

import io
import os
import time
from datetime import timedelta
from pathlib import Path

from storage import LocalBlobStore, S3BlobStore
from tests.storage.helpers import pending_uploads, stored_keys


def test_the_local_store_removes_only_stale_temp_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    blob = store.put(io.BytesIO(b"a blob is never temp data"))
    stale = tmp_path / "tmp" / "upload-stale.part"
    fresh = tmp_path / "tmp" / "upload-fresh.part"
    stale.write_bytes(b"abandoned")
    fresh.write_bytes(b"in progress")
    two_hours_ago = time.time() - 2 * 3600
    os.utime(stale, (two_hours_ago, two_hours_ago))
    os.utime(store.path(blob.sha256), (two_hours_ago, two_hours_ago))

    removed = store.cleanup_temp(timedelta(hours=1))

    assert removed == 1
    assert not stale.exists()
    assert fresh.exists()
    assert store.exists(blob.sha256)


def test_the_s3_store_removes_only_stale_temp_keys(s3_blob_store: S3BlobStore) -> None:
    store = s3_blob_store
    blob = store.put(io.BytesIO(b"a blob is never temp data"))
    store.client.put_object(Bucket=store.bucket, Key="tmp/left-behind", Body=b"abandoned")

    assert store.cleanup_temp(timedelta(hours=1)) == 0
    assert "tmp/left-behind" in stored_keys(store)

    # Nothing can be backdated on S3, so "stale" here means older than now.
    assert store.cleanup_temp(timedelta(0)) == 1
    assert stored_keys(store) == [f"blobs/sha256/{blob.sha256[:2]}/{blob.sha256[2:4]}/{blob.sha256}"]


def test_the_s3_store_aborts_only_stale_multipart_uploads(s3_blob_store: S3BlobStore) -> None:
    store = s3_blob_store
    at_blob_key = f"blobs/sha256/ab/cd/abcd{'0' * 60}"  # a put of announced bytes, interrupted
    store.client.create_multipart_upload(Bucket=store.bucket, Key="tmp/interrupted")
    store.client.create_multipart_upload(Bucket=store.bucket, Key=at_blob_key)
    store.client.create_multipart_upload(Bucket=store.bucket, Key="elsewhere/not-ours")

    assert store.abort_stale_uploads(timedelta(hours=1)) == 0
    assert sorted(pending_uploads(store)) == [at_blob_key, "elsewhere/not-ours", "tmp/interrupted"]

    assert store.abort_stale_uploads(timedelta(0)) == 2
    assert pending_uploads(store) == ["elsewhere/not-ours"]


def test_s3_cleanup_temp_also_aborts_stale_uploads(s3_blob_store: S3BlobStore) -> None:
    store = s3_blob_store
    store.client.create_multipart_upload(Bucket=store.bucket, Key="tmp/interrupted")

    assert store.cleanup_temp(timedelta(0)) == 1
    assert pending_uploads(store) == []

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from storage import BlobStore, LocalBlobStore, S3BlobStore, make_blob_store
from tests.plugins.seaweed import SeaweedServer, delete_bucket


def test_it_builds_a_local_store_from_a_string_root(tmp_path: Path) -> None:
    store = make_blob_store({"BACKEND": "local", "ROOT": str(tmp_path / "blobs")})

    assert isinstance(store, LocalBlobStore)
    assert store.root == tmp_path / "blobs"


def test_it_builds_an_s3_store_and_can_create_its_bucket(seaweedfs: SeaweedServer) -> None:
    bucket = f"factory-{uuid.uuid4().hex[:16]}"
    store = make_blob_store(
        {
            "BACKEND": "s3",
            "BUCKET": bucket,
            "ENDPOINT_URL": seaweedfs.endpoint_url,
            "ACCESS_KEY": seaweedfs.access_key,
            "SECRET_KEY": seaweedfs.secret_key,
            "REGION": seaweedfs.region,
            "CREATE_BUCKET": True,
        }
    )

    try:
        assert isinstance(store, S3BlobStore)
        assert store.bucket == bucket
        store.client.head_bucket(Bucket=bucket)
        assert not store.exists("a" * 64)
    finally:
        delete_bucket(seaweedfs.client(), bucket)


def test_it_treats_empty_s3_settings_as_unset() -> None:
    # The shape hub/settings.py produces when no S3_* variables are set.
    store = make_blob_store(
        {
            "BACKEND": "s3",
            "BUCKET": "adapter-hub",
            "ENDPOINT_URL": None,
            "ACCESS_KEY": None,
            "SECRET_KEY": None,
            "REGION": "",
            "CREATE_BUCKET": False,
        }
    )

    assert isinstance(store, S3BlobStore)
    assert store.region == "us-east-1"


@pytest.mark.parametrize("backend", ["gcs", "", None, "S3 "])
def test_it_rejects_an_unknown_backend(backend: str | None) -> None:
    with pytest.raises(ValueError, match="unknown BACKEND"):
        make_blob_store({"BACKEND": backend, "ROOT": "/tmp/x"})


def test_it_needs_a_root_for_local_and_a_bucket_for_s3() -> None:
    with pytest.raises(ValueError, match="ROOT"):
        make_blob_store({"BACKEND": "local"})
    with pytest.raises(ValueError, match="BUCKET"):
        make_blob_store({"BACKEND": "s3", "BUCKET": ""})


def test_both_backends_satisfy_the_protocol(blob_store: BlobStore) -> None:
    assert isinstance(blob_store, BlobStore)

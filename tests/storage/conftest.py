from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from storage import BlobStore, LocalBlobStore, S3BlobStore


@pytest.fixture(params=["local", "s3"])
def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """The contract suite runs once per backend; S3 means a real SeaweedFS bucket."""
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    store: S3BlobStore = request.getfixturevalue("s3_blob_store")
    return store


@pytest.fixture
def tuned_store(blob_store: BlobStore) -> Callable[..., BlobStore]:
    """The same backend and bucket/root with other S3 tuning (small parts for multipart tests)."""

    def make(**s3_options: Any) -> BlobStore:
        if isinstance(blob_store, S3BlobStore):
            return S3BlobStore(bucket=blob_store.bucket, client=blob_store.client, **s3_options)
        return blob_store

    return make

"""Content-addressed blob storage: the BlobStore protocol, its local and S3 backends, a factory.

Nothing here imports Django; the registry passes its settings.BLOB_STORE mapping to
make_blob_store().
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from storage.interfaces import (
    MIN_PART_SIZE,
    BlobInfo,
    BlobMismatch,
    BlobNotFound,
    BlobStore,
    BlobTooLarge,
    MultipartBlobStore,
    MultipartUpload,
    StorageError,
    UploadedPart,
    UploadNotFound,
    blob_key,
    validate_sha256,
)
from storage.local import LocalBlobStore
from storage.s3 import S3BlobStore

__all__ = [
    "MIN_PART_SIZE",
    "BlobInfo",
    "BlobMismatch",
    "BlobNotFound",
    "BlobStore",
    "BlobTooLarge",
    "LocalBlobStore",
    "MultipartBlobStore",
    "MultipartUpload",
    "S3BlobStore",
    "StorageError",
    "UploadNotFound",
    "UploadedPart",
    "blob_key",
    "make_blob_store",
    "validate_sha256",
]


def make_blob_store(config: Mapping[str, Any]) -> BlobStore:
    """Build the store that config describes.

    Keys: BACKEND ("local" or "s3"); ROOT for local; BUCKET, ENDPOINT_URL, ACCESS_KEY,
    SECRET_KEY, REGION and CREATE_BUCKET for s3. Missing optional keys take the S3BlobStore
    defaults; empty strings count as missing, as unset environment variables often arrive so.
    """
    backend = config.get("BACKEND")
    if backend == "local":
        root = config.get("ROOT")
        if not root:
            raise ValueError("BLOB_STORE: the local backend needs ROOT (a directory path)")
        return LocalBlobStore(Path(root))
    if backend == "s3":
        bucket = config.get("BUCKET")
        if not bucket:
            raise ValueError("BLOB_STORE: the s3 backend needs BUCKET")
        return S3BlobStore(
            bucket=bucket,
            endpoint_url=config.get("ENDPOINT_URL") or None,
            access_key=config.get("ACCESS_KEY") or None,
            secret_key=config.get("SECRET_KEY") or None,
            region=config.get("REGION") or "us-east-1",
            part_workers=int(config.get("PART_WORKERS") or 4),
            create_bucket=bool(config.get("CREATE_BUCKET", False)),
        )
    raise ValueError(f"BLOB_STORE: unknown BACKEND {backend!r}; use 'local' or 's3'")

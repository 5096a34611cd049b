from __future__ import annotations

import pickle

import pytest

from storage import BlobNotFound, BlobTooLarge, S3BlobStore, StorageError


def test_blob_too_large_carries_its_limit_and_survives_pickling() -> None:
    exc = BlobTooLarge(1000)

    copy = pickle.loads(pickle.dumps(exc))

    assert isinstance(copy, BlobTooLarge)
    assert copy.limit == 1000
    assert str(copy) == "blob exceeds the size limit of 1000 bytes"


def test_the_errors_share_a_base_class() -> None:
    assert issubclass(BlobTooLarge, StorageError)
    assert issubclass(BlobNotFound, StorageError)
    assert issubclass(BlobNotFound, FileNotFoundError)


def test_s3_parts_below_the_s3_minimum_are_refused() -> None:
    with pytest.raises(ValueError, match="part_size"):
        S3BlobStore(bucket="b", part_size=1024 * 1024, endpoint_url="http://127.0.0.1:9")

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from storage import BlobStore, LocalBlobStore, blob_key, validate_sha256
from tests.storage.helpers import stored_keys

GOOD = hashlib.sha256(b"x").hexdigest()
BAD = [
    "",
    "abc",
    GOOD.upper(),
    GOOD + "0",
    GOOD[:-1],
    "../" + GOOD[3:],
    "/" + GOOD[1:],
    GOOD[:-1] + "g",
    GOOD[:-1] + "\n",
]


def test_blob_keys_are_content_addressed_with_two_levels_of_fan_out() -> None:
    assert blob_key(GOOD) == f"blobs/sha256/{GOOD[:2]}/{GOOD[2:4]}/{GOOD}"


def test_the_local_store_uses_the_same_layout(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)

    info = store.put(io.BytesIO(b"x"))

    assert store.path(info.sha256) == tmp_path / blob_key(GOOD)
    assert stored_keys(store) == [blob_key(GOOD)]


@pytest.mark.parametrize("bad", BAD)
def test_validate_sha256_rejects_anything_but_64_lowercase_hex(bad: str) -> None:
    with pytest.raises(ValueError, match="sha256"):
        validate_sha256(bad)


CALLS: dict[str, Callable[[BlobStore, str], Any]] = {
    "open": lambda s, sha: s.open(sha),
    "read_range": lambda s, sha: s.read_range(sha, 0, 1),
    "size": lambda s, sha: s.size(sha),
    "exists": lambda s, sha: s.exists(sha),
    "delete": lambda s, sha: s.delete(sha),
    "presigned_url": lambda s, sha: s.presigned_url(sha),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
@pytest.mark.parametrize("bad", ["../../etc/passwd", GOOD.upper(), "../" + GOOD[3:]])
def test_every_method_rejects_invalid_digests(
    blob_store: BlobStore, call: Callable[[BlobStore, str], Any], bad: str
) -> None:
    with pytest.raises(ValueError):
        call(blob_store, bad)

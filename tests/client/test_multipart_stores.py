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

from storage import MIN_PART_SIZE, LocalBlobStore, MultipartBlobStore, UploadNotFound


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MultipartBlobStore]:
    if request.param == "local":
        yield LocalBlobStore(tmp_path / "blobs")
    else:
        yield request.getfixturevalue("s3_blob_store")


def send(store: MultipartBlobStore, upload: Any, number: int, data: bytes) -> None:
    url = store.part_upload_url(upload, number)
    if url is None:
        store.put_part(upload, number, io.BytesIO(data), size=len(data))
    else:
        assert requests.put(url, data=data, timeout=30).status_code == 200


def test_parts_assemble_into_bytes_that_promote_to_their_blob_key(store: MultipartBlobStore) -> None:
    first, last = b"a" * MIN_PART_SIZE, b"the end"
    sha = hashlib.sha256(first + last).hexdigest()
    upload = store.start_multipart()
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
    assert store.staged_size(upload) is None
    assert sha in [s for s, _ in store.iter_blobs()]


def test_promoting_bytes_already_stored_drops_the_staged_copy(store: MultipartBlobStore) -> None:
    data = b"same bytes"
    info = store.put(io.BytesIO(data))
    upload = store.start_multipart()
    send(store, upload, 1, data)
    store.complete_multipart(upload, store.list_parts(upload))

    assert store.promote_multipart(upload, info.sha256) is False
    assert store.staged_size(upload) is None and b"".join(store.read_range(info.sha256, 0, 100)) == data


def test_aborting_is_idempotent_and_stale_uploads_are_swept(store: MultipartBlobStore) -> None:
    upload = store.start_multipart()
    send(store, upload, 1, b"partial")
    store.abort_multipart(upload)
    store.abort_multipart(upload)
    with pytest.raises(UploadNotFound):
        store.list_parts(upload)

    kept = store.start_multipart()
    assert store.abort_stale_multiparts(timedelta(hours=1)) == 0
    assert store.abort_stale_multiparts(timedelta(seconds=-1)) >= 1
    with pytest.raises(UploadNotFound):
        store.list_parts(kept)

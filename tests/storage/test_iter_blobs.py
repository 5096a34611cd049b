from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

from storage import BlobStore, LocalBlobStore


def test_it_lists_every_stored_blob_with_an_aware_utc_timestamp(blob_store: BlobStore) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    shas = {blob_store.put(io.BytesIO(f"blob {i}".encode())).sha256 for i in range(3)}
    blob_store.put(io.BytesIO(b"blob 0"))  # a duplicate is still one blob

    listed = list(blob_store.iter_blobs())

    assert sorted(sha for sha, _ in listed) == sorted(shas)
    for _, modified in listed:
        assert modified.utcoffset() == timedelta(0)
        assert before <= modified <= datetime.now(UTC) + timedelta(seconds=5)


def test_it_lists_nothing_for_an_empty_store(blob_store: BlobStore) -> None:
    assert list(blob_store.iter_blobs()) == []


def test_it_skips_deleted_blobs(blob_store: BlobStore) -> None:
    kept = blob_store.put(io.BytesIO(b"kept"))
    gone = blob_store.put(io.BytesIO(b"gone"))
    blob_store.delete(gone.sha256)

    assert [sha for sha, _ in blob_store.iter_blobs()] == [kept.sha256]


def test_the_local_store_ignores_stray_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    info = store.put(io.BytesIO(b"real"))
    (store.path(info.sha256).parent / "notes.txt").write_text("not a blob")
    (tmp_path / "tmp" / "upload-x.part").write_bytes(b"half")

    assert [sha for sha, _ in store.iter_blobs()] == [info.sha256]

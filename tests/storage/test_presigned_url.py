from __future__ import annotations

import io
import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote

import pytest

from storage import LocalBlobStore, S3BlobStore


def test_it_downloads_the_exact_bytes_as_an_attachment(s3_blob_store: S3BlobStore) -> None:
    data = os.urandom(200_000)
    info = s3_blob_store.put(io.BytesIO(data))

    url = s3_blob_store.presigned_url(info.sha256, filename="adapter_model.safetensors")

    assert url is not None
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == data
        disposition = resp.headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert 'filename="adapter_model.safetensors"' in disposition


def test_it_keeps_unusual_filenames_intact(s3_blob_store: S3BlobStore) -> None:
    info = s3_blob_store.put(io.BytesIO(b"weights"))
    name = 'mod\u00e8le "v2"; \u2713.bin'

    url = s3_blob_store.presigned_url(info.sha256, filename=name)

    assert url is not None
    with urllib.request.urlopen(url, timeout=10) as resp:
        disposition = resp.headers["Content-Disposition"]
    fallback, encoded = disposition.split("; filename*=UTF-8''")
    assert fallback == 'attachment; filename="mod_le _v2_; _.bin"'
    assert unquote(encoded) == name


def test_it_has_no_content_disposition_without_a_filename(s3_blob_store: S3BlobStore) -> None:
    info = s3_blob_store.put(io.BytesIO(b"plain"))

    url = s3_blob_store.presigned_url(info.sha256)

    assert url is not None
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == b"plain"
        assert resp.headers.get("Content-Disposition") is None


def test_a_tampered_url_is_refused(s3_blob_store: S3BlobStore) -> None:
    info = s3_blob_store.put(io.BytesIO(b"signed"))
    url = s3_blob_store.presigned_url(info.sha256, filename="a.bin")
    assert url is not None

    with pytest.raises(urllib.error.HTTPError) as exc_info:
        urllib.request.urlopen(url.replace("a.bin", "b.bin"), timeout=10)
    assert exc_info.value.code == 403


def test_the_local_store_has_no_presigned_urls(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    info = store.put(io.BytesIO(b"local"))

    assert store.presigned_url(info.sha256, filename="x.bin") is None

"""HTTP helpers for API tests."""

from __future__ import annotations

import io
import json
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from rest_framework.test import APIClient

from registry.blobs import get_blob_store


def stored_blobs() -> list[str]:
    return [sha for sha, _ in get_blob_store().iter_blobs()]


def multipart(files: list[tuple[str, bytes]], fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    """A multipart body written by hand, so file names reach the server exactly as given
    (Django's test client keeps only their last segment)."""
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for key, value in (fields or {}).items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
    for name, data in files:
        out.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        out.write(data)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def folder_files(folder: Path) -> list[tuple[str, bytes]]:
    return sorted((p.relative_to(folder).as_posix(), p.read_bytes()) for p in folder.rglob("*") if p.is_file())


def push(client: APIClient, ref: str, files: list[tuple[str, bytes]], **fields: str) -> Any:
    body, content_type = multipart(files, fields)
    return client.generic("POST", f"/api/v1/adapters/{ref}/versions/", body, content_type=content_type)


def push_folder(client: APIClient, ref: str, folder: Path, **fields: str) -> Any:
    return push(client, ref, folder_files(folder), **fields)


def download(client: APIClient, url: str, **headers: str) -> tuple[int, bytes, Any]:
    """GET a file URL; follows a presigned S3 redirect with a plain HTTP client."""
    response = client.get(url, **headers)
    if response.status_code == 302:
        with urllib.request.urlopen(response["Location"]) as remote:
            return remote.status, remote.read(), response
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response.status_code, body, response


def json_of(response: Any) -> Any:
    return json.loads(response.content)



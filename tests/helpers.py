"""HTTP helpers for API tests."""

from __future__ import annotations

import io
import json
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
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


def dead_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def broker_down() -> Iterator[None]:
    """The Celery app publishes to a Redis that does not answer, for the duration of the block."""
    from hub.celery import app

    saved = {key: app.conf[key] for key in ("broker_url", "broker_transport_options", "task_publish_retry")}
    app.conf.update(
        broker_url=f"redis://127.0.0.1:{dead_port()}/0", broker_transport_options={}, task_publish_retry=False
    )
    _reconnect(app)
    try:
        yield
    finally:
        app.conf.update(saved)
        _reconnect(app)


def _reconnect(app: Any) -> None:
    """Make the Celery app connect anew, to the broker its configuration names now."""
    app._pool = None  # the old pools stay open for whoever holds them
    app.amqp._producer_pool = None


def _on_postgresql() -> bool:
    from django.db import connection

    return connection.vendor == "postgresql"


# What only PostgreSQL's search does (typo correction, ranking by ts_rank); the embedded SQLite
# default has the substring fallback (registry/search.py).
postgresql_only = pytest.mark.skipif(not _on_postgresql(), reason="PostgreSQL search only")

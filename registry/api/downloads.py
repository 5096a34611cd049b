"""Serving a stored blob over HTTP: a redirect to S3 when the store can presign, else a stream
from the local store with single-range support (resumable downloads)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.http.response import HttpResponseBase

from registry.blobs import get_blob_store
from registry.infrastructure import ServiceDown
from registry.models import BaseModelFile, VersionFile
from registry.services.versions import counts_as_download
from storage import BlobNotFound, BlobStore

log = logging.getLogger(__name__)

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end_exclusive) of a single `bytes=` range, or None for the whole blob.

    Raises ValueError for an unsatisfiable range. Multi-range requests are served whole, as
    RFC 9110 allows.
    """
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":
        length = int(last)
        if length == 0:
            raise ValueError("empty suffix range")
        return max(size - length, 0), size
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if start >= size or start >= end:
        raise ValueError("range starts past the end")
    return start, end


def blob_response(request: HttpRequest, store: BlobStore, sha256: str, size: int, filename: str) -> HttpResponseBase:
    url = store.presigned_url(sha256, filename=filename, expires=settings.PRESIGNED_URL_EXPIRES)
    if url is not None:
        response: HttpResponseBase = HttpResponseRedirect(url)
        response["Cache-Control"] = "no-store"
        return response
    try:
        window = parse_range(request.headers.get("Range"), size)
    except ValueError:
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return response
    start, end = window or (0, size)
    try:
        chunks = store.read_range(sha256, start, end)
    except BlobNotFound:
        # A version's bytes are gone from the store (lost or deleted as broken by gc_blobs --verify):
        # an operator's problem, which a push of the same files repairs.
        log.error("blob %s of %s is missing from the store", sha256, filename)
        raise ServiceDown(
            f"the stored bytes of {filename} are missing; the hub's operators can restore them", code="file_unavailable"
        ) from None
    response = StreamingHttpResponse(chunks, status=206 if window else 200)
    response["Content-Length"] = str(end - start)
    if window:
        response["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    response["Accept-Ranges"] = "bytes"
    response["Content-Type"] = "application/octet-stream"
    response["Content-Disposition"] = f'attachment; filename="{filename.rsplit("/", 1)[-1]}"'
    response["ETag"] = f'"{sha256}"'
    response["X-Content-Sha256"] = sha256
    return response


def serve_file(
    request: HttpRequest, found: VersionFile | BaseModelFile, *, on_download: Callable[[], None] | None = None
) -> HttpResponseBase:
    """A stored file's bytes for a GET (what the REST API and the HF routes both serve), calling
    `on_download` when the GET counts as a download: weights fetched from their first byte, so a
    resumed transfer or a probe of the config is not counted again."""
    response = blob_response(request, get_blob_store(), found.sha256, found.size, found.path)
    if (
        on_download is not None
        and request.method == "GET"
        and response.status_code < 400
        and counts_as_download(found.path, range_start(request))
    ):
        on_download()
    return response


def range_start(request: HttpRequest) -> int:
    """The first byte a GET asks for: 0 without Range; a suffix or malformed range is not a start."""
    header = request.headers.get("Range", "")
    if not header.startswith("bytes="):
        return 0
    first = header[len("bytes=") :].split("-", 1)[0].strip()
    return int(first) if first.isdigit() else 1

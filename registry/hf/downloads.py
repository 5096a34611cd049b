"""`HEAD`/`GET /{ns}/{name}/resolve/{rev}/{path}`: file metadata and bytes for hf_hub_download.

1. A branch-style revision (`main`, a number, a label) answers 307 to the same file under the
   version's commit id, so the client's HEAD and its GET land on one version even if a push
   happens between them (the client downloads from wherever its HEAD ended).
2. Under a commit id, HEAD answers 200 with the metadata the client requires: `X-Repo-Commit`
   (the cache's snapshot folder), a quoted `ETag` (the cache's blob name: the sha256) and the size.
3. GET serves the bytes like the REST API: a 302 to a presigned URL on S3, or a stream with
   Range support from the local store; it counts a download exactly as the REST API does.

HEAD deliberately answers 200 rather than the 302 to S3: a client stops at a cross-origin
redirect and then fetches straight from S3, so the hub would never see the download to count.
With a 200, the client's GET comes here and follows our 302 itself (dropping its token, as it
does for any cross-origin hop). The 302 still carries the metadata headers.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from registry import services
from registry.api.downloads import blob_response
from registry.blobs import get_blob_store
from registry.hf.errors import EntryNotFound
from registry.hf.revisions import find_version
from registry.models import Adapter, AdapterVersion, VersionFile


def locate_file(adapter: Adapter, revision: str, path: str) -> tuple[AdapterVersion, VersionFile]:
    version = find_version(adapter, revision)
    if version is None:
        raise EntryNotFound(f"{adapter.full_name} has no published version yet, so no file {path}")
    found = version.files.filter(path=path).first()
    if found is None:
        raise EntryNotFound(f"{adapter.full_name} has no file {path} at {version.commit_id}", commit_id=version.commit_id)
    return version, found


def file_response(
    request: HttpRequest, adapter: Adapter, version: AdapterVersion, found: VersionFile, *, revision: str
) -> HttpResponse:
    response: HttpResponse
    if revision != version.commit_id:
        response = HttpResponse(status=307)
        response["Location"] = reverse(
            "hf:resolve",
            kwargs={
                "namespace": adapter.namespace.name,
                "name": adapter.name,
                "rev": version.commit_id,
                "path": found.path,
            },
        )
        # `main` moves with every push: never let a cache keep this hop.
        response["Cache-Control"] = "no-store"
    elif request.method == "HEAD":
        response = HttpResponse(content_type="application/octet-stream")
        # Set by hand: the body is empty, the header describes what GET would send.
        response["Content-Length"] = str(found.size)
    else:
        response = blob_response(request, get_blob_store(), found.sha256, found.size, found.path)
        if response.status_code < 400 and services.counts_as_download(found.path, _range_start(request)):
            services.record_download(adapter)
    etag = f'"{found.sha256}"'
    response["X-Repo-Commit"] = version.commit_id
    response["ETag"] = etag
    # The client reads these first; on a redirect they are the only metadata it trusts.
    response["X-Linked-Etag"] = etag
    response["X-Linked-Size"] = str(found.size)
    response["Accept-Ranges"] = "bytes"
    return response


def _range_start(request: HttpRequest) -> int:
    """The first byte a GET asks for: 0 without Range; a suffix or malformed range is not a start."""
    header = request.headers.get("Range", "")
    if not header.startswith("bytes="):
        return 0
    first = header[len("bytes=") :].split("-", 1)[0].strip()
    return int(first) if first.isdigit() else 1

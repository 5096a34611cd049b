"""`HEAD`/`GET /{ns}/{name}/resolve/{rev}/{path}`: file metadata and bytes for hf_hub_download,
for adapters and for base models whose files the hub stores.

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

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.urls import reverse

from registry.api.downloads import serve_file
from registry.base_models import names_revision
from registry.hf.errors import EntryNotFound, RevisionNotFound
from registry.hf.revisions import find_version
from registry.models import Adapter, AdapterVersion, BaseModel, BaseModelFile, VersionFile


def locate_file(adapter: Adapter, revision: str, path: str) -> tuple[AdapterVersion, VersionFile]:
    version = find_version(adapter, revision)
    if version is None:
        raise EntryNotFound(f"{adapter.full_name} has no published version yet, so no file {path}")
    found = version.files.filter(path=path).first()
    if found is None:
        raise EntryNotFound(
            f"{adapter.full_name} has no file {path} at {version.commit_id}", commit_id=version.commit_id
        )
    return version, found


def file_response(
    request: HttpRequest,
    repo_id: str,
    commit_id: str,
    found: VersionFile | BaseModelFile,
    *,
    revision: str,
    on_download: Callable[[], None] | None = None,
) -> HttpResponseBase:
    """The answer for one file of a repo (an adapter version or a base model) at `commit_id`;
    `on_download` is called for a GET that counts as a download."""
    response: HttpResponseBase
    if revision != commit_id:
        namespace, name = repo_id.split("/", 1)
        response = HttpResponse(status=307)
        response["Location"] = reverse(
            "hf:resolve", kwargs={"namespace": namespace, "name": name, "rev": commit_id, "path": found.path}
        )
        # `main` moves with every push: never let a cache keep this hop.
        response["Cache-Control"] = "no-store"
    elif request.method == "HEAD":
        response = HttpResponse(content_type="application/octet-stream")
        # Set by hand: the body is empty, the header describes what GET would send.
        response["Content-Length"] = str(found.size)
    else:
        response = serve_file(request, found, on_download=on_download)
    etag = f'"{found.sha256}"'
    response["X-Repo-Commit"] = commit_id
    response["ETag"] = etag
    # The client reads these first; on a redirect they are the only metadata it trusts.
    response["X-Linked-Etag"] = etag
    response["X-Linked-Size"] = str(found.size)
    response["Accept-Ranges"] = "bytes"
    return response


def locate_base_file(base: BaseModel, revision: str, path: str) -> BaseModelFile:
    """A stored file of a base model at `main` or its commit id."""
    if not names_revision(base, revision):
        raise RevisionNotFound(
            f"{base.name} has no revision {revision!r}: use main or {base.commit_id or 'its commit id'}"
        )
    found = base.files.filter(path=path).first()
    if found is None:
        stored = "" if base.files_digest else " (the hub stores only its manifest)"
        raise EntryNotFound(f"{base.name} has no file {path}{stored}", commit_id=base.commit_id or None)
    return found

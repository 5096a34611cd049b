"""HF protocol views: parse the request, call registry/hf services, answer JSON or a file.

Each view takes (request, actor, ...) from `hf_endpoint`, which authenticates the hub token and
turns domain errors into the `X-Error-Code` answers huggingface_hub maps to its exceptions.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase

from registry import services
from registry.access import Actor, access_adapter, visible_base_models
from registry.base_models import names_revision
from registry.exceptions import NotFound
from registry.hf import commits, downloads, search
from registry.hf import serializers as s
from registry.hf.errors import EntryNotFound, HfError, RepoNotFound, RevisionNotFound
from registry.hf.http import absolute_url, flag, hf_endpoint, json_list, paginated, parse_cursor
from registry.hf.revisions import file_history, find_version, head_version
from registry.models import Adapter, AdapterVersion, BaseModel, Membership, VersionFile

# Tree entries per page, as on the Hub (fewer when each entry carries its last commit).
TREE_PAGE_SIZE = 1000
TREE_EXPAND_PAGE_SIZE = 50


def _json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"{}")
    except RequestDataTooBig:
        raise HfError("the request body is too large", status=413) from None
    except ValueError:
        raise HfError("the request body must be JSON", status=400) from None
    if not isinstance(body, dict):
        raise HfError("the request body must be a JSON object", status=400)
    return body


# --- read -----------------------------------------------------------------------------------------


def _repo(actor: Actor, namespace: str, name: str) -> Adapter | BaseModel:
    """The adapter `namespace/name` or, failing that, the base model of that name (read-only):
    `from_pretrained` of an adapter loads its base model through the same endpoint."""
    try:
        return access_adapter(actor, namespace, name)
    except NotFound:
        base = visible_base_models(actor).filter(name=f"{namespace}/{name}").first()
        if base is None:
            raise
        return base


def _base_revision(base: BaseModel, rev: str | None) -> None:
    if not names_revision(base, rev):
        raise RevisionNotFound(f"{base.name} has no revision {rev!r}: use main or its commit id")


def _files_at(repo: Adapter | BaseModel, rev: str | None) -> tuple[AdapterVersion | None, list[Any]]:
    """The files a repo has at a revision, and the adapter version that holds them (None for a base
    model, whose one file set is `main`, and for an adapter without a version yet)."""
    if isinstance(repo, BaseModel):
        _base_revision(repo, rev)
        return None, list(repo.files.all())
    version = find_version(repo, rev)
    return version, list(version.files.all()) if version is not None else []


@hf_endpoint("GET", "HEAD")
def resolve(request: HttpRequest, actor: Actor, namespace: str, name: str, rev: str, path: str) -> HttpResponseBase:
    repo = _repo(actor, namespace, name)
    if isinstance(repo, BaseModel):
        found = downloads.locate_base_file(repo, rev, path)
        return downloads.file_response(request, repo.name, repo.commit_id, found, revision=rev)
    adapter = repo
    version, located = downloads.locate_file(adapter, rev, path)
    return downloads.file_response(
        request,
        adapter.full_name,
        version.commit_id,
        located,
        revision=rev,
        on_download=lambda: services.record_download(adapter),
    )


@hf_endpoint("GET")
def model_info(request: HttpRequest, actor: Actor, namespace: str, name: str, rev: str | None = None) -> JsonResponse:
    repo = _repo(actor, namespace, name)
    version, files = _files_at(repo, rev)
    if isinstance(repo, BaseModel):
        return JsonResponse(s.base_model_info(repo, files, blobs=flag(request, "blobs")))
    return JsonResponse(s.model_info(repo, version, files, blobs=flag(request, "blobs")))


@hf_endpoint("GET")
def tree(request: HttpRequest, actor: Actor, namespace: str, name: str, rev: str, path: str = "") -> JsonResponse:
    repo = _repo(actor, namespace, name)
    version, files = _files_at(repo, rev)
    holder = repo if isinstance(repo, BaseModel) else version
    commit_id = holder.commit_id or None if holder is not None else None
    entries = s.tree_entries(files, folder=path.strip("/"), recursive=flag(request, "recursive"))
    if entries is None:
        raise EntryNotFound(f"{_repo_id(repo)} has no folder {path}", commit_id=commit_id)
    expand = flag(request, "expand")
    page, link = paginated(
        request, entries, offset=parse_cursor(request), page_size=TREE_EXPAND_PAGE_SIZE if expand else TREE_PAGE_SIZE
    )
    if expand and isinstance(repo, Adapter) and version is not None:
        history, files_by_version = file_history(repo, version)
        s.add_last_commits(page, history, files_by_version)
    elif expand and isinstance(repo, BaseModel) and repo.commit_id:
        commit = s.base_model_commit(repo)
        for entry in page:
            if entry["type"] == "file":
                entry["lastCommit"] = {"id": commit["id"], "title": commit["title"], "date": commit["date"]}
    return json_list(list(page), link=link)


def _repo_id(repo: Adapter | BaseModel) -> str:
    return repo.name if isinstance(repo, BaseModel) else repo.full_name


@hf_endpoint("POST")
def paths_info(request: HttpRequest, actor: Actor, namespace: str, name: str, rev: str) -> JsonResponse:
    _, files = _files_at(_repo(actor, namespace, name), rev)
    return JsonResponse(s.paths_info(files, request.POST.getlist("paths")), safe=False)


@hf_endpoint("GET")
def refs(request: HttpRequest, actor: Actor, namespace: str, name: str) -> JsonResponse:
    adapter = _repo(actor, namespace, name)
    if isinstance(adapter, BaseModel):
        return JsonResponse(s.base_model_refs(adapter))
    versions = list(adapter.versions.order_by("-number"))
    return JsonResponse(s.git_refs(adapter, head_version(adapter), versions))


@hf_endpoint("GET")
def commits_list(request: HttpRequest, actor: Actor, namespace: str, name: str, rev: str) -> JsonResponse:
    adapter = _repo(actor, namespace, name)
    if isinstance(adapter, BaseModel):
        _base_revision(adapter, rev)
        return json_list([s.base_model_commit(adapter)] if adapter.commit_id else [], link=None)
    version = find_version(adapter, rev)
    # A version's history is every version up to it: each one was published on top of the last.
    newest = version.number if version is not None else 0
    history = adapter.versions.filter(number__lte=newest).select_related("created_by").order_by("-number")
    page, link = paginated(request, history, offset=parse_cursor(request), page_size=TREE_PAGE_SIZE)
    return json_list([s.commit_entry(v) for v in page], link=link)


@hf_endpoint("GET")
def list_models(request: HttpRequest, actor: Actor) -> JsonResponse:
    params = request.GET
    query = search.ModelQuery(
        search=params.get("search", ""),
        author=params.get("author", ""),
        filters=tuple(params.getlist("filter")),
        pipeline_tag=params.get("pipeline_tag", ""),
        sort=params.get("sort", ""),
    )
    limit = params.get("limit", "")
    page_size = min(int(limit), search.PAGE_SIZE) if limit.isdigit() and int(limit) > 0 else search.PAGE_SIZE
    # Each adapter carries its head version's id, digest and time (search.HeadAnnotations).
    found: Any = search.search_models(actor, query)
    page, link = paginated(request, found, offset=parse_cursor(request), page_size=page_size)
    expand = set(params.getlist("expand"))
    full = flag(request, "full")
    files_by_version = _head_files(page) if full or "siblings" in expand else None
    items = [
        s.list_item(
            adapter,
            commit_id=adapter.head_digest[:40] if adapter.head_digest else None,
            last_modified=adapter.head_created_at,
            files=(
                None
                if files_by_version is None
                else (files_by_version.get(adapter.head_id, []) if adapter.head_id is not None else [])
            ),
            with_card=full or flag(request, "cardData") or "cardData" in expand,
        )
        for adapter in page
    ]
    return json_list(items, link=link)


def _head_files(adapters: list[Any]) -> dict[int, list[VersionFile]]:
    """The head versions' files of a page of adapters (annotated by search_models), in one query."""
    by_version: dict[int, list[VersionFile]] = {}
    for f in VersionFile.objects.filter(version_id__in=[a.head_id for a in adapters if a.head_id]).order_by("path"):
        by_version.setdefault(f.version_id, []).append(f)
    return by_version


@hf_endpoint("GET")
def whoami(request: HttpRequest, actor: Actor) -> JsonResponse:
    if not actor.is_authenticated:
        raise HfError("send a hub token (HF_TOKEN) to learn who you are", status=401)
    memberships = Membership.objects.filter(user=actor.user).select_related("namespace").order_by("namespace__name")
    return JsonResponse(s.whoami(actor.user, actor.token, list(memberships)))


@hf_endpoint("GET")
def agent_harnesses(request: HttpRequest, actor: Actor) -> JsonResponse:
    # huggingface_hub asks once per process (for its user-agent); nothing to detect here.
    return JsonResponse({"standardEnvVars": [], "harnesses": {}})


@hf_endpoint("GET", "HEAD", "POST")
def unsupported_repo(request: HttpRequest, actor: Actor, **kwargs: Any) -> HttpResponse:
    raise RepoNotFound("this hub serves adapters as model repositories named <namespace>/<name>")


# --- write ----------------------------------------------------------------------------------------


@hf_endpoint("POST")
def validate_yaml(request: HttpRequest, actor: Actor) -> JsonResponse:
    # The client reads this JSON before it looks at the status, so errors are JSON too.
    content = _json_body(request).get("content")
    errors = commits.validate_card(content) if isinstance(content, str) else []
    return JsonResponse({"errors": [{"message": e} for e in errors], "warnings": []}, status=400 if errors else 200)


@hf_endpoint("POST")
def create_repo(request: HttpRequest, actor: Actor) -> JsonResponse:
    body = _json_body(request)
    if body.get("type", "model") != "model":
        raise HfError(f"this hub holds model repositories only, not {body.get('type')!r}", status=400)
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise HfError("'name' is required", status=400)
    organization = body.get("organization") or None
    private = body.get("visibility") == "private" if "visibility" in body else bool(body.get("private"))
    result = commits.create_repo(actor=actor, name=name, organization=organization, private=private)
    url = absolute_url(request, result.adapter.full_name)
    if not result.created:
        # create_repo(exist_ok=True) reads `url` from this 409 too.
        message = f"You already created this model repo: {result.adapter.full_name}"
        return JsonResponse({"error": message, "url": url}, status=409)
    return JsonResponse({"url": url, "name": result.adapter.full_name, "id": str(result.adapter.pk)})


@hf_endpoint("PUT")
def repo_settings(request: HttpRequest, actor: Actor, namespace: str, name: str) -> JsonResponse:
    adapter = access_adapter(actor, namespace, name, write=True)
    body = _json_body(request)
    if body.get("gated") not in (None, False):
        raise HfError("gated repositories are not supported: use private visibility", status=400)
    visibility = body.get("visibility")
    if visibility not in (None, "public", "private"):
        raise HfError(f"visibility must be 'public' or 'private', not {visibility!r}", status=400)
    services.update_adapter(actor=actor, adapter=adapter, meta=services.AdapterMetadata(visibility=visibility))
    return JsonResponse({"private": adapter.is_private})


@hf_endpoint("POST")
def preupload(request: HttpRequest, actor: Actor, namespace: str, name: str, rev: str) -> JsonResponse:
    _refuse_pull_requests(request)
    access_adapter(actor, namespace, name, write=True)
    files = _json_body(request).get("files")
    if not isinstance(files, list):
        raise HfError("'files' must be a list", status=400)
    return JsonResponse({"files": commits.upload_modes(files)})


@hf_endpoint("POST")
def commit(request: HttpRequest, actor: Actor, namespace: str, name: str, rev: str) -> JsonResponse:
    _refuse_pull_requests(request)
    # Permissions are checked before the body is read, so a refused upload is not streamed in.
    adapter = access_adapter(actor, namespace, name, write=True)
    declared = request.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > commits.max_commit_bytes():
        raise HfError(f"the commit body is over {commits.max_commit_bytes()} bytes", status=413)
    with commits.read_commit(request) as parsed:
        result = commits.commit_files(actor=actor, adapter=adapter, revision=rev, commit=parsed)
    commit_id = result.version.commit_id
    return JsonResponse(
        {
            "success": True,
            "commitOid": commit_id,
            "commitUrl": absolute_url(request, f"{adapter.full_name}/commit/{commit_id}"),
            "pullRequestUrl": None,
            "adapterVersion": s.version_summary(result.version),
            "created": result.created,
        }
    )


def _refuse_pull_requests(request: HttpRequest) -> None:
    if flag(request, "create_pr"):
        raise HfError("pull requests are not supported: versions are published by committing to main", status=400)

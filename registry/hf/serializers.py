"""JSON payloads in the shapes huggingface_hub parses (ModelInfo, RepoFile/RepoFolder, GitRefs, ...).

Every file is described as an LFS object keyed by its sha256: that is how this hub stores it
(content-addressed), and it makes the tree, `siblings` and the download ETag agree on one id.
Nothing here advertises Xet (no `xetHash`), so clients never try it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, NotRequired, TypedDict

from registry.models import (
    PENDING_BASE_MODEL,
    Adapter,
    AdapterVersion,
    ApiToken,
    BaseModel,
    BaseModelFile,
    Membership,
    VersionFile,
)

LIBRARY = "peft"
# Base model of an adapter created by `create_repo` before its first commit says what it adapts
# (the model requires one). The colon cannot occur in a Hub model id, so it never names a real one.


class LfsInfo(TypedDict):
    oid: NotRequired[str]  # the tree's key
    sha256: NotRequired[str]  # siblings' key for the same value
    size: int
    pointerSize: int


class Sibling(TypedDict):
    rfilename: str
    size: NotRequired[int]
    blobId: NotRequired[str]
    lfs: NotRequired[LfsInfo]


class LastCommit(TypedDict):
    id: str
    title: str
    date: str


class TreeEntry(TypedDict):
    type: str  # "file" or "directory"
    path: str
    oid: str
    size: NotRequired[int]
    lfs: NotRequired[LfsInfo]
    lastCommit: NotRequired[LastCommit]


def hf_datetime(moment: datetime) -> str:
    """The Hub's timestamp format, which the client's parse_datetime requires (UTC, 'Z')."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def has_known_base(adapter: Adapter) -> bool:
    return adapter.base_model.name != PENDING_BASE_MODEL


def adapter_tags(adapter: Adapter) -> list[str]:
    """Hub-style tags: library, format, method, base model relations, task, license, user tags."""
    tags = [LIBRARY, "safetensors", adapter.method]
    if has_known_base(adapter):
        base = adapter.base_model.name
        # `base_model:adapter:<id>` is what list_models(filter=...) and the Hub's model tree use.
        tags += [f"base_model:adapter:{base}", f"base_model:{base}"]
    if adapter.task:
        tags.append(adapter.task)
    if adapter.license:
        tags.append(f"license:{adapter.license}")
    tags += [f"dataset:{name}" for name in adapter.datasets]
    tags += [tag.name for tag in adapter.tags.all()]
    return list(dict.fromkeys(tags))


def card_data(adapter: Adapter) -> dict[str, Any]:
    data: dict[str, Any] = {"library_name": LIBRARY, "tags": [t.name for t in adapter.tags.all()]}
    if has_known_base(adapter):
        data["base_model"] = adapter.base_model.name
    if adapter.license:
        data["license"] = adapter.license
    if adapter.task:
        data["pipeline_tag"] = adapter.task
    if adapter.datasets:
        data["datasets"] = adapter.datasets
    return data


def _lfs_pointer_size(sha256: str, size: int) -> int:
    # The size of the Git LFS pointer file that would stand for this blob in a Git repo.
    return len(f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n")


def sibling(f: VersionFile | BaseModelFile, *, blobs: bool) -> Sibling:
    entry: Sibling = {"rfilename": f.path}
    if blobs:
        entry["size"] = f.size
        entry["blobId"] = f.sha256
        entry["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": _lfs_pointer_size(f.sha256, f.size)}
    return entry


def version_summary(version: AdapterVersion) -> dict[str, Any]:
    """This hub's own names for a commit, kept next to the HF fields (ModelInfo keeps unknown keys)."""
    return {"number": version.number, "label": version.label, "yanked": version.yanked, "commit": version.commit_id}


def model_info(
    adapter: Adapter, version: AdapterVersion | None, files: Sequence[VersionFile], *, blobs: bool
) -> dict[str, Any]:
    """`GET /api/models/{repo}[/revision/{rev}]`. `sha` is None for a repo that has no version yet."""
    info: dict[str, Any] = list_item(adapter, version=version, files=files, blobs=blobs, with_card=True)
    info["disabled"] = False
    info["adapterVersion"] = version_summary(version) if version is not None else None
    return info


def list_item(
    adapter: Adapter,
    *,
    version: AdapterVersion | None = None,
    commit_id: str | None = None,
    last_modified: datetime | None = None,
    files: Sequence[VersionFile] | None = None,
    blobs: bool = False,
    with_card: bool = False,
) -> dict[str, Any]:
    """One model as `list_models` and `model_info` describe it; `id` is the only required key."""
    if version is not None:
        commit_id, last_modified = version.commit_id, version.created_at
    item: dict[str, Any] = {
        "_id": str(adapter.pk),
        "id": adapter.full_name,
        "modelId": adapter.full_name,
        "author": adapter.namespace.name,
        "sha": commit_id,
        "lastModified": hf_datetime(last_modified or adapter.updated_at),
        "createdAt": hf_datetime(adapter.created_at),
        "private": adapter.is_private,
        "gated": False,
        "downloads": adapter.downloads,
        "likes": 0,
        "library_name": LIBRARY,
        "pipeline_tag": adapter.task or None,
        "tags": adapter_tags(adapter),
    }
    if files is not None:
        item["siblings"] = [sibling(f, blobs=blobs) for f in files]
    if with_card:
        item["cardData"] = card_data(adapter)
    return item


def file_entry(f: VersionFile | BaseModelFile) -> TreeEntry:
    return {
        "type": "file",
        "path": f.path,
        "oid": f.sha256,
        "size": f.size,
        "lfs": {"oid": f.sha256, "size": f.size, "pointerSize": _lfs_pointer_size(f.sha256, f.size)},
    }


def folder_entry(path: str, contents: Iterable[VersionFile | BaseModelFile]) -> TreeEntry:
    # Stands in for a git tree id: it changes exactly when something below the folder changes.
    listing = "".join(f"{f.path}\t{f.sha256}\n" for f in sorted(contents, key=lambda f: f.path))
    return {"type": "directory", "path": path, "oid": hashlib.sha1(listing.encode(), usedforsecurity=False).hexdigest()}


def tree_entries(
    files: Sequence[VersionFile | BaseModelFile], *, folder: str, recursive: bool
) -> list[TreeEntry] | None:
    """The entries below `folder` ("" for the root), or None when no such folder exists.

    Non-recursive listings hold direct children only; recursive ones also list every sub-folder,
    as the Hub does (list_repo_files keeps the files).
    """
    prefix = f"{folder}/" if folder else ""
    below = [f for f in files if f.path.startswith(prefix)]
    if folder and not below:
        return None
    folders: dict[str, list[VersionFile | BaseModelFile]] = {}
    entries: list[TreeEntry] = []
    for f in below:
        parts = f.path[len(prefix) :].split("/")
        depth = len(parts) - 1 if recursive else min(len(parts) - 1, 1)
        for i in range(1, depth + 1):
            folders.setdefault(prefix + "/".join(parts[:i]), []).append(f)
        if recursive or len(parts) == 1:
            entries.append(file_entry(f))
    entries += [folder_entry(path, contents) for path, contents in folders.items()]
    return sorted(entries, key=lambda e: e["path"])


def paths_info(files: Sequence[VersionFile | BaseModelFile], paths: Iterable[str]) -> list[TreeEntry]:
    """`POST .../paths-info/{rev}`: an entry per requested path that exists (missing ones are left out)."""
    by_path = {f.path: f for f in files}
    entries: list[TreeEntry] = []
    for path in dict.fromkeys(p.strip("/") for p in paths):
        if path in by_path:
            entries.append(file_entry(by_path[path]))
        elif contents := [f for f in files if f.path.startswith(f"{path}/")]:
            entries.append(folder_entry(path, contents))
    return entries


def add_last_commits(
    entries: Sequence[TreeEntry], history: Sequence[AdapterVersion], files_by_version: dict[int, dict[str, str]]
) -> None:
    """Give each file entry the version that last changed it (`expand=true`), as a commit.

    `history` runs oldest first up to the listed version; a file was last changed by the oldest
    version of the unbroken run, ending at the listed one, in which it has its current content.
    """
    newest = history[-1]
    for entry in entries:
        if entry["type"] != "file":
            continue
        sha = files_by_version[newest.pk].get(entry["path"])
        introduced = newest
        for version in reversed(history[:-1]):
            if files_by_version.get(version.pk, {}).get(entry["path"]) != sha:
                break
            introduced = version
        entry["lastCommit"] = commit_ref(introduced)


def commit_title(version: AdapterVersion) -> str:
    title = f"Version {version.number}" + (f" ({version.label})" if version.label else "")
    return title + (" [yanked]" if version.yanked else "")


def commit_ref(version: AdapterVersion) -> LastCommit:
    return {"id": version.commit_id, "title": commit_title(version), "date": hf_datetime(version.created_at)}


def commit_entry(version: AdapterVersion) -> dict[str, Any]:
    """One item of `list_repo_commits`: a version seen as a commit."""
    author = version.created_by.get_username() if version.created_by is not None else "unknown"
    message = f"yanked: {version.yanked_reason}" if version.yanked else ""
    return {
        "id": version.commit_id,
        "title": commit_title(version),
        "message": message,
        "authors": [{"user": author}],
        "date": hf_datetime(version.created_at),
    }


def whoami(user: Any, token: ApiToken | None, memberships: Sequence[Membership]) -> dict[str, Any]:
    """`GET /api/whoami-v2`: the token's user, their organizations and the token's role."""
    return {
        "type": "user",
        "id": str(user.pk),
        "name": user.get_username(),
        "fullname": user.get_full_name() or user.get_username(),
        "email": user.email or None,
        "isPro": False,
        "orgs": [{"type": "org", "name": m.namespace.name, "roleInOrg": m.role} for m in memberships],
        "auth": {
            "type": "access_token",
            "accessToken": {"displayName": token.name, "role": token.scope} if token is not None else None,
        },
    }


def git_refs(adapter: Adapter, head: AdapterVersion | None, versions: Sequence[AdapterVersion]) -> dict[str, Any]:
    """`list_repo_refs`: `main`, and a tag per version number and per label (each one a revision)."""

    def ref(name: str, kind: str, version: AdapterVersion) -> dict[str, str]:
        return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": version.commit_id}

    tags = []
    for version in versions:
        tags.append(ref(str(version.number), "tags", version))
        if version.label:
            tags.append(ref(version.label, "tags", version))
    return {
        "branches": [ref("main", "heads", head)] if head is not None else [],
        "converts": [],
        "tags": tags,
        "pullRequests": [],
    }


# --- Base models (read-only repos) --------------------------------------------------------------------


def base_model_info(base: BaseModel, files: Sequence[BaseModelFile], *, blobs: bool) -> dict[str, Any]:
    """`model_info` of a base model the hub serves: one commit (its stored file set), no versions."""
    tags = ["transformers", "safetensors"] + ([base.architecture] if base.architecture else [])
    return {
        "_id": f"base-{base.pk}",
        "id": base.name,
        "modelId": base.name,
        "author": base.name.split("/", 1)[0],
        "sha": base.commit_id or None,
        "lastModified": hf_datetime(base.created_at),
        "createdAt": hf_datetime(base.created_at),
        "private": base.is_private,
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "library_name": "transformers",
        "tags": tags,
        "config": {"architectures": [base.architecture]} if base.architecture else {},
        "siblings": [sibling(f, blobs=blobs) for f in files],
        "cardData": {"library_name": "transformers", "tags": tags},
    }


def base_model_refs(base: BaseModel) -> dict[str, Any]:
    main = [{"name": "main", "ref": "refs/heads/main", "targetCommit": base.commit_id}] if base.commit_id else []
    return {"branches": main, "converts": [], "tags": [], "pullRequests": []}


def base_model_commit(base: BaseModel) -> dict[str, Any]:
    return {
        "id": base.commit_id,
        "title": f"Files of {base.name}",
        "message": "",
        "authors": [{"user": "hub"}],
        "date": hf_datetime(base.created_at),
    }

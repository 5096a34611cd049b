"""The write side: `create_repo`, `preupload` and NDJSON commits, each commit one new version.

An HF commit adds and deletes files relative to its parent; a version here is a complete file
set. So a commit is applied to the file set of `main`'s head and the result is published through
the push pipeline (`registry.push`), with the same validation as any push. Unchanged files are read back
from the blob store (adapters are small); an identical result is the existing version.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

import yaml
from django.conf import settings

from adaptercheck import (
    AdapterValidationError,
    normalize_filename,
)
from registry import push, services
from registry.access import Actor, access_namespace, require_write
from registry.blobs import get_blob_store
from registry.exceptions import InvalidRequest, NotAuthenticated, StateConflict, TooLarge
from registry.hf.errors import EntryNotFound, HfError, RevisionNotFound
from registry.hf.revisions import head_version, is_branch
from registry.models import PENDING_BASE_MODEL, Adapter, AdapterVersion, Method, VersionFile, Visibility

# Files up to this size stay in memory while a commit is assembled; larger ones go to disk.
_SPOOL_BYTES = 8 * 1024 * 1024


# --- create_repo ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedRepo:
    adapter: Adapter
    created: bool


def create_repo(*, actor: Actor, name: str, organization: str | None, private: bool | None) -> CreatedRepo:
    """An empty adapter `organization/name` (the caller's own namespace by default).

    The adapter model needs a base model and a method, which an HF repo only reveals with its
    first commit's adapter_config.json: until then it holds PENDING_BASE_MODEL (see adopt_config).
    An existing repo is returned with created=False (the client's exist_ok answer is a 409).
    """
    if not actor.is_authenticated or actor.user is None:
        raise NotAuthenticated("send a hub token with write scope (HF_TOKEN) to create a repo", code="auth_required")
    user = actor.user
    namespace = organization or user.get_username()
    if namespace == user.get_username():
        services.ensure_user_namespace(user)
    owner = access_namespace(actor, namespace)
    require_write(actor, owner)
    existing = Adapter.objects.filter(namespace=owner, name=name).first()
    if existing is not None:
        return CreatedRepo(existing, created=False)
    meta = services.AdapterMetadata(
        base_model=PENDING_BASE_MODEL,
        method=Method.LORA,
        visibility=Visibility.PRIVATE if private else Visibility.PUBLIC,
    )
    try:
        adapter = services.create_adapter(actor=actor, namespace=namespace, name=name, meta=meta)
    except StateConflict:  # created concurrently
        return CreatedRepo(Adapter.objects.get(namespace=owner, name=name), created=False)
    return CreatedRepo(adapter, created=True)


# --- preupload ----------------------------------------------------------------------------------------


def upload_modes(files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`regular` for every file: contents then travel inline in the commit, so clients never need
    LFS or Xet (with hf_xet installed, an `lfs` answer would send them to Xet, which we lack).

    No `oid` is given: this hub keeps sha256 digests, not the git blob sha1 the client compares,
    so unchanged files are re-sent and the identical result maps back to the existing version.
    """
    if len(files) > settings.MAX_FILES_PER_VERSION:
        raise TooLarge(
            f"a commit of {len(files)} files is refused: a version holds at most {settings.MAX_FILES_PER_VERSION}",
            code="too_many_files",
        )
    answers = []
    for entry in files:
        path = entry.get("path")
        if not isinstance(path, str):
            raise InvalidRequest("every preupload entry needs a 'path'", code="malformed_request")
        size = entry.get("size")
        if isinstance(size, int) and size > settings.MAX_FILE_SIZE:
            # Refused before the client builds a commit body around it.
            raise TooLarge(
                f"{path} is {size} bytes; at most {settings.MAX_FILE_SIZE} bytes are allowed per file",
                code="file_too_large",
                path=path,
            )
        answers.append({"path": path, "uploadMode": "regular", "shouldIgnore": False, "oid": None})
    return answers


# --- commit parsing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddFile:
    path: str
    stream: IO[bytes]
    sha256: str
    size: int


@dataclass(frozen=True)
class CopyBlob:
    """An `lfsFile` line: a file named by the sha256 of a blob this repo already holds (HfApi copies)."""

    path: str
    sha256: str
    size: int | None


@dataclass(frozen=True)
class Delete:
    path: str
    folder: bool


Operation = AddFile | CopyBlob | Delete


@dataclass
class ParsedCommit:
    summary: str = ""
    description: str = ""
    parent_commit: str | None = None
    operations: list[Operation] = field(default_factory=list)


def max_commit_bytes() -> int:
    """The largest commit body worth reading: a whole version, base64-encoded, plus JSON framing."""
    return _base64_size(settings.MAX_VERSION_SIZE) + 1024 * 1024


def _base64_size(raw: int) -> int:
    return 4 * math.ceil(raw / 3)


class LineReader(Protocol):
    """What read_commit needs of a request body (Django's HttpRequest is one)."""

    def readline(self, size: int = -1, /) -> bytes: ...


@contextmanager
def read_commit(stream: LineReader) -> Iterator[ParsedCommit]:
    """Parse an `application/x-ndjson` commit one line at a time; added files go to temp files.

    A line holds one whole base64 file (that is the protocol), so a line is capped at the
    largest allowed file. The temp files are closed when the context exits.
    """
    line_cap = _base64_size(settings.MAX_FILE_SIZE) + 64 * 1024
    commit = ParsedCommit()
    with ExitStack() as stack:
        seen_header = False
        while line := stream.readline(line_cap + 1):
            if len(line) > line_cap:
                raise TooLarge(
                    f"a commit line exceeds {line_cap} bytes: files are limited to {settings.MAX_FILE_SIZE} bytes",
                    code="file_too_large",
                )
            if line.isspace():  # not strip(): a line can be a whole file, not worth copying
                continue
            try:
                item = json.loads(line)
                key, value = item["key"], item["value"]
            except (ValueError, KeyError, TypeError):
                key, value = None, None
            if not isinstance(value, dict):
                raise InvalidRequest("the commit body must be NDJSON lines of {key, value}", code="malformed_request")
            if key == "header":
                seen_header = True
                commit.summary = str(value.get("summary") or "")
                commit.description = str(value.get("description") or "")
                commit.parent_commit = str(value.get("parentCommit") or "") or None
            elif key == "file":
                commit.operations.append(stack.enter_context(_closing_add(value)))
            elif key == "lfsFile":
                commit.operations.append(
                    CopyBlob(path=_path(value), sha256=str(value.get("oid", "")), size=value.get("size"))
                )
            elif key in ("deletedFile", "deletedFolder"):
                # A folder may be named with its trailing slash ("notes/").
                commit.operations.append(Delete(path=_path(value, folder=True), folder=key == "deletedFolder"))
            else:
                raise InvalidRequest(f"unsupported commit operation {key!r}", code="malformed_request")
        if not seen_header:
            raise InvalidRequest("the commit has no header line", code="malformed_request")
        yield commit


def _path(value: dict[str, Any], *, folder: bool = False) -> str:
    path = value.get("path")
    if not isinstance(path, str) or not path:
        raise InvalidRequest("a commit operation has no 'path'", code="malformed_request")
    try:
        return normalize_filename(path.rstrip("/") if folder else path)
    except AdapterValidationError as exc:
        raise InvalidRequest(exc.message, code=exc.code, path=path) from None


@contextmanager
def _closing_add(value: dict[str, Any]) -> Iterator[AddFile]:
    path = _path(value)
    if value.get("encoding", "base64") != "base64":
        raise InvalidRequest(f"{path}: only base64 file content is supported", code="malformed_request")
    try:
        data = base64.b64decode(value.get("content", ""), validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise InvalidRequest(f"{path}: the content is not valid base64", code="malformed_request", path=path) from None
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES, dir=settings.FILE_UPLOAD_TEMP_DIR)
    try:
        spool.write(data)
        spool.seek(0)
        yield AddFile(path=path, stream=spool, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    finally:
        spool.close()


# --- commit -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stored:
    sha256: str
    size: int


_Entry = _Stored | AddFile


class _HeadMoved(Exception):
    """Another commit published a version on main after this one read it: apply it again."""


# Concurrent commits to one repo each retry on the head the others made; this many are plenty.
_COMMIT_ATTEMPTS = 16


def commit_files(*, actor: Actor, adapter: Adapter, revision: str, commit: ParsedCommit) -> push.PushResult:
    """Apply a commit to `main` and publish the resulting file set as the next version.

    1. Only `main` takes commits: numbers, labels and commit ids name immutable versions.
    2. A `parentCommit` must be main's head, as on the Hub (412 otherwise), so a client that
       read an older state cannot silently undo a newer version.
    3. Apply the operations in order to the head's files; nothing changed returns the head.
    4. push_version validates and publishes (an empty repo from create_repo gets the base model
       and method the push resolves); a refused file raises, and nothing is created or changed.
    5. Concurrent commits apply in turn, each to the head the previous one made (as commits to a
       branch do): the version is committed only if main's head is still the one step 3 read,
       checked under the adapter's row lock; otherwise the commit is applied again to the new head.
    """
    if not is_branch(revision):
        raise RevisionNotFound(
            f"commits go to main: revision {revision!r} names an immutable version", code="immutable_revision"
        )
    require_write(actor, adapter.namespace)
    for _ in range(_COMMIT_ATTEMPTS):
        try:
            return _commit_once(actor, adapter, commit)
        except _HeadMoved:
            continue
    raise HfError("main kept moving while this commit was applied: retry", status=409, code="commit_conflict")


def _commit_once(actor: Actor, adapter: Adapter, commit: ParsedCommit) -> push.PushResult:
    head = head_version(adapter)
    if commit.parent_commit and (head is None or commit.parent_commit not in (head.commit_id, head.digest)):
        current = head.commit_id if head is not None else "nothing"
        raise HfError(
            f"parent commit {commit.parent_commit} is not the head of main ({current}): fetch and retry",
            status=412,
            code="parent_mismatch",
        )
    parent = {f.path: _Stored(f.sha256, f.size) for f in head.files.all()} if head is not None else {}
    files: dict[str, _Entry] = dict(parent)
    for op in commit.operations:
        _apply(adapter, files, op)
    if head is not None and {p: e.sha256 for p, e in files.items()} == {p: e.sha256 for p, e in parent.items()}:
        return push.PushResult(version=head, created=False)

    def on_head(version: AdapterVersion) -> None:
        # Runs under the adapter's row lock, in the transaction that commits `version`.
        if head is not None and version.number <= head.number:
            return  # an existing version with this file set: nothing is published
        now = version.adapter.versions.filter(yanked=False).exclude(pk=version.pk).order_by("-number").first()
        if (now.pk if now else None) != (head.pk if head else None):
            raise _HeadMoved()

    with ExitStack() as stack:
        incoming = [
            push.IncomingFile(path=path, stream=stack.enter_context(_open_entry(entry)), size=entry.size)
            for path, entry in sorted(files.items())
        ]
        return push.push_version(
            actor=actor, namespace=adapter.namespace.name, name=adapter.name, files=incoming, then=on_head
        )


def _apply(adapter: Adapter, files: dict[str, _Entry], op: Operation) -> None:
    if isinstance(op, AddFile):
        files[op.path] = op
    elif isinstance(op, CopyBlob):
        files[op.path] = _known_blob(adapter, op)
    elif op.folder:
        inside = [p for p in files if p.startswith(f"{op.path}/")]
        if not inside:
            raise EntryNotFound(f"cannot delete folder {op.path}: {adapter.full_name} has no such folder")
        for path in inside:
            del files[path]
    elif files.pop(op.path, None) is None:
        raise EntryNotFound(f"cannot delete {op.path}: {adapter.full_name} has no such file")


def _known_blob(adapter: Adapter, op: CopyBlob) -> _Stored:
    """A blob this repo already references. Any other sha256 is refused: accepting a bare digest
    would let anyone who learns it copy another repo's private file into theirs."""
    known = VersionFile.objects.filter(version__adapter=adapter, sha256=op.sha256).first()
    if known is None:
        raise InvalidRequest(
            f"{op.path}: LFS object {op.sha256} is not part of {adapter.full_name}; send the file inline "
            "(this hub answers uploadMode 'regular', so unmodified clients do)",
            code="lfs_not_supported",
            path=op.path,
        )
    if op.size is not None and op.size != known.size:
        raise InvalidRequest(
            f"{op.path}: LFS object {op.sha256} has {known.size} bytes, not {op.size}", code="size_mismatch"
        )
    return _Stored(known.sha256, known.size)


@contextmanager
def _open_entry(entry: _Entry) -> Iterator[IO[bytes]]:
    """A seekable stream of the entry's bytes; stored blobs are copied out of the blob store."""
    if isinstance(entry, AddFile):
        entry.stream.seek(0)
        yield entry.stream
        return
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES, dir=settings.FILE_UPLOAD_TEMP_DIR) as copy:
        with get_blob_store().open(entry.sha256) as blob:
            shutil.copyfileobj(blob, copy, length=1024 * 1024)
        copy.seek(0)
        yield copy


def front_matter(text: str) -> dict[str, Any] | None:
    """The YAML mapping between leading `---` lines; None without one. Raises ValueError if malformed."""
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    try:
        end = next(i for i, line in enumerate(lines[1:], start=1) if line.strip() == "---")
    except StopIteration:
        raise ValueError("the metadata block opened by '---' is never closed") from None
    try:
        data = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError as exc:
        raise ValueError(f"the metadata block is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("the metadata block must be a YAML mapping")
    return data


def validate_card(content: str) -> list[str]:
    """Errors in a README's metadata block (what `/api/validate-yaml` reports)."""
    try:
        front_matter(content)
    except ValueError as exc:
        return [str(exc)]
    return []

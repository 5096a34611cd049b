"""HubClient: the hub's REST API as Python calls returning typed objects."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import requests
from tqdm.auto import tqdm

from client import config, formatting, hf_cache, local_checks
from client.errors import (
    ChecksumMismatch,
    Conflict,
    ConnectionFailed,
    HubError,
    JobFailed,
    NotFound,
    TimedOut,
    ValidationError,
    error_from_response,
    scrubbed,
)
from client.transfer import CHUNK, BackgroundHash, FileSlice, hash_prefix, locked, place, sha256_file
from client.types import (
    AdapterInfo,
    AdapterSummary,
    CreatedToken,
    Evaluation,
    FileEntry,
    Job,
    Member,
    Organization,
    PulledAdapter,
    PushResult,
    Score,
    ScoreReport,
    Token,
    User,
    Version,
)
from client.version import VERSION

# Completing a push makes the hub read every uploaded byte back (to verify its sha256) and copy
# it into place: minutes for gigabytes on a slow store.
COMPLETE_TIMEOUT = 3600
PART_ATTEMPTS = 4
_REDIRECTS = (301, 302, 303, 307, 308)
# Revisions under which the hub serves its latest non-yanked version (huggingface_hub's `main`).
_HEAD_REFS = (None, "latest")


def parse_ref(ref: str) -> tuple[str, str, str | None]:
    """`ns/name[:version]` -> (ns, name, version or None); version is a number, a label or latest."""
    name_part, _, version = ref.partition(":")
    namespace, _, name = name_part.partition("/")
    if not namespace or not name or "/" in name:
        raise ValueError(f"{ref!r} is not an adapter reference: use ns/name or ns/name:version")
    return namespace, name, version or None


class _Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bytes = 0
        self.parts = 0

    def add(self, size: int) -> None:
        with self.lock:
            self.bytes += size
            self.parts += 1


class _UrlExpired(Exception):
    """A presigned URL was refused (expired): ask the hub for fresh ones."""


@dataclass(frozen=True)
class _BlobSlot:
    """Where a downloaded blob lands (`final`), where its bytes gather meanwhile (`partial`, resumed
    from), and the lock that keeps two downloads of it apart."""

    final: Path
    partial: Path
    lock: Path
    # ahub's own cache is content-addressed and never edited: its blobs are made read-only.
    readonly: bool = True


def _holds(path: Path, size: int) -> bool:
    return path.is_file() and path.stat().st_size == size


class HubClient:
    """A client of one hub.

    Args:
        url: the hub, e.g. http://127.0.0.1:8000 (default: HUB_URL, then `ahub login`'s file).
        token: an API token (default: HUB_TOKEN, then `ahub login`'s file); reads of public
            adapters need none.
        cache_dir: where pulled blobs live, by sha256 (default: HUB_CACHE or ~/.cache/adapter-hub).
        progress: show progress bars (default: when stderr is a terminal).
        workers: parts sent at once by push.
        timeout: seconds to wait for the hub to answer (transfers have their own limits).
        session: a requests.Session to send everything through (tests count requests with it).
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        progress: bool | None = None,
        workers: int = 4,
        timeout: float = 60.0,
        session: requests.Session | None = None,
    ) -> None:
        self.url, self.token = config.resolve(url, token)
        self.cache_dir = config.cache_dir(cache_dir)
        self.progress = progress
        self.workers = max(1, workers)
        self.timeout = timeout
        self.session = session or requests.Session()
        agent = self.session.headers.get("User-Agent", "")
        if isinstance(agent, str) and agent.startswith("python-requests"):
            self.session.headers["User-Agent"] = f"ahub/{_version()} {agent}"

    def __repr__(self) -> str:
        return f"HubClient({self.url!r}, token={'set' if self.token else 'none'})"

    # --- HTTP ------------------------------------------------------------------------------------

    def _absolute(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.url}/{path.lstrip('/')}"

    def _auth(self) -> dict[str, str]:
        # Sent to the hub only, never to the storage URLs it redirects to.
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _request(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> requests.Response:
        """A request to the hub (path relative to it, or absolute); raises the HubError of a
        non-2xx/3xx answer."""
        headers = {**(self._auth() if auth else {}), **kwargs.pop("headers", {})}
        kwargs.setdefault("timeout", self.timeout)
        try:
            response = self.session.request(method, self._absolute(path), headers=headers, **kwargs)
        except requests.Timeout:
            raise ConnectionFailed(f"the hub at {self.url} did not answer in time", code="timeout") from None
        except requests.RequestException as exc:
            raise ConnectionFailed(
                f"cannot reach the hub at {self.url}: {scrubbed(exc)}", code="connection_failed"
            ) from None
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    def _pages(self, path: str, params: dict[str, Any], limit: int | None) -> list[dict[str, Any]]:
        """Results of a paginated list, following `next` until `limit` items (None: all)."""
        found: list[dict[str, Any]] = []
        params = {k: v for k, v in params.items() if v not in (None, "")}
        params["page_size"] = min(limit, 100) if limit else 100
        url: str | None = path
        while url is not None and (limit is None or len(found) < limit):
            body = self._json("GET", url, params=params)
            if isinstance(body, list):
                found.extend(body)
                break
            found.extend(body.get("results", []))
            url, params = body.get("next"), {}
        return found[:limit] if limit else found

    def _show(self, progress: bool | None) -> bool:
        if progress is not None:
            return progress
        if self.progress is not None:
            return self.progress
        return sys.stderr.isatty()

    # --- Account ---------------------------------------------------------------------------------

    def whoami(self) -> User:
        return User.from_json(self._json("GET", "/api/v1/whoami/"))

    def tokens(self) -> list[Token]:
        return [Token.from_json(t) for t in self._pages("/api/v1/tokens/", {}, None)]

    def create_token(
        self, name: str, *, scope: str = "read", namespace: str | None = None, expires_at: str | None = None
    ) -> CreatedToken:
        """A new token; its secret (`.token`) is shown this once. Needs a session or an admin token."""
        body = {"name": name, "scope": scope, "namespace": namespace, "expires_at": expires_at}
        return CreatedToken.from_json(
            self._json("POST", "/api/v1/tokens/", json={k: v for k, v in body.items() if v is not None})
        )

    def revoke_token(self, token_id: int) -> None:
        self._request("DELETE", f"/api/v1/tokens/{int(token_id)}/")

    # --- Organizations ---------------------------------------------------------------------------

    def create_organization(self, name: str, *, display_name: str = "") -> Organization:
        """A new organization (a namespace adapters can be pushed to); you become its owner."""
        body = {"name": name, "display_name": display_name}
        return Organization.from_json(self._json("POST", "/api/v1/orgs/", json=body))

    def members(self, org: str) -> list[Member]:
        """An organization's members and their roles (owner, writer, reader), by user name."""
        return [Member.from_json(m) for m in self._pages(f"/api/v1/orgs/{_segment(org)}/members/", {}, None)]

    def set_member(self, org: str, user: str, role: str = "reader") -> Member:
        """Add a user to an organization, or change their role: `owner` (manages members),
        `writer` (pushes, composes) or `reader` (sees private adapters). Owners only."""
        body = {"user": user, "role": role}
        return Member.from_json(self._json("POST", f"/api/v1/orgs/{_segment(org)}/members/", json=body))

    def remove_member(self, org: str, user: str) -> None:
        """Take a user out of an organization (its last owner cannot leave). Owners only."""
        self._request("POST", f"/api/v1/orgs/{_segment(org)}/members/", json={"user": user, "role": None})

    # --- Catalog ---------------------------------------------------------------------------------

    def search(
        self,
        query: str = "",
        *,
        base_model: str | None = None,
        method: str | None = None,
        task: str | None = None,
        tag: str | None = None,
        namespace: str | None = None,
        sort: str | None = None,
        limit: int | None = 20,
    ) -> list[AdapterSummary]:
        params = {
            "q": query, "base_model": base_model, "method": method, "task": task, "tag": tag,
            "namespace": namespace, "sort": sort,
        }  # fmt: skip
        return [AdapterSummary.from_json(a) for a in self._pages("/api/v1/adapters/", params, limit)]

    def info(self, repo: str) -> AdapterInfo:
        """An adapter, its model card and its versions (newest first, yanked ones included and marked)."""
        namespace, name, _ = parse_ref(repo)
        data = self._json("GET", f"/api/v1/adapters/{namespace}/{name}/")
        return AdapterInfo.from_json(data, versions=self.versions(f"{namespace}/{name}", include_yanked=True))

    def versions(self, repo: str, *, include_yanked: bool = False) -> list[Version]:
        namespace, name, _ = parse_ref(repo)
        params = {"include_yanked": "1" if include_yanked else None}
        return [
            Version.from_json(v) for v in self._pages(f"/api/v1/adapters/{namespace}/{name}/versions/", params, None)
        ]

    def version(self, repo: str, version: str | int | None = None) -> Version:
        """One version, by number, label or `latest` (default: the reference's, else latest)."""
        return Version.from_json(self._json("GET", self._version_path(repo, version)))

    def yank(self, repo: str, version: str | int | None = None, *, reason: str = "", restore: bool = False) -> Version:
        """Yank a version (kept and still pullable by number, but no longer `latest` nor listed), or
        restore a yanked one. Needs write access to the namespace."""
        body = {"yanked": not restore, "reason": reason}
        return Version.from_json(self._json("POST", self._version_path(repo, version) + "yank/", json=body))

    def set_visibility(self, repo: str, visibility: str) -> AdapterInfo:
        """Make an adapter `public` or `private` (visible to its namespace's members only)."""
        namespace, name, _ = parse_ref(repo)
        data = self._json("PATCH", f"/api/v1/adapters/{namespace}/{name}/", json={"visibility": visibility})
        return AdapterInfo.from_json(data)

    # --- Push ------------------------------------------------------------------------------------

    def push(
        self,
        folder: str | os.PathLike[str],
        repo: str,
        *,
        label: str | None = None,
        base_model: str | None = None,
        method: str | None = None,
        task: str | None = None,
        tags: Sequence[str] | None = None,
        license: str | None = None,
        visibility: str | None = None,
        description: str | None = None,
        validate: bool = True,
        progress: bool | None = None,
    ) -> PushResult:
        """Push a folder (what PEFT's save_pretrained wrote) as the next version of `repo`.

        1. Validate it with the hub's own checks; nothing is sent if they refuse.
        2. Hash the files and announce them: the hub answers which it holds already (skipped)
           and where each missing part goes (a presigned S3 URL, or the hub itself).
        3. Send the missing parts, `workers` at a time, with a progress bar per file.
        4. Complete: the hub reads the bytes back, checks every sha256, validates again and
           publishes. Re-running an interrupted push resumes with the parts the hub lacks.
        Hidden files and folders (a name starting with '.') are not pushed.
        """
        namespace, name, ref = parse_ref(repo)
        if ref is not None:
            raise ValueError("push to ns/name: the hub numbers versions itself (use label= to name one)")
        root = Path(folder)
        if not root.is_dir():
            raise ValidationError(f"{root} is not a folder", code="not_a_folder")
        files = _folder_files(root)
        show = self._show(progress)
        timings: dict[str, float] = {}
        started = time.perf_counter()
        # Hashing runs beside the local checks: both read every byte, and hashlib and numpy
        # release the GIL, so the two passes overlap (the second one reads from the page cache).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ahub-hash") as hasher:
            hashing = hasher.submit(self._hash_files, files, show)
            try:
                if validate:
                    self._check_locally(files, namespace, name, base_model=base_model, method=method)
            except BaseException:
                hashing.cancel()
                raise
            hashes = hashing.result()
        timings["check"] = time.perf_counter() - started
        body: dict[str, Any] = {
            "adapter": f"{namespace}/{name}",
            "files": [{"path": p, "size": files[p].stat().st_size, "sha256": hashes[p]} for p in sorted(files)],
        }
        metadata = {
            "label": label, "base_model": base_model, "method": method, "task": task,
            "tags": list(tags) if tags is not None else None, "license": license, "visibility": visibility,
            "description": description,
        }  # fmt: skip
        body.update({k: v for k, v in metadata.items() if v is not None})
        plan = self._json("POST", "/api/v1/uploads/", json=body)
        skipped = [f["path"] for f in plan["files"] if f["stored"]]
        stats = _Stats()
        timings["upload"] = timings["complete"] = 0.0
        for attempt in range(3):
            try:
                started = time.perf_counter()
                self._send_parts(plan, files, hashes, stats, show)
                timings["upload"] += time.perf_counter() - started
                started = time.perf_counter()
                response = self._request("POST", plan["complete_url"], timeout=(self.timeout, COMPLETE_TIMEOUT))
                timings["complete"] += time.perf_counter() - started
                break
            except _UrlExpired:
                if attempt == 2:
                    raise HubError(
                        "the storage keeps refusing the hub's presigned URLs (is the hub's clock right?)",
                        code="url_refused",
                    ) from None
            except Conflict as exc:
                if exc.code == "upload_in_progress":
                    version = self._await_completion(plan["id"])
                    return PushResult(version, False, stats.bytes, stats.parts, skipped, timings)
                # Parts lost, or a blob the plan counted on left the store: plan again, resend.
                if exc.code not in ("upload_incomplete", "blob_missing") or attempt == 2:
                    raise
            plan = self._json("POST", "/api/v1/uploads/", json=body)
        version = Version.from_json(response.json())
        return PushResult(version, response.status_code == 201, stats.bytes, stats.parts, skipped, timings)

    def _check_locally(
        self, files: dict[str, Path], namespace: str, name: str, *, base_model: str | None, method: str | None
    ) -> None:
        existing = None
        try:
            adapter = self._json("GET", f"/api/v1/adapters/{namespace}/{name}/")
            existing = local_checks.ExistingAdapter(
                full_name=adapter["id"], base_model=adapter["base_model"], method=adapter["method"]
            )
        except NotFound:
            pass  # a first push creates it

        def manifest_of(base: str) -> local_checks.BaseModelLookup:
            try:
                found = self._json("GET", f"/api/v1/base-models/{base}/")
            except NotFound as exc:
                return local_checks.BaseModelLookup(
                    found=False, unregistered_allowed=bool(exc.details.get("unregistered_allowed"))
                )
            return local_checks.BaseModelLookup(found=True, manifest=dict(found.get("manifest") or {}))

        def manifests() -> Mapping[str, Mapping[str, Any]]:
            listed = self._pages("/api/v1/base-models/", {}, None)
            return {b["name"]: b.get("manifest") or {} for b in listed if b.get("registered", True)}

        local_checks.check_adapter(
            files,
            existing=existing,
            base_model=base_model,
            method=method,
            manifest_of=manifest_of,
            manifests=manifests,
        )

    def _hash_files(self, files: dict[str, Path], show: bool) -> dict[str, str]:
        total = sum(p.stat().st_size for p in files.values())
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="hashing", disable=not show) as bar:
            return {path: sha256_file(local, on_bytes=bar.update) for path, local in sorted(files.items())}

    def _send_parts(
        self, plan: dict[str, Any], files: dict[str, Path], hashes: dict[str, str], stats: _Stats, show: bool
    ) -> None:
        path_of = {sha: path for path, sha in sorted(hashes.items(), reverse=True)}
        jobs: list[tuple[dict[str, Any], Path, int, Any]] = []
        bars = []
        for upload in plan["uploads"]:
            if not upload["parts"]:
                continue
            path = path_of[upload["sha256"]]
            pending = sum(part["size"] for part in upload["parts"])
            bar = tqdm(
                total=upload["size"], initial=upload["size"] - pending, unit="B", unit_scale=True,
                unit_divisor=1024, desc=path, disable=not show,
            )  # fmt: skip
            bars.append(bar)
            for part in upload["parts"]:
                offset = (part["number"] - 1) * upload["part_size"]
                jobs.append((part, files[path], offset, bar))
        if not jobs:
            return
        try:
            with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="ahub-part") as pool:
                futures: list[Future[None]] = [pool.submit(self._put_part, *job, stats) for job in jobs]
                try:
                    for future in as_completed(futures):
                        future.result()
                except BaseException:
                    # Parts in flight finish (and count for a resume); queued ones are dropped.
                    for future in futures:
                        future.cancel()
                    raise
        finally:
            for bar in bars:
                bar.close()

    def _put_part(self, part: dict[str, Any], local: Path, offset: int, bar: Any, stats: _Stats) -> None:
        url = part["url"]
        to_hub = not url.startswith(("http://", "https://"))
        headers = {**self._auth(), "Content-Type": "application/octet-stream"} if to_hub else {}
        failure: object = None
        for attempt in range(PART_ATTEMPTS):
            body = FileSlice(local, offset, part["size"], on_bytes=bar.update)
            try:
                response = self.session.request(
                    "PUT", self._absolute(url), data=body, headers=headers, timeout=(self.timeout, 600)
                )
            except requests.RequestException as exc:  # a dropped connection, a timeout: try again
                failure = exc
            else:
                response.close()
                if response.status_code < 300:
                    stats.add(part["size"])
                    return
                if response.status_code == 403 and not to_hub:
                    bar.update(-body.sent)
                    raise _UrlExpired()
                if response.status_code < 500:
                    raise error_from_response(response, what="the hub" if to_hub else "the storage")
                failure = f"{response.status_code} {response.reason}"
            bar.update(-body.sent)
            time.sleep(0.5 * 2**attempt)
        raise ConnectionFailed(
            f"part {part['number']} of {local} could not be sent after {PART_ATTEMPTS} tries: {scrubbed(failure)}",
            code="upload_failed",
        )

    def _await_completion(self, upload_id: str) -> Version:
        """Another request is completing the same upload (a retried push): wait for its outcome."""
        deadline = time.monotonic() + COMPLETE_TIMEOUT
        while time.monotonic() < deadline:
            state = self._json("GET", f"/api/v1/uploads/{upload_id}/")
            if state["status"] == "completed" and state["result"]:
                result = state["result"]
                return self.version(result["adapter"], result["version"])
            if state["status"] == "open":  # the other completion gave up on a transient error
                response = self._request("POST", state["complete_url"], timeout=(self.timeout, COMPLETE_TIMEOUT))
                return Version.from_json(response.json())
            if state["status"] != "completing":
                error = state.get("error") or {}
                raise HubError(
                    error.get("message", f"upload {upload_id} ended {state['status']}"),
                    code=error.get("code", "upload_failed"),
                )
            time.sleep(1.0)
        raise HubError(f"upload {upload_id} is still completing", code="timeout")

    # --- Pull ------------------------------------------------------------------------------------

    def pull(
        self,
        repo: str,
        version: str | int | None = None,
        dest: str | os.PathLike[str] | None = None,
        *,
        progress: bool | None = None,
    ) -> PulledAdapter:
        """Download a version (default: the reference's, else the latest) and return its folder.

        Files land in the cache by sha256 (shared by every adapter holding them), each verified
        byte for byte; an interrupted download resumes where it stopped (HTTP Range). The
        folder is <cache>/adapters/<ns>/<name>/<version>/ (hard links into the cache), or a copy
        in `dest`. `PeftModel.from_pretrained(base, result.path)` loads it as it is.
        """
        info = self.version(repo, version)
        show = self._show(progress)
        namespace, name, _ = parse_ref(info.adapter)
        folder = Path(dest) if dest is not None else self.cache_dir / "adapters" / namespace / name / str(info.version)
        placed: dict[str, Path] = {}
        downloaded = 0
        for entry in info.files:
            relative = _safe_relative(entry.path)
            blob, count = self._fetch(entry, show)
            downloaded += count
            target = folder / relative
            place(blob, target, link=dest is None)
            placed[entry.path] = target
        return PulledAdapter(
            path=folder, adapter=info.adapter, version=info.version, files=placed, bytes_downloaded=downloaded
        )

    def pull_to_hf_cache(
        self,
        repo: str,
        version: str | int | None = None,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        progress: bool | None = None,
    ) -> PulledAdapter:
        """Download a version into a Hugging Face cache (default: huggingface_hub's, from HF_HUB_CACHE
        or HF_HOME), laid out as huggingface_hub lays out what it downloads from this hub, so that
        `hf_hub_download`, `snapshot_download`, transformers and PEFT pointed at this hub
        (HF_ENDPOINT) find every file there and download none again, offline too.

        1. Resolve the version: its commit id names the snapshot, each file's sha256 its blob (what
           the hub's HF routes answer as `X-Repo-Commit` and `ETag`).
        2. Each blob is kept if the cache holds it already (another version of the adapter may share
           it), else linked from ahub's own cache, else downloaded there and verified as `pull` does.
        3. Link snapshots/<commit>/<path> to the blobs, write the commit's file listing, and point the
           refs at the commit: its number, its label, and `main` when the latest version was asked for.
        Returns the snapshot folder (`path`), which PeftModel.from_pretrained(base, path) loads too.
        """
        _, _, ref = parse_ref(repo)
        requested = str(version) if version is not None else ref
        info = self.version(repo, version)
        commit = info.commit_id
        if not hf_cache.COMMIT_ID.fullmatch(commit):
            raise HubError(f"the hub gave {info.ref} no commit id (digest {info.digest!r})", code="no_commit_id")
        cache = hf_cache.HfCacheRepo(hf_cache.cache_dir(cache_dir), info.adapter)
        cache.tag()
        show = self._show(progress)
        placed: dict[str, Path] = {}
        downloaded = 0
        for entry in info.files:
            relative = _safe_relative(entry.path)
            blob, count = self._hf_blob(cache, entry, show)
            downloaded += count
            placed[entry.path] = cache.link(commit, relative, blob)
        cache.write_tree(commit, info.files)
        # Refs last: a revision never names a snapshot that is still being filled.
        names = [str(info.version), *([info.label] if info.label else [])]
        if requested in _HEAD_REFS and not info.yanked:
            names.append("main")
        refs = [revision for revision in map(hf_cache.ref_name, names) if revision is not None]
        for revision in refs:
            cache.set_ref(revision, commit)
        return PulledAdapter(
            path=cache.snapshot(commit),
            adapter=info.adapter,
            version=info.version,
            files=placed,
            bytes_downloaded=downloaded,
            commit_id=commit,
            refs=refs,
        )

    def _hf_blob(self, cache: hf_cache.HfCacheRepo, entry: FileEntry, show: bool) -> tuple[Path, int]:
        """A file's blob in a Hugging Face cache: there already, linked from ahub's cache, or downloaded."""
        target = cache.blob(entry.sha256)
        if _holds(target, entry.size):
            return target, 0
        own = self.cache_dir / "blobs" / entry.sha256
        if _holds(own, entry.size):
            place(own, target, link=True)  # a hard link where both caches share a filesystem
            return target, 0
        slot = _BlobSlot(
            final=target, partial=cache.incomplete(entry.sha256), lock=cache.lock(entry.sha256), readonly=False
        )
        return self._fetch(entry, show, slot)

    def _fetch(self, entry: FileEntry, show: bool, slot: _BlobSlot | None = None) -> tuple[Path, int]:
        """The cached blob of a file, downloading (or resuming) it first; returns it and the
        number of bytes downloaded. `slot` says where it goes (default: ahub's cache, by sha256)."""
        if slot is None:
            blobs = self.cache_dir / "blobs"
            slot = _BlobSlot(
                final=blobs / entry.sha256,
                partial=blobs / f"{entry.sha256}.partial",
                lock=blobs / f"{entry.sha256}.lock",
            )
        final = slot.final
        if _holds(final, entry.size):
            return final, 0
        final.parent.mkdir(parents=True, exist_ok=True)
        with locked(slot.lock):
            if _holds(final, entry.size):
                return final, 0  # another process fetched it while we waited
            partial = slot.partial
            downloaded = 0
            for _ in range(2):
                start = partial.stat().st_size if partial.is_file() else 0
                if start > entry.size:
                    partial.unlink()
                    start = 0
                with tqdm(
                    total=entry.size, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=entry.path, disable=not show,
                ) as bar:  # fmt: skip
                    digest, resumed_from, written = self._download(entry, partial, start, bar)
                downloaded += written
                size = partial.stat().st_size
                if size == entry.size and digest.hexdigest() == entry.sha256:
                    if slot.readonly:
                        os.chmod(partial, 0o444)  # the cache is content-addressed: never edit a blob
                    os.replace(partial, final)
                    return final, downloaded
                partial.unlink(missing_ok=True)
                if resumed_from == 0:
                    break
                # The bytes kept from an earlier try may be what was wrong: once more from zero.
            raise ChecksumMismatch(
                f"{entry.path}: the downloaded bytes do not have sha256 {entry.sha256}; nothing was kept",
                code="checksum_mismatch",
            )

    def _download(self, entry: FileEntry, partial: Path, start: int, bar: Any) -> tuple[Any, int, int]:
        """Append the rest of the file to `partial` from byte `start`, hashing everything.
        Returns the digest, the offset actually resumed from, and the bytes written."""
        ranged = {"Range": f"bytes={start}-"} if start else {}
        if start >= entry.size:
            return hash_prefix(partial, start), start, 0
        # The Range also goes to the hub: a resumed download is not counted as a new one.
        response = self._request("GET", entry.url, headers=ranged, allow_redirects=False, stream=True)
        try:
            if response.status_code in _REDIRECTS:
                location = response.headers["Location"]
                response.close()
                try:
                    response = self.session.request(
                        "GET", location, headers=ranged, stream=True, timeout=(self.timeout, 300)
                    )
                except requests.RequestException as exc:
                    raise ConnectionFailed(f"cannot download {entry.path} from the storage: {scrubbed(exc)}") from None
                if response.status_code >= 400:
                    raise error_from_response(response, what="the storage")
            if start and response.status_code != 206:
                start = 0  # the server ignored the range: the body is the whole file
                bar.reset(total=entry.size)
            digest = hash_prefix(partial, start) if start else hashlib.sha256()
            written = 0
            with open(partial, "ab" if start else "wb") as out, BackgroundHash(digest) as hashing:
                try:
                    for chunk in response.iter_content(CHUNK):
                        out.write(chunk)
                        hashing.update(chunk)
                        written += len(chunk)
                        bar.update(len(chunk))
                except requests.RequestException as exc:
                    raise ConnectionFailed(
                        f"the download of {entry.path} broke off after {start + written} bytes ({scrubbed(exc)}); "
                        "pull again to resume",
                        code="download_interrupted",
                    ) from None
            return digest, start, written
        finally:
            response.close()

    # --- Compose and evaluate --------------------------------------------------------------------

    def load(self, base_model: Any, repo: str, version: str | int | None = None) -> Any:
        """`base_model` (a transformers model) with the adapter applied, in one call: `pull`, then
        PEFT's `PeftModel.from_pretrained` for a plain adapter; for a hybrid, each weight part merged
        into the base in the order of its hybrid.json, then the prompt part, if any, wrapped on top.
        Needs `peft` on this machine (the client itself does not).

        The same steps in plain PEFT, for a hybrid pulled into `folder`:
            for part in weight_parts:   # hybrid.json's order, without the prompt part
                model = PeftModel.from_pretrained(model, folder, subfolder=part).merge_and_unload()
            model = PeftModel.from_pretrained(model, folder, subfolder="prompt")
        """
        from peft import PeftModel  # the user's own; loading a model needs it anyway

        folder = self.pull(repo, version).path
        hybrid = folder / "hybrid.json"
        if not hybrid.is_file():
            return PeftModel.from_pretrained(base_model, str(folder))
        model = base_model
        parts = [part["path"] for part in json.loads(hybrid.read_text())["parts"]]
        for index, part in enumerate(parts):
            config = json.loads((folder / part / "adapter_config.json").read_text())
            loaded = PeftModel.from_pretrained(model, str(folder / part))
            is_prompt = config.get("peft_type") in ("PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING")
            if is_prompt and index != len(parts) - 1:
                raise ValidationError(f"{repo}: the prompt part {part!r} is not last", code="bad_hybrid")
            model = loaded if is_prompt else loaded.merge_and_unload()
        return model

    def compose(
        self,
        recipe: str | Mapping[str, Any] | Iterable[Any],
        into: str | None = None,
        *,
        method: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        description: str = "",
        force: bool = False,
    ) -> Job:
        """Ask the hub to compose adapters into a new version of `into`; returns the queued job
        (or the earlier job of an identical recipe, unless force).

        `recipe` is an expression (`"0.7*ns/a:3 + 0.5*ns/b - 0.3*ns/c"`), a list of
        (ref, weight) pairs or {"adapter", "version", "weight"} dicts, or a whole request body.
        """
        if isinstance(recipe, str):
            body: dict[str, Any] = {"expression": recipe}
        elif isinstance(recipe, Mapping):
            body = dict(recipe)
        else:
            body = {"inputs": [_input_of(item) for item in recipe], "method": method or "linear"}
        if method is not None:
            body["method"] = method
        if into is not None:
            body["into"] = into
        if "into" not in body:
            raise ValueError("say which adapter the composition goes into: into='ns/name'")
        if parameters:
            body["parameters"] = {**body.get("parameters", {}), **parameters}
        if description:
            body["description"] = description
        if force:
            body["force"] = True
        return Job.from_json(self._json("POST", "/api/v1/compositions/", json=body))

    def job(self, job_id: str | Job) -> Job:
        ident = job_id.id if isinstance(job_id, Job) else str(job_id)
        return Job.from_json(self._json("GET", f"/api/v1/jobs/{ident}/"))

    def jobs(self, *, status: str | None = None, limit: int | None = 20) -> list[Job]:
        return [Job.from_json(j) for j in self._pages("/api/v1/jobs/", {"status": status}, limit)]

    def wait(
        self, job: str | Job, *, timeout: float | None = None, interval: float = 1.0, progress: bool | None = None
    ) -> Job:
        """Poll a job until it finishes; returns it when it succeeded, raises JobFailed when not."""
        current = job if isinstance(job, Job) else self.job(job)
        deadline = None if timeout is None else time.monotonic() + timeout
        with tqdm(total=100, desc=f"job {current.id[:8]}", unit="%", disable=not self._show(progress)) as bar:
            while True:
                bar.update(max(0, current.progress - bar.n))
                if current.finished:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimedOut(f"job {current.id} is still {current.status} after {formatting.duration(timeout)}")
                time.sleep(interval)
                current = self.job(current.id)
        if current.status == "failed":
            raise JobFailed(current)
        return current

    def evaluate(
        self, repo: str, version: str | int | None = None, *, suites: Sequence[str] | None = None, force: bool = False
    ) -> list[Evaluation]:
        """Queue an evaluation of a version on suites of its base model (default: the default
        suites); a suite already scored is not run again unless force."""
        body: dict[str, Any] = {"suites": list(suites or []), "force": force}
        data = self._json("POST", f"{self._version_path(repo, version)}evaluations/", json=body)
        return [Evaluation.from_json(e) for e in (data if isinstance(data, list) else data.get("results", []))]

    def evaluations(self, repo: str, version: str | int | None = None) -> list[Evaluation]:
        return [
            Evaluation.from_json(e) for e in self._pages(f"{self._version_path(repo, version)}evaluations/", {}, None)
        ]

    def scores(self, repo: str, version: str | int | None = None) -> list[Score]:
        """The newest score of a version on each suite."""
        data = self._json("GET", f"{self._version_path(repo, version)}scores/")
        if isinstance(data, dict):
            data = data.get("scores", data.get("results", []))
        return [Score.from_json(s) for s in data]

    def score_report(self, repo: str, version: str | int | None = None) -> ScoreReport:
        """A version's newest score per suite, with the validation gate's verdict on it
        (`validation`: none, pending, validated or rejected; `validation_reasons`, per suite)."""
        return ScoreReport.from_json(self._json("GET", f"{self._version_path(repo, version)}scores/"))

    def wait_evaluations(
        self,
        repo: str,
        version: str | int | None = None,
        *,
        ids: Collection[str] | None = None,
        timeout: float | None = None,
        interval: float = 2.0,
    ) -> list[Evaluation]:
        """Poll a version's evaluation requests until those in `ids` (default: every one) have
        finished; returns them, failed ones included (see `.status` and `.error`). Raises TimedOut."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            watched = [e for e in self.evaluations(repo, version) if ids is None or e.id in ids]
            running = [e for e in watched if not e.finished]
            if not running:
                return watched
            if deadline is not None and time.monotonic() >= deadline:
                suites = ", ".join(sorted({e.suite for e in running}))
                raise TimedOut(
                    f"{len(running)} evaluations ({suites}) still queued or running after {formatting.duration(timeout)}"
                )
            time.sleep(interval)

    def wait_verdict(
        self, repo: str, version: str | int | None = None, *, timeout: float | None = None, interval: float = 2.0
    ) -> ScoreReport:
        """Poll a version until the validation gate has decided on it (it is no longer `pending`:
        the gate decides once the evaluations it asked for finish). Raises TimedOut."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            report = self.score_report(repo, version)
            if report.validation != "pending":
                return report
            if deadline is not None and time.monotonic() >= deadline:
                raise TimedOut(
                    f"the validation gate has not decided on {report.ref} after {formatting.duration(timeout)}"
                )
            time.sleep(interval)

    def _version_path(self, repo: str, version: str | int | None) -> str:
        namespace, name, ref = parse_ref(repo)
        ref = str(version) if version is not None else ref or "latest"
        return f"/api/v1/adapters/{namespace}/{name}/versions/{ref}/"


def _folder_files(root: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for local in sorted(root.rglob("*")):
        relative = local.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or not local.is_file():
            continue
        files[relative.as_posix()] = local
    if not files:
        raise ValidationError(f"{root} holds no files", code="no_files")
    return files


def _safe_relative(path: str) -> PurePosixPath:
    """A file path from the hub, refused if it could land outside the target folder."""
    relative = PurePosixPath(path)
    if relative.is_absolute() or not relative.parts or any(part in ("", ".", "..") for part in relative.parts):
        raise HubError(f"the hub sent an unsafe file path {path!r}", code="unsafe_path")
    return relative


def _segment(name: str) -> str:
    """A namespace as one URL path segment."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"{name!r} is not an organization name")
    return name


def _input_of(item: Any) -> dict[str, Any]:
    if isinstance(item, Mapping):
        return dict(item)
    ref, weight = item
    namespace, name, version = parse_ref(ref)
    entry: dict[str, Any] = {"adapter": f"{namespace}/{name}", "weight": float(weight)}
    if version is not None:
        entry["version"] = version
    return entry


def _version() -> str:
    return VERSION

"""Resumable pushes: upload sessions whose bytes go straight to the blob store.

A client announces the files of a push (path, size, sha256). The hub answers with a plan: files
whose sha256 it already holds are skipped, the others get a multipart upload in the store, with
presigned part URLs on S3 (the hub never sees those bytes) or a hub endpoint on the local store.
Re-announcing the same files finds the same session, and the store's list of parts tells which
parts are still missing, so an interrupted push resumes where it stopped.

A sha256 alone proves nothing, so a blob counts as held for a caller only when a version they
may read references it, or when they uploaded it themselves: otherwise knowing the hash of a
private file would be enough to publish it and download it.

Completing a session never trusts the client: the hub assembles each upload, reads it back while
it validates the adapter (one pass hashes and validates), compares the sha256, promotes verified
bytes to their content-addressed key (the store links or renames them: no copy), and publishes
through the same pipeline as every push (`registry.push`).

Abandoned sessions expire after settings.UPLOAD_SESSION_SECONDS; `expire_sessions()` aborts
their uploads (call it from a periodic job or `manage.py gc_blobs`; new sessions also expire a
few old ones as they start).
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from typing import IO, Any, BinaryIO, cast

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from registry import blob_claims, push, services
from registry.access import Actor, require_write, visible_adapters
from registry.blobs import get_blob_store
from registry.exceptions import (
    AccessDenied,
    InvalidContent,
    InvalidRequest,
    NotAuthenticated,
    NotFound,
    RegistryError,
    StateConflict,
)
from registry.models import AdapterVersion, VersionFile
from registry.models.uploads import UploadBlob, UploadSession, UploadStatus
from storage import (
    MIN_PART_SIZE,
    BlobNotFound,
    MultipartBlobStore,
    MultipartUpload,
    UploadedPart,
    UploadNotFound,
    validate_sha256,
)
from storage.interfaces import MAX_PARTS

log = logging.getLogger(__name__)

READ_CHUNK = 8 * 1024 * 1024
# A completion that has not finished in this long is presumed dead (its process was killed) and
# another request may take the session over.
STALE_COMPLETION = timedelta(minutes=30)


def part_size_setting() -> int:
    return max(MIN_PART_SIZE, settings.UPLOAD_PART_SIZE)


def session_lifetime() -> timedelta:
    return timedelta(seconds=settings.UPLOAD_SESSION_SECONDS)


def part_url_lifetime() -> int:
    return settings.UPLOAD_URL_EXPIRES


def multipart_store() -> MultipartBlobStore:
    store = get_blob_store()
    if not isinstance(store, MultipartBlobStore):
        raise InvalidRequest(
            "this hub's blob store takes no resumable uploads; push with multipart/form-data", code="no_uploads"
        )
    return store


# --- Plans ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileSpec:
    """A file the client announces: its path in the version, size and sha256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class PartTarget:
    number: int
    size: int
    url: str | None  # presigned; None means PUT it to the hub's part endpoint


@dataclass(frozen=True)
class BlobPlan:
    sha256: str
    size: int
    part_size: int
    part_count: int
    stored_parts: list[int]
    missing: list[PartTarget]


@dataclass(frozen=True)
class UploadPlan:
    session: UploadSession
    created: bool
    # sha256 of every blob the hub already holds: files with these need no bytes.
    stored: frozenset[str]
    blobs: list[BlobPlan]


def part_size_for(size: int) -> int:
    """The part size for a blob: the configured size, grown (in MiB steps) so that no blob needs
    more parts than S3 allows."""
    base = part_size_setting()
    if -(-size // base) <= MAX_PARTS:
        return base
    mib = 1024 * 1024
    smallest = -(-size // MAX_PARTS)
    return -(-smallest // mib) * mib


# --- Starting and resuming ------------------------------------------------------------------------


def start_upload(
    *,
    actor: Actor,
    namespace: str,
    name: str,
    files: Sequence[FileSpec],
    meta: services.AdapterMetadata,
    label: str | None = None,
) -> UploadPlan:
    """Open (or find again) the session for pushing `files` to `namespace/name`.

    1. Run the checks that need no content (write access, names, label, sizes), so a doomed push
       is refused before it sends a byte.
    2. Find the caller's live session with the same target and file set, or create one.
    3. Give each missing blob a multipart upload, and answer which parts still need sending.
    """
    user_id = actor.user_id
    if not actor.is_authenticated or user_id is None:
        raise NotAuthenticated("sign in or send a token with write scope", code="auth_required")
    target = push.check_target(actor=actor, namespace=namespace, name=name, label=label)
    owner, label = target.owner, target.label
    sizes = push.check_file_list([(f.path, f.size) for f in files])
    for spec in files:
        try:
            validate_sha256(spec.sha256)
        except ValueError:
            raise InvalidRequest(f"{spec.path}: sha256 must be 64 lowercase hex digits", code="bad_sha256") from None
    # check_file_list keeps the order of `files`, keyed by normalized path.
    entries = sorted(
        ((path, spec.sha256, size) for (path, size), spec in zip(sizes.items(), files, strict=True)),
        key=lambda f: f[0],
    )
    normalized = [{"path": path, "sha256": sha256, "size": size} for path, sha256, size in entries]
    digest = AdapterVersion.compute_digest(entries)
    _expire_some()
    metadata = {**_metadata_json(meta), "label": label}
    now = timezone.now()
    mine = Q(created_by_id=user_id, namespace=owner, name=name, files_digest=digest)
    live = Q(status__in=[UploadStatus.OPEN, UploadStatus.COMPLETING])
    session = UploadSession.objects.filter(mine, live).first()
    if session is not None and session.expires_at <= now:
        _expire(session)
        if UploadSession.objects.filter(pk=session.pk, status=UploadStatus.COMPLETING).exists():
            raise StateConflict(f"upload {session.id} is being completed by another request", code="upload_in_progress")
        session = None
    created = False
    if session is None:
        try:
            with transaction.atomic():
                session = UploadSession.objects.create(
                    created_by_id=user_id,
                    namespace=owner,
                    name=name,
                    files=normalized,
                    files_digest=digest,
                    metadata=metadata,
                    expires_at=now + session_lifetime(),
                )
            created = True
        except IntegrityError:
            # A concurrent identical request created it first.
            session = UploadSession.objects.filter(mine, live).first()
            if session is None:
                raise
    elif session.metadata != metadata:
        # A re-run may correct the metadata (a missing base model, a label already taken).
        UploadSession.objects.filter(pk=session.pk).update(metadata=metadata, updated_at=now)
        session.metadata = metadata
    return _plan(actor, session, created=created)


def upload_plan(*, actor: Actor, session_id: str) -> UploadPlan:
    """The session's current plan, with fresh part URLs (they expire) for the missing parts."""
    session = access_session(actor, session_id)
    if session.status == UploadStatus.OPEN and session.expires_at <= timezone.now():
        _expire(session)
        session.refresh_from_db()
    return _plan(actor, session, created=False)


def access_session(actor: Actor, session_id: str) -> UploadSession:
    """The caller's own session; anyone else's is NotFound."""
    if not actor.is_authenticated:
        raise NotAuthenticated("sign in or send a token with write scope", code="auth_required")
    session = (
        UploadSession.objects.select_related("namespace", "result_version__adapter__namespace")
        .filter(pk=session_id, created_by_id=actor.user_id)
        .first()
    )
    if session is None:
        raise NotFound(f"upload {session_id} does not exist", code="upload_not_found")
    return session


def _plan(actor: Actor, session: UploadSession, *, created: bool) -> UploadPlan:
    if session.status != UploadStatus.OPEN:
        # Completing (another request holds it), or finished: nothing to send.
        return UploadPlan(session=session, created=created, stored=frozenset(), blobs=[])
    store = multipart_store()
    blobs = _sync_blobs(actor, session, store)
    plans = []
    for blob, parts in blobs:
        upload = _upload_of(blob)
        done = set(range(1, blob.part_count + 1)) if parts is None else set(parts)
        missing = [
            PartTarget(
                number=n,
                size=blob.part_length(n),
                url=store.part_upload_url(upload, n, expires=part_url_lifetime()),
            )
            for n in range(1, blob.part_count + 1)
            if n not in done
        ]
        plans.append(
            BlobPlan(
                sha256=blob.sha256,
                size=blob.size,
                part_size=blob.part_size,
                part_count=blob.part_count,
                stored_parts=sorted(done),
                missing=missing,
            )
        )
    pending = {blob.sha256 for blob, _ in blobs}
    stored = frozenset(f["sha256"] for f in session.files if f["sha256"] not in pending)
    return UploadPlan(session=session, created=created, stored=stored, blobs=plans)


def held_for(actor: Actor, sha256: str, store: MultipartBlobStore) -> bool:
    """Whether the caller may reuse the stored blob sha256 without sending it: a version they may
    read references it, or they uploaded it themselves."""
    if not store.exists(sha256):
        return False
    if VersionFile.objects.filter(sha256=sha256, version__adapter__in=visible_adapters(actor)).exists():
        return True
    return UploadBlob.objects.filter(
        session__created_by_id=actor.user_id, sha256=sha256, verified_at__isnull=False
    ).exists()


def _sync_blobs(
    actor: Actor, session: UploadSession, store: MultipartBlobStore
) -> list[tuple[UploadBlob, dict[int, UploadedPart] | None]]:
    """Make the session's uploads match the store: a blob the caller holds (stored meanwhile)
    needs no upload; a missing blob without a live multipart upload gets a new one.

    Returns the pending uploads with their stored parts (None: already assembled).
    """
    blobs = {blob.sha256: blob for blob in session.blobs.all()}
    sizes = {f["sha256"]: f["size"] for f in session.files}
    pending: list[tuple[UploadBlob, dict[int, UploadedPart] | None]] = []
    for sha, size in sorted(sizes.items()):
        blob = blobs.get(sha)
        if blob is not None and blob.verified_at is None:
            try:
                pending.append((blob, _stored_parts(store, blob)))
                continue
            except UploadNotFound:
                pass  # aborted behind our back (an operator's cleanup): start it again below
        elif held_for(actor, sha, store):
            continue
        upload = store.start_multipart(sha)
        blob, _ = UploadBlob.objects.update_or_create(
            session=session,
            sha256=sha,
            defaults={
                "size": size,
                "part_size": part_size_for(size),
                "upload_key": upload.key,
                "upload_id": upload.upload_id,
                "verified_at": None,
                "created_at": timezone.now(),
            },
        )
        pending.append((blob, {}))
    return pending


def _stored_parts(store: MultipartBlobStore, blob: UploadBlob) -> dict[int, UploadedPart] | None:
    """The blob's stored parts of the right length, or None when its upload is assembled already.
    Raises UploadNotFound when the upload is gone."""
    upload = _upload_of(blob)
    try:
        return _good_parts(blob, store.list_parts(upload))
    except UploadNotFound:
        if store.staged_size(upload) is None:
            raise
        return None


def _good_parts(blob: UploadBlob, parts: Sequence[UploadedPart]) -> dict[int, UploadedPart]:
    """Stored parts of the right length; a part of another length is sent again (and replaced)."""
    return {p.number: p for p in parts if 1 <= p.number <= blob.part_count and p.size == blob.part_length(p.number)}


def _drop_upload(store: MultipartBlobStore, blob: UploadBlob) -> None:
    try:
        store.abort_multipart(_upload_of(blob))
    except Exception:  # the stale sweep gets it later
        log.warning("could not abort upload %s", blob.upload_key, exc_info=True)
    blob.delete()


# --- Parts through the hub ------------------------------------------------------------------------


def receive_part(
    *, actor: Actor, session_id: str, sha256: str, number: int, stream: BinaryIO, size: int | None
) -> UploadedPart:
    """Store one part sent to the hub (stores that cannot presign), streaming it to the store."""
    session = access_session(actor, session_id)
    require_write(actor, session.namespace)
    if session.status != UploadStatus.OPEN or session.expires_at <= timezone.now():
        raise StateConflict(f"upload {session.id} is {session.status}; it takes no more parts", code="upload_closed")
    blob = session.blobs.filter(sha256=sha256, verified_at__isnull=True).first()
    if blob is None:
        raise NotFound(f"upload {session.id} sends no blob {sha256}", code="blob_not_in_upload")
    if not 1 <= number <= blob.part_count:
        raise InvalidRequest(f"part {number} is out of range: this blob has {blob.part_count} parts", code="bad_part")
    expected = blob.part_length(number)
    if size != expected:
        raise InvalidRequest(
            f"part {number} must have {expected} bytes (Content-Length), not {size}", code="bad_part_size"
        )
    store = multipart_store()
    try:
        return store.put_part(_upload_of(blob), number, stream, size=expected)
    except UploadNotFound:
        raise StateConflict("the upload was cleaned up meanwhile; push again", code="upload_gone") from None


# --- Completing -------------------------------------------------------------------------------------


class _VerifyingReader(io.RawIOBase):
    """A seekable reader over staged bytes that hashes them as validation reads them.

    Validation reads a safetensors file front to back (header, then tensors in order), so in the
    common case the bytes are fetched once for both; sha256() reads whatever validation skipped.
    """

    def __init__(self, inner: BinaryIO, size: int) -> None:
        super().__init__()
        self._inner = inner
        self._size = size
        self._pos = 0
        self._hashed = 0
        self._hasher = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        want = self._size - self._pos if size is None or size < 0 else min(size, self._size - self._pos)
        if want <= 0:
            return b""
        if self._inner.tell() != self._pos:
            self._inner.seek(self._pos)
        data = self._inner.read(want)
        start, end = self._pos, self._pos + len(data)
        if start <= self._hashed < end:
            self._hasher.update(memoryview(data)[self._hashed - start :])
            self._hashed = end
        self._pos = end
        return data

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def sha256(self) -> str:
        """The hex sha256 of all the bytes, reading those not read yet."""
        while self._hashed < self._size:
            if self._inner.tell() != self._hashed:
                self._inner.seek(self._hashed)
            chunk = self._inner.read(min(READ_CHUNK, self._size - self._hashed))
            if not chunk:
                raise InvalidContent("the staged upload is shorter than announced", code="upload_truncated")
            self._hasher.update(chunk)
            self._hashed += len(chunk)
        return self._hasher.hexdigest()

    def close(self) -> None:
        self._inner.close()
        super().close()


def complete_upload(*, actor: Actor, session_id: str) -> push.PushResult:
    """Verify the uploaded bytes and publish them as a version.

    1. Claim the session (one completion at a time); a completed one answers its version again.
    2. Check every part of every upload is stored, then assemble each upload in the store.
    3. Check the push exactly as every push is checked (push.check_push), reading the staged
       bytes through readers that hash them on the way.
    4. Compare each sha256 with the announced one; promote verified bytes to their content-addressed
       keys, even when validation failed, so a corrected re-run sends nothing again.
    5. Publish the version (or find the identical one) with push.publish.
    A refusal (4xx) fails the session; any other error leaves it open for another try.
    """
    session = _claim(actor, session_id)
    if session.status == UploadStatus.COMPLETED:
        assert session.result_version is not None
        return push.PushResult(version=session.result_version, created=False)
    store = multipart_store()
    readers: list[IO[bytes]] = []
    # The session's blobs are claimed from before they are assembled and promoted until the version
    # is committed, so gc_blobs cannot delete one in between (see registry/blob_claims.py).
    claims = ExitStack()
    try:
        claims.enter_context(blob_claims.push_claims(f["sha256"] for f in session.files))
        require_write(actor, session.namespace)
        staged = _assemble(session, store)
        verifying: dict[str, _VerifyingReader] = {}
        incoming: list[push.IncomingFile] = []
        for f in session.files:
            blob = staged.get(f["sha256"])
            reader: IO[bytes]
            if blob is not None:
                verifier = _VerifyingReader(store.open_multipart(_upload_of(blob)), blob.size)
                verifying.setdefault(f["sha256"], verifier)
                # A RawIOBase is a binary file object at runtime; typeshed only does not declare it IO[bytes].
                reader = cast(IO[bytes], verifier)
            else:
                reader = _open_held(actor, store, f["sha256"])
            readers.append(reader)
            incoming.append(push.IncomingFile(path=f["path"], stream=reader, size=f["size"]))
        meta = dict(session.metadata)
        label = meta.pop("label", None)
        started = time.monotonic()
        try:
            checked = push.check_push(
                actor=actor,
                namespace=session.namespace.name,
                name=session.name,
                files=incoming,
                meta=services.AdapterMetadata(**meta),
                label=label,
            )
        except RegistryError:
            _keep_verified(store, staged, verifying)
            raise
        validated = time.monotonic()
        bad = _keep_verified(store, staged, verifying)
        log.info(
            "upload %s: %d bytes read back, hashed and validated in %.1f s, stored at their keys in %.1f s",
            session.id, sum(b.size for b in staged.values()), validated - started, time.monotonic() - validated,
        )  # fmt: skip
        if bad:
            path = next(f["path"] for f in session.files if f["sha256"] == bad[0])
            raise InvalidContent(
                f"{path}: the uploaded bytes do not have the announced sha256 {bad[0]} (did the file change "
                "during the push?); push again",
                code="digest_mismatch",
                path=path,
            )
        result = push.publish(actor=actor, checked=checked, stored={f["path"]: f["sha256"] for f in session.files})
    except RegistryError as exc:
        # Missing parts or blobs, and permissions, can be fixed and the completion retried;
        # content refusals cannot (the verified bytes are kept for a corrected push).
        if exc.code in ("upload_incomplete", "blob_missing") or isinstance(exc, (NotAuthenticated, AccessDenied)):
            _release(session)
        else:
            _finish(session, UploadStatus.FAILED, error=exc)
        raise
    except BaseException:
        _release(session)
        raise
    finally:
        for reader in readers:
            reader.close()
        claims.close()
    _finish(session, UploadStatus.COMPLETED, version=result.version)
    return result


def _claim(actor: Actor, session_id: str) -> UploadSession:
    session = access_session(actor, session_id)
    if session.status == UploadStatus.COMPLETED:
        return session
    if session.status == UploadStatus.FAILED:
        raise StateConflict(
            f"upload {session.id} failed ({session.error_code}: {session.error_message}); push again",
            code="upload_failed",
        )
    now = timezone.now()
    if session.status in (UploadStatus.ABORTED, UploadStatus.EXPIRED) or session.expires_at <= now:
        state = "expired" if session.is_live else session.status
        raise StateConflict(f"upload {session.id} is {state}; push again", code="upload_closed")
    claimable = Q(status=UploadStatus.OPEN) | Q(status=UploadStatus.COMPLETING, updated_at__lt=now - STALE_COMPLETION)
    if not UploadSession.objects.filter(claimable, pk=session.pk).update(
        status=UploadStatus.COMPLETING, updated_at=now
    ):
        raise StateConflict(f"upload {session.id} is being completed by another request", code="upload_in_progress")
    session.status, session.updated_at = UploadStatus.COMPLETING, now
    return session


def _release(session: UploadSession) -> None:
    UploadSession.objects.filter(pk=session.pk, status=UploadStatus.COMPLETING).update(
        status=UploadStatus.OPEN, updated_at=timezone.now()
    )


def _finish(
    session: UploadSession, status: str, *, version: AdapterVersion | None = None, error: RegistryError | None = None
) -> None:
    fields: dict[str, Any] = {"status": status, "updated_at": timezone.now(), "result_version": version}
    if error is not None:
        fields |= {"error_code": error.code[:64], "error_message": error.message}
    UploadSession.objects.filter(pk=session.pk).update(**fields)
    if status != UploadStatus.COMPLETED:
        store = get_blob_store()
        if isinstance(store, MultipartBlobStore):
            for blob in UploadBlob.objects.filter(session=session, verified_at__isnull=True):
                _drop_upload(store, blob)


def _upload_of(blob: UploadBlob) -> MultipartUpload:
    return MultipartUpload(key=blob.upload_key, upload_id=blob.upload_id)


def _assemble(session: UploadSession, store: MultipartBlobStore) -> dict[str, UploadBlob]:
    """Complete every pending upload in the store; raise upload_incomplete (naming the missing
    parts) when some were not sent yet."""
    staged: dict[str, UploadBlob] = {}
    missing: dict[str, list[int]] = {}
    for blob in session.blobs.filter(verified_at__isnull=True):
        upload = _upload_of(blob)
        try:
            parts = _stored_parts(store, blob)
        except UploadNotFound:
            blob.delete()
            raise StateConflict(
                "an upload of this push was cleaned up before it completed; push again", code="blob_missing"
            ) from None
        if parts is None:
            size = store.staged_size(upload)  # assembled by an earlier try
        else:
            gaps = [n for n in range(1, blob.part_count + 1) if n not in parts]
            if gaps:
                missing[blob.sha256] = gaps
                continue
            size = store.complete_multipart(upload, [parts[n] for n in range(1, blob.part_count + 1)])
        if size != blob.size:
            raise InvalidContent(
                f"blob {blob.sha256} was announced with {blob.size} bytes but {size} were uploaded",
                code="file_size_mismatch",
            )
        staged[blob.sha256] = blob
    if missing:
        count = sum(len(gaps) for gaps in missing.values())
        raise StateConflict(
            f"{count} parts were not uploaded yet; send them, then complete again",
            code="upload_incomplete",
            missing=missing,
        )
    return staged


def _open_held(actor: Actor, store: MultipartBlobStore, sha256: str) -> IO[bytes]:
    try:
        if not held_for(actor, sha256, store):
            raise BlobNotFound(sha256)
        return store.open(sha256)
    except BlobNotFound:
        # Garbage-collected (or made private) since the plan was made; the next plan uploads it.
        raise StateConflict(
            f"blob {sha256} is no longer available to this upload; push again to send it", code="blob_missing"
        ) from None


def _keep_verified(
    store: MultipartBlobStore, staged: dict[str, UploadBlob], verifying: dict[str, _VerifyingReader]
) -> list[str]:
    """Promote every staged blob whose bytes hash as announced, recording that its uploader holds
    it; drop the others. Returns the sha256s that did not match."""
    bad: list[str] = []
    for sha, blob in staged.items():
        if verifying[sha].sha256() == sha:
            store.promote_multipart(_upload_of(blob), sha)
            UploadBlob.objects.filter(pk=blob.pk).update(verified_at=timezone.now())
        else:
            bad.append(sha)
            _drop_upload(store, blob)
    return bad


# --- Aborting and expiring ------------------------------------------------------------------------


def abort_upload(*, actor: Actor, session_id: str) -> None:
    session = access_session(actor, session_id)
    if session.status == UploadStatus.COMPLETING:
        raise StateConflict(f"upload {session.id} is being completed", code="upload_in_progress")
    if session.status == UploadStatus.OPEN:
        _finish(session, UploadStatus.ABORTED)


def expire_sessions(*, limit: int | None = None, sweep_orphans: bool = True) -> int:
    """Abort the uploads of sessions past their expiry and mark them expired; returns how many.

    With sweep_orphans, also drops multipart uploads older than twice the session lifetime
    that no session row accounts for (a deleted user's, a crash between store and database).
    """
    stale = UploadSession.objects.filter(
        status__in=[UploadStatus.OPEN, UploadStatus.COMPLETING], expires_at__lte=timezone.now()
    )
    sessions = list(stale.order_by("expires_at")[:limit] if limit else stale)
    for session in sessions:
        _expire(session)
    if sweep_orphans:
        store = get_blob_store()
        if isinstance(store, MultipartBlobStore):
            store.abort_stale_multiparts(2 * session_lifetime())
    return len(sessions)


def _expire(session: UploadSession) -> None:
    # A completion still running past the expiry keeps its session until it is stale.
    if session.status == UploadStatus.COMPLETING and session.updated_at > timezone.now() - STALE_COMPLETION:
        return
    _finish(session, UploadStatus.EXPIRED)


def _expire_some() -> None:
    """Expire a few old sessions as new ones start, so a hub without a periodic job stays tidy."""
    try:
        expire_sessions(limit=5, sweep_orphans=False)
    except Exception:  # housekeeping must never fail a push
        log.warning("could not expire old upload sessions", exc_info=True)


def _metadata_json(meta: services.AdapterMetadata) -> dict[str, Any]:
    data = {
        k: getattr(meta, k) for k in ("base_model", "method", "task", "tags", "license", "visibility", "description")
    }
    if data["tags"] is not None:
        data["tags"] = list(data["tags"])
    return {k: v for k, v in data.items() if v is not None}

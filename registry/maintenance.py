"""Housekeeping: garbage collection of blobs no version references, and the consistency audit."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from registry import blob_claims, enqueue
from registry.blobs import get_blob_store
from registry.models import BaseModelFile, EvalSuite, JobStatus, VersionFile
from registry.models.uploads import UploadSession, UploadStatus
from registry.uploads import STALE_COMPLETION, expire_sessions
from storage import BlobStore

TEMP_IDLE = timedelta(minutes=30)


@dataclass
class GcReport:
    scanned: int = 0
    referenced: int = 0
    young: int = 0
    deleted: list[str] = field(default_factory=list)
    expired_uploads: int = 0
    # With verify: blobs whose stored bytes do not hash to their name, and what is wrong with each.
    broken: dict[str, str] = field(default_factory=dict)
    broken_referenced: list[str] = field(default_factory=list)


def collect_garbage(*, grace_seconds: int, dry_run: bool = False, verify: bool = False) -> GcReport:
    """Mark and sweep.

    1. List the stored blobs with their ages (before marking: a blob stored later is not seen).
    2. Mark every sha256 a version file, a base model's file or an eval suite references, read
       after the listing, so
       a version committed during the listing protects its blobs.
    3. Sweep listed blobs that are unmarked and older than the grace period, each under a sweep
       claim that a push holding the blob wins (registry/blob_claims.py): a push stores or reuses
       its blobs before it commits its version row, so with any grace period, 0 included, a blob
       in use is never deleted.
    With verify, first read every listed blob back: one whose bytes do not hash to its name (an
    empty object, a link to nothing, other bytes) is deleted whatever references it, so that the
    next push of those bytes stores them again instead of deduplicating against the broken ones;
    the report names the broken blobs still referenced (their versions need a re-push).
    4. Clear abandoned temporary uploads (idle for the grace period, at least TEMP_IDLE), and expire upload sessions
       past their lifetime (aborting their multipart uploads).
    """
    store = get_blob_store()
    cutoff = timezone.now() - timedelta(seconds=grace_seconds)
    listed = list(store.iter_blobs())
    marked = set(VersionFile.objects.values_list("sha256", flat=True).distinct())
    marked |= set(EvalSuite.objects.values_list("data_sha256", flat=True))
    marked |= set(BaseModelFile.objects.values_list("sha256", flat=True).distinct())
    marked |= blob_claims.pushed_shas()
    report = GcReport(scanned=len(listed))
    if verify:
        listed = _drop_broken(store, listed, report, dry_run=dry_run)
    for sha, modified in listed:
        if sha in marked:
            report.referenced += 1
        elif modified > cutoff:
            report.young += 1
        elif dry_run:
            report.deleted.append(sha)
        elif blob_claims.delete_if_unused(store, sha):
            report.deleted.append(sha)
        else:
            report.referenced += 1
    if not dry_run:
        blob_claims.expire_claims()
        # Temporary files are written by puts in flight (their mtime moves while they stream): only
        # ones idle for a while are abandoned, whatever the grace period of blobs.
        store.cleanup_temp(older_than=max(timedelta(seconds=grace_seconds), TEMP_IDLE))
        report.expired_uploads = expire_sessions()
    return report


def _drop_broken(
    store: BlobStore, listed: list[tuple[str, datetime]], report: GcReport, *, dry_run: bool
) -> list[tuple[str, datetime]]:
    """Verify each listed blob; delete the broken ones (unless dry_run) and return the others."""
    kept: list[tuple[str, datetime]] = []
    for sha, modified in listed:
        problem = store.verify(sha)
        if problem is None or problem == "missing":  # missing: deleted since the listing
            kept.append((sha, modified))
            continue
        report.broken[sha] = problem
        if blob_claims.referenced(sha):
            report.broken_referenced.append(sha)
        if not dry_run and blob_claims.delete_broken(store, sha):
            report.deleted.append(sha)
    return kept


def broken_versions(shas: list[str]) -> list[str]:
    """What references broken blobs, as org/name:version/path, base model name/path and suite names."""
    files = VersionFile.objects.filter(sha256__in=shas).select_related("version__adapter__namespace")
    names = [str(f) for f in files]
    names += [f"base model {f}" for f in BaseModelFile.objects.filter(sha256__in=shas).select_related("base_model")]
    names += [f"eval suite {s}" for s in EvalSuite.objects.filter(data_sha256__in=shas)]
    return sorted(names)


def audit(*, settled: bool = False) -> list[str]:
    """What an operator checks after an outage, one line per problem found (none: consistent).

    Nothing lost: every file of every version, base model and eval suite is stored with its sha256
    (each blob is read back: this costs a read of everything referenced). Nothing stuck: no job is
    queued or running that the reconciler should have acted on (with settled, none at all is).
    Nothing leaked: no orphan blob older than the grace period, no upload stuck completing.
    """
    return _lost_files() + _stuck_jobs(settled=settled) + _leaks()


def _lost_files() -> list[str]:
    store = get_blob_store()
    problems = []
    wanted = {f.sha256: str(f) for f in VersionFile.objects.select_related("version__adapter__namespace")}
    wanted |= {f.sha256: f"base model {f}" for f in BaseModelFile.objects.select_related("base_model")}
    wanted |= {s.data_sha256: f"eval suite {s.name}" for s in EvalSuite.objects.all()}
    for sha, what in wanted.items():
        problem = store.verify(sha)
        if problem is not None:
            problems.append(f"{what}: blob {sha} {problem}")
    return problems


def _stuck_jobs(*, settled: bool) -> list[str]:
    now = timezone.now()
    # What the reconciler acts on: a queued job not sent for a round past the redispatch delay,
    # a running job whose lease ran out.
    forgotten = now - timedelta(seconds=settings.JOB_REDISPATCH_SECONDS + settings.JOB_RECONCILE_SECONDS)
    stuck = Q(status=JobStatus.QUEUED) & (
        Q(dispatched_at__lt=forgotten) | Q(dispatched_at=None, created_at__lt=forgotten)
    )
    stuck |= Q(status=JobStatus.RUNNING, lease_expires_at__lt=now)
    if settled:
        stuck |= Q(status__in=(JobStatus.QUEUED, JobStatus.RUNNING))
    return [
        f"{model.__name__} {job.pk} is {job.status}" for model in enqueue.JOB_MODELS
        for job in model._default_manager.filter(stuck)
    ]  # fmt: skip


def _leaks() -> list[str]:
    orphans = collect_garbage(grace_seconds=settings.GC_GRACE_SECONDS, dry_run=True).deleted
    problems = [f"orphan blob {sha} is older than the grace period" for sha in orphans]
    stale = timezone.now() - STALE_COMPLETION
    problems += [
        f"upload session {s.pk} is stuck completing"
        for s in UploadSession.objects.filter(status=UploadStatus.COMPLETING, updated_at__lt=stale)
    ]
    return problems

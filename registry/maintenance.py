"""Housekeeping: garbage collection of blobs no version references."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone

from registry import blob_claims
from registry.blobs import get_blob_store
from registry.models import BaseModelFile, EvalSuite, VersionFile
from registry.uploads import expire_sessions


TEMP_IDLE = timedelta(minutes=30)


@dataclass
class GcReport:
    scanned: int = 0
    referenced: int = 0
    young: int = 0
    deleted: list[str] = field(default_factory=list)
    expired_uploads: int = 0


def collect_garbage(*, grace_seconds: int, dry_run: bool = False) -> GcReport:
    """Mark and sweep.

    1. List the stored blobs with their ages (before marking: a blob stored later is not seen).
    2. Mark every sha256 a version file, a base model's file or an eval suite references, read
       after the listing, so
       a version committed during the listing protects its blobs.
    3. Sweep listed blobs that are unmarked and older than the grace period, each under a sweep
       claim that a push holding the blob wins (registry/blob_claims.py): a push stores or reuses
       its blobs before it commits its version row, so with any grace period, 0 included, a blob
       in use is never deleted.
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

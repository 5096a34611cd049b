"""Housekeeping: garbage collection of blobs no version references."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone

from registry.blobs import get_blob_store
from registry.models import BaseModelFile, EvalSuite, VersionFile
from registry.uploads import expire_sessions


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
    3. Sweep listed blobs that are unmarked and older than the grace period: a push stores its blobs
       before committing its version row, and that window is far shorter than the grace period.
    4. Clear abandoned temporary uploads older than the grace period, and expire upload sessions
       past their lifetime (aborting their multipart uploads).
    """
    store = get_blob_store()
    cutoff = timezone.now() - timedelta(seconds=grace_seconds)
    listed = list(store.iter_blobs())
    marked = set(VersionFile.objects.values_list("sha256", flat=True).distinct())
    marked |= set(EvalSuite.objects.values_list("data_sha256", flat=True))
    marked |= set(BaseModelFile.objects.values_list("sha256", flat=True).distinct())
    report = GcReport(scanned=len(listed))
    for sha, modified in listed:
        if sha in marked:
            report.referenced += 1
        elif modified > cutoff:
            report.young += 1
        else:
            if not dry_run:
                store.delete(sha)
            report.deleted.append(sha)
    if not dry_run:
        store.cleanup_temp(older_than=timedelta(seconds=grace_seconds))
        report.expired_uploads = expire_sessions()
    return report

"""Housekeeping: garbage collection of blobs no version references."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from registry import blob_claims
from registry.blobs import get_blob_store
from registry.models import BaseModelFile, EvalSuite, VersionFile
from registry.uploads import expire_sessions
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

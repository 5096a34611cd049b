"""Claims that keep gc_blobs from deleting blobs a push is storing or reusing.

The race they close: the sweep lists blobs, then reads what references them; a push stores (or
finds, and reuses) a blob and only later commits the version that references it. Without claims
the sweep deletes such a blob between the two, and the version points at nothing.

The protocol (each step a committed statement, so both sides see the other's earlier steps):

    push                                   sweep, for each unreferenced blob
    1. claim PUSH on its blobs             1. claim SWEEP on it
    2. wait while any has a SWEEP claim    2. if a PUSH claim exists: release, keep the blob
    3. store the missing blobs             3. delete it, then release
    4. commit the version, release

If the push claimed first, the sweep sees it at its step 2. If the sweep claimed first, the push
sees it at its step 2 and waits until the blob is gone; its step 3 then stores the bytes again.
Claims must be made outside any transaction, or the other side could not see them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.db.models import QuerySet
from django.utils import timezone

from registry.exceptions import StateConflict
from registry.models import BaseModelFile, BlobClaim, EvalSuite, VersionFile
from storage import BlobStore

# A claim older than this belongs to a process that died: it no longer protects or blocks anything.
CLAIM_LIFETIME = timedelta(hours=6)
SWEEP_WAIT_SECONDS = 60.0


def _live() -> QuerySet[BlobClaim]:
    return BlobClaim.objects.filter(created_at__gt=timezone.now() - CLAIM_LIFETIME)


@contextmanager
def push_claims(shas: Iterable[str]) -> Iterator[None]:
    """Claim blobs for a push for the duration of the block (steps 1-2 on entry, release on exit)."""
    wanted = sorted(set(shas))
    if not wanted:
        yield
        return
    claims = BlobClaim.objects.bulk_create([BlobClaim(sha256=sha, kind=BlobClaim.Kind.PUSH) for sha in wanted])
    try:
        deadline = time.monotonic() + SWEEP_WAIT_SECONDS
        while _live().filter(kind=BlobClaim.Kind.SWEEP, sha256__in=wanted).exists():
            if time.monotonic() > deadline:
                raise StateConflict("a garbage collection holds blobs of this push; retry", code="blobs_busy")
            time.sleep(0.05)
        yield
    finally:
        BlobClaim.objects.filter(pk__in=[c.pk for c in claims]).delete()


def sweep_claimed(sha: str) -> BlobClaim | None:
    """The sweep's claim on a blob it is about to delete (steps 1-2); None when a push holds it."""
    claim = BlobClaim.objects.create(sha256=sha, kind=BlobClaim.Kind.SWEEP)
    if _live().filter(kind=BlobClaim.Kind.PUSH, sha256=sha).exists():
        claim.delete()
        return None
    return claim


def referenced(sha: str) -> bool:
    """Whether a version, a base model or an eval suite references the blob."""
    return (
        VersionFile.objects.filter(sha256=sha).exists()
        or BaseModelFile.objects.filter(sha256=sha).exists()
        or EvalSuite.objects.filter(data_sha256=sha).exists()
    )


def delete_if_unused(store: BlobStore, sha: str) -> bool:
    """Delete a blob nothing references and no push holds, under a sweep claim (the sweep's steps);
    the references are read after the claim, so a version committed meanwhile keeps its blob."""
    claim = sweep_claimed(sha)
    if claim is None:
        return False
    try:
        if referenced(sha):
            return False
        store.delete(sha)
        return True
    finally:
        claim.delete()


def delete_broken(store: BlobStore, sha: str) -> bool:
    """Delete a blob whose stored bytes are not its own (found by an audit), referenced or not, under
    a sweep claim: a push that holds it has checked it exists already and is left to finish (False).
    Once it is gone, pushes of the right bytes store them again instead of reusing the broken ones."""
    claim = sweep_claimed(sha)
    if claim is None:
        return False
    try:
        store.delete(sha)
        return True
    finally:
        claim.delete()


def pushed_shas() -> set[str]:
    """Blobs live pushes hold (the sweep skips them without claiming)."""
    return set(_live().filter(kind=BlobClaim.Kind.PUSH).values_list("sha256", flat=True))


def expire_claims() -> int:
    """Drop claims of processes that died; returns how many."""
    deleted, _ = BlobClaim.objects.filter(created_at__lte=timezone.now() - CLAIM_LIFETIME).delete()
    return deleted

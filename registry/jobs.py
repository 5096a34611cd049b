"""Claiming and finishing worker jobs (compositions, evaluations) safely under redelivery.

A job row has status, lease_expires_at, attempts, worker, started_at, finished_at and an error.
A worker claims a job with one conditional UPDATE; while it runs it renews a short lease, so a
task redelivered after a worker died can take the job over, and a duplicate of a live one waits.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import TypeVar

from django.conf import settings
from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from registry.exceptions import NotFound, RateLimited
from registry.models import JobStatus

Job = TypeVar("Job", bound=models.Model)


class LeaseHeld(Exception):
    """Another worker is running the job; try again once its lease may have lapsed."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"job leased for {seconds:.0f} more seconds")
        self.seconds = seconds


def check_active_jobs(user_id: object) -> None:
    """Refuse (429) a user who has MAX_ACTIVE_JOBS_PER_USER compositions and evaluations queued
    or running already: one user cannot fill every worker."""
    from registry.models import CompositionJob, EvaluationRequest

    live = Q(status__in=[JobStatus.QUEUED, JobStatus.RUNNING], created_by_id=user_id)
    active = CompositionJob.objects.filter(live).count() + EvaluationRequest.objects.filter(live).count()
    if active >= settings.MAX_ACTIVE_JOBS_PER_USER:
        raise RateLimited(
            f"you have {active} jobs queued or running; wait for some to finish "
            f"(at most {settings.MAX_ACTIVE_JOBS_PER_USER})",
            code="too_many_jobs",
        )


def lease_deadline() -> datetime:
    return timezone.now() + timedelta(seconds=settings.JOB_LEASE_SECONDS)


def claim(model: type[Job], job_id: str, worker: str) -> Job | None:
    """Take the job atomically: a queued one, or a running one whose worker stopped renewing.

    Returns None when the job is finished (a duplicate delivery); raises LeaseHeld when a live
    worker holds it.
    """
    now = timezone.now()
    claimable = Q(status=JobStatus.QUEUED) | Q(status=JobStatus.RUNNING, lease_expires_at__lt=now)
    # One statement: no reader ever sees a running job without its start time (the first claim's).
    taken = model.objects.filter(claimable, pk=job_id).update(  # type: ignore[attr-defined]
        status=JobStatus.RUNNING,
        worker=worker,
        lease_expires_at=lease_deadline(),
        attempts=F("attempts") + 1,
        started_at=Coalesce(F("started_at"), Value(now)),
    )
    job = model.objects.filter(pk=job_id).first()  # type: ignore[attr-defined]
    if job is None:
        raise NotFound(f"job {job_id} does not exist", code="job_not_found")
    if taken:
        return job
    if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        return None
    remaining = (job.lease_expires_at - now).total_seconds() if job.lease_expires_at else 1.0
    raise LeaseHeld(max(remaining, 1.0))


def renew(model: type[models.Model], job_id: object, **fields: object) -> None:
    model.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(  # type: ignore[attr-defined]
        lease_expires_at=lease_deadline(), **fields
    )


class LeaseKeeper:
    """Renews a job's lease each time its work makes progress, at most once a second: a job that
    moves is never taken for a dead one, and one that hangs loses its lease."""

    def __init__(self, model: type[models.Model], job_id: object) -> None:
        self.model, self.job_id = model, job_id
        self.last = time.monotonic()

    def __call__(self, *progress: object) -> None:
        now = time.monotonic()
        if now - self.last >= 1.0:
            self.last = now
            renew(self.model, self.job_id)


def fail(model: type[models.Model], job_id: object, *, code: str, message: str) -> None:
    model.objects.filter(pk=job_id).exclude(status=JobStatus.SUCCEEDED).update(  # type: ignore[attr-defined]
        status=JobStatus.FAILED,
        error_code=code[:64],
        error_message=message,
        finished_at=timezone.now(),
        lease_expires_at=None,
    )


def fail_with(model: type[models.Model], job_id: object, exc: BaseException, *, default_code: str) -> None:
    """Fail the job with what a domain error says: its stable `code` (else `default_code`) and message."""
    fail(model, job_id, code=getattr(exc, "code", default_code), message=str(getattr(exc, "message", exc)))


def release_expired(model: type[models.Model], job_id: object) -> None:
    """Hand back a running job whose lease lapsed (its worker died or lost the database), so that a
    new task claims it; `updated_at`-free, the lease condition makes it a no-op for a renewed one."""
    model.objects.filter(pk=job_id, status=JobStatus.RUNNING, lease_expires_at__lt=timezone.now()).update(  # type: ignore[attr-defined]
        status=JobStatus.QUEUED, lease_expires_at=None, dispatched_at=None
    )


def release(model: type[models.Model], job_id: object) -> None:
    """Hand a job back to the queue after a transient error, for the task's retry to claim."""
    model.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(  # type: ignore[attr-defined]
        status=JobStatus.QUEUED, lease_expires_at=None
    )

"""Nothing stays queued or running forever: the reconciler, run every JOB_RECONCILE_SECONDS by
Celery beat (`make run` starts it inside its worker; production runs `celery -A hub beat`).

A job's task can be lost without its row knowing: Redis restarted empty, the broker was down when
the job was created, a worker died and its message was acknowledged, or a worker's database
connection was cut so it could not record the failure. The reconciler looks at the rows:

1. A queued job whose task was sent more than JOB_REDISPATCH_SECONDS ago (or never) is sent
   again. Sending twice is harmless: a worker claims a job atomically and a duplicate finds it
   taken or done (registry/jobs.py).
2. A running job whose lease expired (its worker stopped renewing) is handed back to the queue
   and sent again, or failed as `abandoned` once it has been tried JOB_MAX_ATTEMPTS times.
A broker still down leaves the rows as they are for the next round.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from registry import enqueue, jobs
from registry.infrastructure import as_unavailable
from registry.models import JobStatus

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    redispatched: list[str] = field(default_factory=list)
    reclaimed: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    broker_down: bool = False


def reconcile_jobs(*, limit: int = 500) -> ReconcileReport:
    """One round of the reconciler (see the module's docstring); at most `limit` jobs per kind."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.JOB_REDISPATCH_SECONDS)
    report = ReconcileReport()
    for model in enqueue.JOB_MODELS:
        expired = model._default_manager.filter(status=JobStatus.RUNNING, lease_expires_at__lt=now)
        for job in expired.order_by("lease_expires_at")[:limit]:
            if job.attempts >= settings.JOB_MAX_ATTEMPTS:
                jobs.fail(
                    model, job.pk, code="abandoned",
                    message=f"its worker stopped after {job.attempts} attempts; no further try is made",
                )  # fmt: skip
                report.abandoned.append(str(job.pk))
            else:
                jobs.release_expired(model, job.pk)
                report.reclaimed.append(str(job.pk))
        waiting = model._default_manager.filter(status=JobStatus.QUEUED, created_at__lt=stale).filter(
            Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=stale)
        )
        for job in waiting.order_by("created_at")[:limit]:
            try:
                enqueue.send(model, job.pk)
            except Exception as exc:
                if as_unavailable(exc) is None:
                    raise
                log.warning("reconciler: the broker is down (%s); jobs stay queued for the next round", exc)
                report.broker_down = True
                return report
            report.redispatched.append(str(job.pk))
    if report.redispatched or report.reclaimed or report.abandoned:
        log.info(
            "reconciler: %d sent again, %d reclaimed, %d abandoned",
            len(report.redispatched), len(report.reclaimed), len(report.abandoned),
        )  # fmt: skip
    return report

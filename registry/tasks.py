"""Celery tasks. Each takes IDs only, is idempotent, and is acknowledged only once done
(`acks_late`), so a worker killed mid-job leads to a redelivery that finishes the job once."""

from __future__ import annotations

import logging

from botocore.exceptions import BotoCoreError, ConnectionError as BotoConnectionError
from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError

from registry import jobs
from registry.compositions import run_composition
from registry.evaluations import run_evaluation
from registry.jobs import LeaseHeld
from registry.models import CompositionJob, EvaluationRequest
from storage import StorageError

log = logging.getLogger(__name__)

# Errors worth another try: the database or the object store was briefly unreachable.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, BotoConnectionError, BotoCoreError, StorageError, OSError)
MAX_RETRIES = 5


@shared_task(
    bind=True,
    name="registry.tasks.compose_adapter",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=MAX_RETRIES,
    soft_time_limit=settings.COMPOSE_TIME_LIMIT,
    time_limit=settings.COMPOSE_TIME_LIMIT + 60,
)
def compose_adapter(self: Task, job_id: str) -> str | None:
    try:
        job = run_composition(job_id, worker=self.request.hostname or "worker")
    except LeaseHeld as held:
        # A live worker still runs it (this is a redelivered duplicate): look again later.
        raise self.retry(countdown=held.seconds, max_retries=None) from None
    except SoftTimeLimitExceeded:
        _fail(job_id, "timeout", f"the composition ran past its {settings.COMPOSE_TIME_LIMIT}-second limit")
        return None
    except TRANSIENT_ERRORS as exc:
        if self.request.retries >= MAX_RETRIES:
            _fail(job_id, "transient_error", f"gave up after {MAX_RETRIES} retries: {exc}")
            raise
        log.warning("job %s: transient error, retrying: %s", job_id, exc)
        jobs.release(CompositionJob, job_id)
        raise self.retry(exc=exc, countdown=min(2 ** self.request.retries, 60)) from None
    return job.status if job is not None else None


def _fail(job_id: str, code: str, message: str, model: type = CompositionJob) -> None:
    jobs.fail(model, job_id, code=code, message=message)


@shared_task(
    bind=True,
    name="registry.tasks.evaluate_version",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=MAX_RETRIES,
    soft_time_limit=settings.EVAL_TIME_LIMIT,
    time_limit=settings.EVAL_TIME_LIMIT + 60,
)
def evaluate_version(self: Task, request_id: str) -> str | None:
    """Score one version on one suite, on the `gpu` queue (workers run one job at a time)."""
    try:
        request = run_evaluation(request_id, worker=self.request.hostname or "worker")
    except LeaseHeld as held:
        raise self.retry(countdown=held.seconds, max_retries=None) from None
    except SoftTimeLimitExceeded:
        _fail(request_id, "timeout", f"the evaluation ran past its {settings.EVAL_TIME_LIMIT}-second limit", EvaluationRequest)
        return None
    except TRANSIENT_ERRORS as exc:
        if self.request.retries >= MAX_RETRIES:
            _fail(request_id, "transient_error", f"gave up after {MAX_RETRIES} retries: {exc}", EvaluationRequest)
            raise
        jobs.release(EvaluationRequest, request_id)
        raise self.retry(exc=exc, countdown=min(2 ** self.request.retries, 60)) from None
    return request.status if request is not None else None

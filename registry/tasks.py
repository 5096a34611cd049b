"""Celery tasks. Each takes IDs only, is idempotent, and is acknowledged only once done
(`acks_late`), so a worker killed mid-job leads to a redelivery that finishes the job once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError
from botocore.exceptions import ConnectionError as BotoConnectionError
from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError

from registry import facet_counts, jobs, reconcile
from registry.autocompose import run_search
from registry.compositions import run_composition
from registry.evaluations import run_baseline, run_evaluation
from registry.jobs import LeaseHeld
from registry.models import BaselineEvaluation, CompositionJob, EvaluationRequest
from storage import StorageError

log = logging.getLogger(__name__)

# Errors worth another try: the database or the object store was briefly unreachable.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, BotoConnectionError, BotoCoreError, StorageError, OSError)
MAX_RETRIES = 5


def _run_job(task: Task, model: type[Any], job_id: str, run: Callable[..., Any], time_limit: int) -> str | None:
    """Run one job under the rules every worker task shares.

    - A live worker still holds the job (a redelivered duplicate): look again once its lease lapses.
    - The soft time limit fails the job with a clear message.
    - Transient database or storage errors hand the job back and retry with backoff; after
      MAX_RETRIES the job fails.
    - Any other exception fails the job with its type and message.
    Domain errors are not raised here: `run` records them on the job.
    """
    try:
        job = run(job_id, worker=task.request.hostname or "worker")
    except LeaseHeld as held:
        raise task.retry(countdown=held.seconds, max_retries=None) from None
    except SoftTimeLimitExceeded:
        jobs.fail(model, job_id, code="timeout", message=f"the job ran past its {time_limit}-second limit")
        return None
    except TRANSIENT_ERRORS as exc:
        if task.request.retries >= MAX_RETRIES:
            jobs.fail(model, job_id, code="transient_error", message=f"gave up after {MAX_RETRIES} retries: {exc}")
            raise
        log.warning("%s %s: transient error, retrying: %s", model.__name__, job_id, exc)
        jobs.release(model, job_id)
        raise task.retry(exc=exc, countdown=min(2**task.request.retries, 60)) from None
    except Exception as exc:
        # A bug or an input the loaders did not expect: the job fails with what happened, never
        # stays running (the traceback is in the worker's log).
        log.exception("%s %s failed", model.__name__, job_id)
        jobs.fail(model, job_id, code="internal_error", message=f"{type(exc).__name__}: {exc}")
        return "failed"
    return job.status if job is not None else None


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
    """Run one composition job, on the `compose` queue."""
    return _run_job(self, CompositionJob, job_id, run_composition, settings.COMPOSE_TIME_LIMIT)


@shared_task(name="registry.tasks.fold_facet_counts", ignore_result=True)
def fold_facet_counts() -> None:
    """Fold the catalog's pending count changes into its counts (registry/facet_counts.py); run by beat."""
    facet_counts.fold()


@shared_task(name="registry.tasks.count_common_searches", ignore_result=True)
def count_common_searches() -> list[list[str]]:
    """Have the database count the most searched common searches on write (registry/facet_counts.py); run by beat."""
    return [list(words) for words in facet_counts.promote()]


@shared_task(name="registry.tasks.reconcile_jobs", ignore_result=True)
def reconcile_jobs() -> dict[str, int]:
    """Send lost jobs again and reclaim abandoned ones (registry/reconcile.py); run by beat."""
    report = reconcile.reconcile_jobs()
    return {
        "redispatched": len(report.redispatched),
        "reclaimed": len(report.reclaimed),
        "abandoned": len(report.abandoned),
    }


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
    """Score one version on one suite, on the `gpu` queue (GPU workers run one job at a time)."""
    return _run_job(self, EvaluationRequest, request_id, run_evaluation, settings.EVAL_TIME_LIMIT)


@shared_task(
    bind=True,
    name="registry.tasks.evaluate_search",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=MAX_RETRIES,
    soft_time_limit=settings.EVAL_TIME_LIMIT,
    time_limit=settings.EVAL_TIME_LIMIT + 60,
)
def evaluate_search(self: Task, job_id: str) -> str | None:
    """Search the weights of a composition against eval suites, on the `gpu` queue (composition
    method `search`, registry/autocompose.py)."""
    return _run_job(self, CompositionJob, job_id, run_search, settings.EVAL_TIME_LIMIT)


@shared_task(
    bind=True,
    name="registry.tasks.evaluate_baseline",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=MAX_RETRIES,
    soft_time_limit=settings.EVAL_TIME_LIMIT,
    time_limit=settings.EVAL_TIME_LIMIT + 60,
)
def evaluate_baseline(self: Task, baseline_id: str) -> str | None:
    """Score the bare base model on one suite, on the `gpu` queue beside the adapters' evaluations."""
    return _run_job(self, BaselineEvaluation, baseline_id, run_baseline, settings.EVAL_TIME_LIMIT)

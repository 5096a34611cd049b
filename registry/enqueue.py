"""The one place jobs are sent to the workers: by task name, so nothing but the Celery app imports
registry.tasks (the tasks import the use cases; the use cases never import the tasks).

Requests send a job once the transaction that created its row commits (`on_commit`); the
reconciler sends again what was lost (`send`). Celery routes each name to its queue
(hub/celery.py: compositions to `compose`, evaluations to `gpu`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import current_app
from django.db import models, transaction
from django.utils import timezone

from registry.models import BaselineEvaluation, CompositionJob, EvaluationRequest

TASK_NAMES: dict[type[models.Model], str] = {
    CompositionJob: "registry.tasks.compose_adapter",
    EvaluationRequest: "registry.tasks.evaluate_version",
    BaselineEvaluation: "registry.tasks.evaluate_baseline",
}
# Every kind of job row: what the reconciler and the audit go through.
JobModel = type[CompositionJob] | type[EvaluationRequest] | type[BaselineEvaluation]
JOB_MODELS: tuple[JobModel, ...] = (CompositionJob, EvaluationRequest, BaselineEvaluation)
assert set(JOB_MODELS) == set(TASK_NAMES), "every job model has a task, and the reconciler goes through each"


def publish(task_name: str, job_id: str) -> None:
    """Hand one message to the broker; raises what the broker raised."""
    current_app.send_task(task_name, args=[job_id])


# A composition whose weights the hub searches runs on the GPU workers, beside the evaluations.
SEARCH_TASK = "registry.tasks.evaluate_search"


def task_for(model: type[models.Model], job_id: Any) -> str:
    if model is CompositionJob and CompositionJob.objects.filter(pk=job_id, recipe__method="search").exists():
        return SEARCH_TASK
    return TASK_NAMES[model]


def send(model: type[models.Model], job_id: Any) -> None:
    """Send a job's task now and record when; raises what the broker raised."""
    publish(task_for(model, job_id), str(job_id))
    model._default_manager.filter(pk=job_id).update(dispatched_at=timezone.now())


def on_commit(model: type[models.Model], job_id: Any, *, if_broker_down: Callable[[BaseException], None]) -> None:
    """Send the job once the current transaction commits; if the broker fails then,
    `if_broker_down(exc)` decides (it may raise, or leave the row for the reconciler)."""

    def go() -> None:
        try:
            send(model, job_id)
        except Exception as exc:
            if_broker_down(exc)

    transaction.on_commit(go)

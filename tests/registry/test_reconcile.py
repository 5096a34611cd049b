"""The reconciler: no job stays queued or running forever (registry/reconcile.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from registry.models import CompositionJob, JobStatus
from registry.reconcile import reconcile_jobs
from tests.helpers import broker_down, json_of, push_folder

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def eager(lost_job: CompositionJob, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """From here on (the lost job exists), tasks run in the calling process as they are sent (by
    name, through registry.enqueue), as a worker would run them."""
    import registry.tasks  # noqa: F401  (registers the tasks, as a worker's autodiscovery does)
    from hub.celery import app
    from registry import enqueue

    monkeypatch.setattr(enqueue, "publish", lambda task_name, job_id: app.tasks[task_name].apply(args=[job_id]))
    yield


@pytest.fixture
def lost_job(alice: Any, client_for: Any, lora_dir: Path, lora_dir_2: Path) -> CompositionJob:
    """A job whose task never reached a worker: the broker restarted empty after accepting it."""
    client = client_for(alice)
    assert push_folder(client, "alice/sql", lora_dir).status_code == 201
    assert push_folder(client, "alice/chat", lora_dir_2).status_code == 201
    response = client.post(
        "/api/v1/compositions/",
        {
            "method": "stack",
            "inputs": [{"adapter": "alice/sql", "weight": 1}, {"adapter": "alice/chat", "weight": 1}],
            "into": "alice/mix",
        },
        format="json",
    )
    assert response.status_code == 202
    job = CompositionJob.objects.get(pk=json_of(response)["id"])
    assert job.dispatched_at is not None
    ten_minutes_ago = timezone.now() - timedelta(minutes=10)
    CompositionJob.objects.filter(pk=job.pk).update(created_at=ten_minutes_ago, dispatched_at=ten_minutes_ago)
    return job


def test_a_queued_job_whose_task_was_lost_is_sent_again_and_runs(eager: None, lost_job: CompositionJob) -> None:
    report = reconcile_jobs()

    assert report.redispatched == [str(lost_job.pk)]
    lost_job.refresh_from_db()
    assert lost_job.status == JobStatus.SUCCEEDED and lost_job.result_version is not None
    assert reconcile_jobs().redispatched == [], "a job is sent again only after JOB_REDISPATCH_SECONDS"


def test_a_recently_sent_job_is_left_alone(eager: None, lost_job: CompositionJob) -> None:
    CompositionJob.objects.filter(pk=lost_job.pk).update(dispatched_at=timezone.now())
    assert reconcile_jobs().redispatched == []
    lost_job.refresh_from_db()
    assert lost_job.status == JobStatus.QUEUED


def test_a_running_job_whose_worker_vanished_is_reclaimed_then_abandoned_after_its_attempts(
    eager: None, settings: Any, lost_job: CompositionJob
) -> None:
    expired = timezone.now() - timedelta(minutes=5)
    CompositionJob.objects.filter(pk=lost_job.pk).update(status=JobStatus.RUNNING, lease_expires_at=expired, attempts=1)
    report = reconcile_jobs()
    assert report.reclaimed == [str(lost_job.pk)]
    lost_job.refresh_from_db()
    assert lost_job.status == JobStatus.SUCCEEDED

    again = CompositionJob.objects.create(
        created_by=lost_job.created_by, recipe=lost_job.recipe, recipe_hash=lost_job.recipe_hash, forced=True,
        target_namespace="alice", target_name="mix", status=JobStatus.RUNNING, lease_expires_at=expired,
        attempts=settings.JOB_MAX_ATTEMPTS,
    )  # fmt: skip
    assert reconcile_jobs().abandoned == [str(again.pk)]
    again.refresh_from_db()
    assert again.status == JobStatus.FAILED and again.error_code == "abandoned"


def test_with_the_broker_down_jobs_stay_queued_for_the_next_round(lost_job: CompositionJob) -> None:
    with broker_down():
        report = reconcile_jobs()
    assert report.broker_down and report.redispatched == []
    lost_job.refresh_from_db()
    assert lost_job.status == JobStatus.QUEUED

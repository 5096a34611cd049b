"""Real Celery workers on Redis and PostgreSQL run composition jobs, and survive being killed."""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from registry.access import Actor
from registry.models import AdapterVersion, CompositionJob, JobStatus, VersionParent
from registry.push import IncomingFile, push_version
from registry.services import register_base_model
from tests.audit import assert_consistent
from tests.factories import make_synthetic_lora, synthetic_manifest
from tests.helpers import json_of
from tests.plugins.workers import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def start_big_ties(alice: Any, client_for: Any, tmp_path: Path) -> str:
    """Ask for a TIES merge of inputs large enough that it takes seconds (so a fault lands mid-job);
    return the job's id once a worker runs it."""
    push_synthetic(alice, "big-a", make_synthetic_lora(tmp_path / "a", seed=1, layers=2))
    push_synthetic(alice, "big-b", make_synthetic_lora(tmp_path / "b", seed=2, layers=2))
    response = client_for(alice).post(
        "/api/v1/compositions/",
        {
            "method": "ties",
            "inputs": [{"adapter": "alice/big-a", "weight": 0.6}, {"adapter": "alice/big-b", "weight": 0.4}],
            "parameters": {"density": 0.5, "seed": 7},
            "into": "alice/big-ties",
        },
        format="json",
    )
    job_id: str = json_of(response)["id"]
    wait_for(
        lambda: CompositionJob.objects.filter(pk=job_id, status=JobStatus.RUNNING, progress__gte=10).exists(),
        timeout=90, what="the job to be running", logs=tmp_path,
    )  # fmt: skip
    return job_id


def push_synthetic(user: Any, name: str, folder: Path) -> None:
    register_base_model(name="hub-test/llama-1024", manifest=synthetic_manifest(layers=2))
    files = [
        IncomingFile(path=p.name, stream=io.BytesIO(p.read_bytes()), size=p.stat().st_size)
        for p in sorted(folder.iterdir())
    ]
    push_version(actor=Actor(user=user), namespace=user.username, name=name, files=files)


def test_a_real_worker_composes_a_job_submitted_through_the_api(
    alice: Any, client_for: Any, lora_dir: Path, lora_dir_2: Path, start_worker: Any, tmp_path: Path
) -> None:
    from tests.helpers import push_folder

    client = client_for(alice)
    push_folder(client, "alice/sql", lora_dir)
    push_folder(client, "alice/chat", lora_dir_2)
    start_worker("w1")

    response = client.post(
        "/api/v1/compositions/", {"expression": "0.6*alice/sql + 0.4*alice/chat", "into": "alice/mixed"}, format="json"
    )
    assert response.status_code == 202, response.content
    job_id = json_of(response)["id"]

    job = wait_for(
        lambda: CompositionJob.objects.filter(pk=job_id, status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]).first(),
        timeout=90,
        what="the worker to finish the job",
        logs=tmp_path,
    )
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    assert job.worker.startswith("w1@")
    body = json_of(client.get("/api/v1/adapters/alice/mixed/versions/1/"))
    assert {f["path"] for f in body["files"]} >= {"adapter_model.safetensors", "composition.json", "README.md"}
    assert VersionParent.objects.filter(child__adapter__name="mixed").count() == 2


def test_a_worker_killed_mid_job_is_retried_and_yields_exactly_one_version(
    alice: Any, client_for: Any, start_worker: Any, tmp_path: Path
) -> None:
    first = start_worker("doomed")
    job_id = start_big_ties(alice, client_for, tmp_path)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    killed = CompositionJob.objects.get(pk=job_id)
    assert killed.status == JobStatus.RUNNING and killed.progress < 100

    start_worker("rescuer")
    job = wait_for(
        lambda: CompositionJob.objects.filter(pk=job_id, status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]).first(),
        timeout=150,
        what="the redelivered job to finish",
        logs=tmp_path,
    )

    assert job.status == JobStatus.SUCCEEDED, job.error_message
    assert job.attempts >= 2 and job.worker.startswith("rescuer@")
    assert AdapterVersion.objects.filter(adapter__name="big-ties").count() == 1
    assert VersionParent.objects.filter(child__adapter__name="big-ties").count() == 2
    assert_consistent(settled=True)


def test_jobs_queued_when_redis_restarts_empty_are_sent_again_by_the_reconciler(
    alice: Any, client_for: Any, lora_dir: Path, lora_dir_2: Path, redis_broker: str, start_worker: Any, tmp_path: Path
) -> None:
    import redis

    from tests.helpers import push_folder

    client = client_for(alice)
    push_folder(client, "alice/sql", lora_dir)
    push_folder(client, "alice/chat", lora_dir_2)
    response = client.post(
        "/api/v1/compositions/", {"expression": "0.6*alice/sql + 0.4*alice/chat", "into": "alice/mixed"}, format="json"
    )
    assert response.status_code == 202, response.content
    job_id = json_of(response)["id"]
    redis.Redis.from_url(redis_broker).flushdb()  # Redis restarted empty: the job's message is gone

    # A worker with beat, as `make run` starts it (the reconciler's task goes to `default`); it
    # runs every second here.
    start_worker(
        "w-beat", "-Q", "compose,default", "--beat", "--schedule", str(tmp_path / "beat-schedule"),
        JOB_RECONCILE_SECONDS="1", JOB_REDISPATCH_SECONDS="1",
    )  # fmt: skip
    job = wait_for(
        lambda: CompositionJob.objects.filter(pk=job_id, status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]).first(),
        timeout=90,
        what="the reconciler to send the lost job again and the worker to run it",
        logs=tmp_path,
    )
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    assert AdapterVersion.objects.filter(adapter__name="mixed").count() == 1
    assert_consistent(settled=True)

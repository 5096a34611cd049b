"""Real Celery workers on Redis and PostgreSQL run composition jobs, and survive being killed."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from hub.celery import app as celery_app
from registry import compositions
from registry.access import Actor
from registry.models import AdapterVersion, CompositionJob, JobStatus, VersionParent
from registry.push import IncomingFile, push_version
from registry.tasks import compose_adapter
from registry.services import register_base_model
from tests.factories import make_synthetic_lora, synthetic_manifest
from tests.helpers import json_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("HUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail(f"Redis is not running at {REDIS_URL}: `make test` starts it (.ci/services.sh)")
    client.flushdb()

    def enqueue(job: CompositionJob) -> None:
        with celery_app.connection_for_write(REDIS_URL) as broker:
            compose_adapter.apply_async(args=[str(job.pk)], connection=broker)

    monkeypatch.setattr(compositions, "_enqueue", enqueue)
    yield REDIS_URL
    client.flushdb()


@pytest.fixture
def start_worker(redis_broker: str, local_blob_store: Path, tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    if connection.vendor != "postgresql":
        pytest.fail("worker tests need PostgreSQL: run them through `make test`")
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "STORAGE_BACKEND": "local",
        "BLOB_DIR": str(local_blob_store),
        "CELERY_BROKER_URL": redis_broker,
        # Short timeouts so a killed worker's job comes back within seconds, not an hour.
        "CELERY_VISIBILITY_TIMEOUT": "3",
        "CELERY_UNACKED_RESTORE_INTERVAL": "1",
        "CELERY_UNACKED_RESTORE_THROTTLE": "1",
        "JOB_LEASE_SECONDS": "3",
        "PYTHONUNBUFFERED": "1",
    }
    workers: list[subprocess.Popen[bytes]] = []

    def start(name: str, *extra: str, **more_env: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"{name}.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "hub", "worker", "-Q", "compose", "--concurrency", "1",
             "--hostname", f"{name}@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO", *extra],
            cwd=REPO, env={**env, **more_env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str, logs: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    tail = "".join(p.read_text()[-3000:] for p in sorted(logs.glob("*.log"))) if logs else ""
    pytest.fail(f"timed out after {timeout}s waiting for {what}\n{tail}")


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
        timeout=90, what="the worker to finish the job", logs=tmp_path,
    )
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    assert job.worker.startswith("w1@")
    body = json_of(client.get("/api/v1/adapters/alice/mixed/versions/1/"))
    assert {f["path"] for f in body["files"]} >= {"adapter_model.safetensors", "composition.json", "README.md"}
    assert VersionParent.objects.filter(child__adapter__name="mixed").count() == 2


def test_a_worker_killed_mid_job_is_retried_and_yields_exactly_one_version(
    alice: Any, client_for: Any, start_worker: Any, tmp_path: Path
) -> None:
    # Inputs large enough that TIES takes seconds, so the kill lands mid-job.
    push_synthetic(alice, "big-a", make_synthetic_lora(tmp_path / "a", seed=1, layers=2))
    push_synthetic(alice, "big-b", make_synthetic_lora(tmp_path / "b", seed=2, layers=2))
    first = start_worker("doomed")
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
    job_id = json_of(response)["id"]

    wait_for(
        lambda: CompositionJob.objects.filter(pk=job_id, status=JobStatus.RUNNING, progress__gte=10).exists(),
        timeout=90, what="the job to be running", logs=tmp_path,
    )
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    killed = CompositionJob.objects.get(pk=job_id)
    assert killed.status == JobStatus.RUNNING and killed.progress < 100

    start_worker("rescuer")
    job = wait_for(
        lambda: CompositionJob.objects.filter(pk=job_id, status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]).first(),
        timeout=150, what="the redelivered job to finish", logs=tmp_path,
    )

    assert job.status == JobStatus.SUCCEEDED, job.error_message
    assert job.attempts >= 2 and job.worker.startswith("rescuer@")
    assert AdapterVersion.objects.filter(adapter__name="big-ties").count() == 1
    assert VersionParent.objects.filter(child__adapter__name="big-ties").count() == 2


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
        timeout=90, what="the reconciler to send the lost job again and the worker to run it", logs=tmp_path,
    )
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    assert AdapterVersion.objects.filter(adapter__name="mixed").count() == 1

"""Real Celery workers for tests: a Redis broker of the tests' own and worker processes on
PostgreSQL, started as production starts them, killed at the end (or mid-job, by the test)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

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

    from hub.celery import app as celery_app
    from registry import enqueue

    def through_test_broker(task_name: str, job_id: str) -> None:
        with celery_app.connection_for_write(REDIS_URL) as broker:
            celery_app.send_task(task_name, args=[job_id], connection=broker)

    # Requests and the reconciler send jobs through registry.enqueue; here to the tests' Redis.
    monkeypatch.setattr(enqueue, "publish", through_test_broker)
    yield REDIS_URL
    client.flushdb()


@pytest.fixture
def start_worker(
    redis_broker: str, local_blob_store: Path, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """start(name, *celery args, **env) starts a worker on the `compose` queue (pass -Q to change)."""
    from django.conf import settings
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.fail("worker tests need PostgreSQL: run them through `make test`")
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "STORAGE_BACKEND": "local",
        "BLOB_DIR": str(local_blob_store),
        "WORKER_BLOB_CACHE_DIR": str(settings.WORKER_BLOB_CACHE_DIR),
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
        queues = () if "-Q" in extra else ("-Q", "compose")
        # Read now: a test may point the hub at its base model folders after this fixture ran.
        more_env.setdefault("HUB_BASE_MODEL_PATHS", ",".join(settings.HUB_BASE_MODEL_PATHS))
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "hub",
                "worker",
                *queues,
                "--concurrency",
                "1",
                "--hostname",
                f"{name}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
                *extra,
            ],
            cwd=REPO,
            env={**env, **more_env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
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

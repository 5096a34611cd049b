"""Fault injection: the database connections of a gunicorn hub and of a Celery worker are cut
through a TCP proxy. The web process answers the next request as if nothing happened, answers
JSON 503 while the database is unreachable and writes nothing half; a composition cut mid-task
is reclaimed and finished once. Each test ends with the consistency audit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.db import connection

from registry.models import AdapterVersion, CompositionJob, JobStatus, VersionFile, VersionParent
from registry.services import issue_token
from tests.audit import assert_consistent
from tests.helpers import folder_files
from tests.plugins.workers import REPO, wait_for
from tests.registry.test_composition_worker import start_big_ties
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def db_proxy() -> Iterator[TcpProxy]:
    if connection.vendor != "postgresql":
        pytest.fail("database cut tests need PostgreSQL: run them through `make test`")
    proxy = TcpProxy(int(connection.settings_dict["PORT"] or 5432), connection.settings_dict["HOST"] or "127.0.0.1")
    yield proxy
    proxy.close()


def database_url(port: int) -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@127.0.0.1:{port}/{db['NAME']}"


@pytest.fixture
def gunicorn_hub(db_proxy: TcpProxy, local_blob_store: Path, tmp_path: Path) -> Iterator[str]:
    """A production-like hub process (gunicorn, DEBUG off, one sync worker that keeps its database
    connection between requests) whose database is reached through the proxy."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ, "DATABASE_URL": database_url(db_proxy.port), "DEBUG": "False", "SECRET_KEY": "test-only",
        "ALLOWED_HOSTS": "127.0.0.1", "STORAGE_BACKEND": "local", "BLOB_DIR": str(local_blob_store),
        "PYTHONUNBUFFERED": "1",
    }  # fmt: skip
    log = (tmp_path / "gunicorn.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "hub.wsgi", "-w", "1", "-b", f"127.0.0.1:{port}", "--timeout", "120"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(f"{url}/healthz", timeout=5).status_code < 500
        except requests.RequestException:
            return False

    try:
        wait_for(up, timeout=60, what="gunicorn to answer", logs=tmp_path)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_the_web_process_survives_database_cuts_and_answers_503_while_it_is_gone(
    gunicorn_hub: str, db_proxy: TcpProxy, alice: Any, lora_dir: Path, lora_dir_2: Path
) -> None:
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {issue_token(user=alice, name='t', scope='write').secret}"

    def push(name: str, folder: Path) -> requests.Response:
        files = [("files", (path, data)) for path, data in folder_files(folder)]
        return api.post(f"{gunicorn_hub}/api/v1/adapters/alice/{name}/versions/", files=files, timeout=60)

    assert api.get(f"{gunicorn_hub}/api/v1/whoami/", timeout=10).status_code == 200
    assert db_proxy.cut() >= 1, "the web process kept its connection open between requests"

    after_cut = api.get(f"{gunicorn_hub}/api/v1/whoami/", timeout=10)
    assert after_cut.status_code == 200, after_cut.text  # the health check reconnects, no 500

    db_proxy.cut(refuse=True)
    while_down = [api.get(f"{gunicorn_hub}/api/v1/adapters/", timeout=30), push("during-outage", lora_dir)]
    for response in while_down:
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "database_unavailable"
        assert "127.0.0.1" not in response.text and "postgres" not in response.text.lower()

    db_proxy.restore()
    assert push("after-outage", lora_dir_2).status_code == 201
    assert api.get(f"{gunicorn_hub}/api/v1/adapters/alice/after-outage/", timeout=10).status_code == 200
    assert not AdapterVersion.objects.filter(adapter__name="during-outage").exists()
    assert_consistent()


def test_a_composition_whose_database_connection_is_cut_mid_task_finishes_once(
    db_proxy: TcpProxy, alice: Any, client_for: Any, start_worker: Callable[..., Any], tmp_path: Path
) -> None:
    start_worker(
        "cut", "-Q", "compose,default", "--beat", "--schedule", str(tmp_path / "beat-schedule"),
        DATABASE_URL=database_url(db_proxy.port), JOB_RECONCILE_SECONDS="1", JOB_REDISPATCH_SECONDS="2",
    )  # fmt: skip
    job_id = start_big_ties(alice, client_for, tmp_path)

    assert db_proxy.cut() >= 1  # the worker's connection drops mid-task; new ones get through

    job = wait_for(
        lambda: CompositionJob.objects.filter(pk=job_id, status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]).first(),
        timeout=150, what="the cut job to be finished", logs=tmp_path,
    )  # fmt: skip
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    assert AdapterVersion.objects.filter(adapter__name="big-ties").count() == 1
    assert VersionParent.objects.filter(child__adapter__name="big-ties").count() == 2
    assert VersionFile.objects.filter(version__adapter__name="big-ties").exists()
    assert_consistent(settled=True)

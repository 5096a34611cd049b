"""A real Celery worker evaluates on the `gpu` queue, and an evaluation whose worker is SIGKILLed
mid-run is taken over and recorded exactly once."""

from __future__ import annotations

import os
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from registry.models import EvalResult, EvaluationRequest, JobStatus
from tests.audit import assert_consistent
from tests.helpers import json_of
from tests.plugins.workers import wait_for
from tests.registry.evals.conftest import create_suite

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED)
# The workers' leases last 3 s (tests/plugins/workers.py): a lease reaching 8 s past the start was
# renewed by the evaluation's progress at least 5 s in.
RENEWED = timedelta(seconds=8)


def test_a_worker_killed_mid_evaluation_is_taken_over_and_yields_one_result(
    hub: Any, start_worker: Any, tmp_path: Path
) -> None:
    from demo.skills import SKILLS

    # One example a batch, many examples: the evaluation runs for seconds, renewing its lease.
    lines = SKILLS[0].exact_match_lines() * 300
    assert create_suite(hub, "capital-long", "exact_match", lines).status_code == 201
    doomed = start_worker("doomed", "-Q", "gpu", EVAL_BATCH_SIZE="1")
    response = hub.post(
        "/api/v1/adapters/alice/capital/versions/1/evaluations/", {"suites": ["capital-long"]}, format="json"
    )
    request_id = json_of(response)[0]["id"]

    def renewed_while_running() -> bool:
        job = EvaluationRequest.objects.get(pk=request_id)
        return (
            job.status == JobStatus.RUNNING
            and job.lease_expires_at is not None
            and job.lease_expires_at > job.started_at + RENEWED
        )

    wait_for(renewed_while_running, timeout=120, what="the evaluation to run past its first lease", logs=tmp_path)
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait()
    assert EvaluationRequest.objects.get(pk=request_id).status == JobStatus.RUNNING

    start_worker("rescuer", "-Q", "gpu", EVAL_BATCH_SIZE="16")
    job = wait_for(
        lambda: EvaluationRequest.objects.filter(pk=request_id, status__in=FINISHED).first(),
        timeout=180, what="the redelivered evaluation to finish", logs=tmp_path,
    )  # fmt: skip

    assert job.status == JobStatus.SUCCEEDED, job.error_message
    assert job.attempts >= 2 and job.worker.startswith("rescuer@")
    result = EvalResult.objects.get(request=job)
    assert result.samples == len(lines) and result.worker.startswith("rescuer@")
    assert_consistent(settled=True)

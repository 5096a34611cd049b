"""compose / job / wait, and evaluate / scores, from the client against the hub's APIs.

No Celery worker runs here: the hub's enqueue step is replaced by running the job at once in the
request that queued it, as a worker would pick it up.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client import HubClient, HubError, JobFailed
from client.cli import main
from registry import compositions, enqueue
from registry.models import AdapterVersion, BaseModel, CompositionJob, EvalResult, EvalSuite
from tests.client.helpers import folder_bytes
from tests.factories import BASE_MODEL_NAME

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    ran: list[str] = []

    def run_now(task_name: str, job_id: str) -> None:
        if task_name == enqueue.TASK_NAMES[CompositionJob]:  # evaluations stay queued
            ran.append(job_id)
            compositions.run_composition(job_id, worker="test-worker")

    monkeypatch.setattr(enqueue, "publish", run_now)
    return ran


@pytest.fixture
def two(hub: HubClient, lora_dir: Path, lora_dir_2: Path) -> HubClient:
    hub.push(lora_dir, "alice/sql")
    hub.push(lora_dir_2, "alice/chat")
    return hub


def test_an_expression_composes_into_a_new_version_that_pulls_and_loads(two: HubClient, worker: list[str]) -> None:
    job = two.compose("0.7*alice/sql:1 + 0.5*alice/chat", into="alice/mix", method="linear", parameters={"rank": 4})
    done = two.wait(job, timeout=60, interval=0.1)

    assert job.status in ("queued", "succeeded") and worker == [job.id]
    assert done.status == "succeeded" and done.progress == 100 and done.result_ref == "alice/mix:1"
    result = two.job(job.id).result or {}
    assert [j.id for j in two.jobs()] == [job.id] and (result["adapter"], result["version"]) == ("alice/mix", 1)
    pulled = two.pull(done.result_ref)
    assert AdapterVersion.objects.get(adapter__name="mix").rank == 4

    import torch
    from peft import PeftModel

    from tests.factories import tiny_llama

    with torch.no_grad():
        logits = PeftModel.from_pretrained(tiny_llama(), pulled.path)(torch.tensor([[1, 2, 3]])).logits
    assert torch.isfinite(logits).all()
    again = two.compose("0.7*alice/sql:1 + 0.5*alice/chat", into="alice/mix", method="linear", parameters={"rank": 4})
    assert again.id == job.id, "an identical recipe answers its existing job"


def test_a_list_of_weighted_inputs_composes_too_and_the_cli_waits_for_it(
    two: HubClient, worker: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    job = two.compose([("alice/sql:1", 1.0), ("alice/chat:1", 1.0)], into="alice/stacked", method="cat")
    assert two.wait(job, interval=0.1).result_ref == "alice/stacked:1"

    monkeypatch.setenv("HUB_URL", two.url)
    monkeypatch.setenv("HUB_TOKEN", two.token or "")
    code = main(
        ["compose", "alice/sql - alice/chat", "--into", "alice/diff", "--method", "linear", "--rank", "4", "--wait",
         "--json", "-q"]
    )  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["status"] == "succeeded" and out["result"]["adapter"] == "alice/diff"
    code = main(["jobs", "--json", "-q"])
    assert code == 0 and len(json.loads(capsys.readouterr().out)) == 2


def test_a_failed_job_raises_with_its_reason(two: HubClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail_now(task_name: str, job_id: str) -> None:
        CompositionJob.objects.filter(pk=job_id).update(
            status="failed", error_code="worker_lost", error_message="the worker ran out of memory"
        )

    monkeypatch.setattr(enqueue, "publish", fail_now)
    job = two.compose("alice/sql + alice/chat", into="alice/mix", method="linear", parameters={"rank": 4})

    with pytest.raises(JobFailed) as failed:
        two.wait(job, interval=0.1)

    assert failed.value.code == "worker_lost" and "out of memory" in failed.value.message


def test_a_bad_recipe_is_refused_at_once(two: HubClient) -> None:
    with pytest.raises(HubError) as refused:
        two.compose("0.5*alice/sql + 0.5*alice/nope", into="alice/mix")
    assert refused.value.status == 404 and refused.value.code == "adapter_not_found"


def test_evaluate_queues_suites_and_scores_lists_results(
    hub: HubClient,
    worker: list[str],
    lora_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    version = hub.push(lora_dir, "alice/tiny-lora").version
    suite = EvalSuite.objects.create(
        base_model=BaseModel.objects.get(name=BASE_MODEL_NAME), name="sql-small", kind="exact_match",
        data_sha256="0" * 64, data_size=1, examples=1, metric="exact_match", higher_is_better=True,
    )  # fmt: skip

    requested = hub.evaluate("alice/tiny-lora", suites=["sql-small"])
    EvalResult.objects.create(
        version=AdapterVersion.objects.get(), eval_suite=suite, suite="sql-small", metric="exact_match", value=0.75,
        source="worker",
    )  # fmt: skip

    assert [(e.suite, e.version, e.status) for e in requested] == [("sql-small", version.version, "queued")]
    assert [(s.suite, s.metric, s.value) for s in hub.scores("alice/tiny-lora:1")] == [
        ("sql-small", "exact_match", 0.75)
    ]
    monkeypatch.setenv("HUB_URL", hub.url)
    monkeypatch.setenv("HUB_TOKEN", hub.token or "")
    assert main(["eval", "alice/tiny-lora", "-q"]) == 0
    assert "0.75" in capsys.readouterr().out
    assert folder_bytes(lora_dir)  # the adapter itself is untouched

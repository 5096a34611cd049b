"""The validation gate's verdict in `ahub`: `compose --wait` and `jobs ID --wait` wait for it and
exit by it, `eval --wait` waits for evaluations, and `info`, `jobs` and `eval` show it.

Compositions run at once, in the request that queued them; evaluations run a moment later in a
thread of their own, as a GPU worker would, with the real worker code around a scoring step that
returns the value each test chooses (no model is run).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection

from client import HubClient, cli
from client.cli import main
from composer.evaluation import EvaluationError
from registry import compositions, enqueue, evaluations
from registry.models import (
    AdapterVersion,
    BaselineEvaluation,
    BaseModel,
    CompositionJob,
    EvalResult,
    EvalSuite,
    EvaluationRequest,
)
from tests.factories import BASE_MODEL_NAME

pytestmark = pytest.mark.django_db(transaction=True)


class Workers:
    """What the fake GPU worker scores each suite (a number, or an EvaluationError to raise)."""

    def __init__(self) -> None:
        self.values: dict[str, float | EvaluationError] = {}
        self.delay = 0.3
        self.running = True  # False: evaluations stay queued (no GPU worker up)
        self.composing = True  # False: compositions stay queued (no compose worker up)
        self.threads: list[threading.Thread] = []


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch) -> Iterator[Workers]:
    state = Workers()

    def evaluate_later(request_id: str) -> None:
        try:
            evaluations.run_evaluation(request_id, worker="test-gpu")
        finally:
            connection.close()  # this thread's own connection

    def publish(task_name: str, job_id: str) -> None:
        if task_name == enqueue.TASK_NAMES[CompositionJob] and state.composing:
            compositions.run_composition(job_id, worker="test-compose")
        elif task_name == enqueue.TASK_NAMES[EvaluationRequest] and state.running:
            timer = threading.Timer(state.delay, evaluate_later, args=(job_id,))
            state.threads.append(timer)
            timer.start()

    def score(request: EvaluationRequest, cache: Any) -> Any:
        value = state.values[request.suite.name]
        if isinstance(value, EvaluationError):
            raise value
        return SimpleNamespace(
            metric=request.suite.metric, value=value, samples=8, tokens_per_second=100.0, device="cpu",
            precision="fp32", details={}, seconds=1.25,
        )  # fmt: skip

    monkeypatch.setattr(enqueue, "publish", publish)
    monkeypatch.setattr(evaluations, "_evaluate", score)
    monkeypatch.setattr(cli, "POLL_SECONDS", 0.05)
    monkeypatch.setattr(cli, "JOB_POLL_SECONDS", 0.05)
    yield state
    for thread in state.threads:
        thread.join()


@pytest.fixture
def parents(hub: HubClient, lora_dir: Path, lora_dir_2: Path, monkeypatch: pytest.MonkeyPatch) -> EvalSuite:
    """alice/sql and alice/chat, scored 0.8 and 0.6 on a suite the gate will check a mix of them on."""
    hub.push(lora_dir, "alice/sql")
    hub.push(lora_dir_2, "alice/chat")
    suite = EvalSuite.objects.create(
        base_model=BaseModel.objects.get(name=BASE_MODEL_NAME), name="sql-small", kind="exact_match",
        data_sha256="0" * 64, data_size=1, examples=8, metric="exact_match", higher_is_better=True,
    )  # fmt: skip
    for name, value in (("sql", 0.8), ("chat", 0.6)):
        EvalResult.objects.create(
            version=AdapterVersion.objects.get(adapter__name=name), eval_suite=suite, suite=suite.name,
            metric="exact_match", value=value, source="worker",
        )  # fmt: skip
    monkeypatch.setenv("HUB_URL", hub.url)
    monkeypatch.setenv("HUB_TOKEN", hub.token or "")
    return suite


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


COMPOSE = ("compose", "alice/sql + alice/chat", "--into", "alice/mix", "--method", "linear", "--rank", "4")


def test_compose_wait_waits_for_the_gate_and_shows_a_validated_verdict(
    parents: EvalSuite, workers: Workers, capsys: pytest.CaptureFixture[str]
) -> None:
    workers.values["sql-small"] = 0.79  # >= 0.95 * 0.8, the best parent

    code, out, err = run(capsys, *COMPOSE, "--wait")

    assert code == 0, err
    assert "waiting for the validation gate's verdict" in err, "the version was pending when the job finished"
    lines = out.splitlines()
    assert lines[0].startswith("job ") and lines[0].endswith("-> alice/mix:1")
    assert lines[1] == "validation: validated"
    assert lines[2].split() == ["SUITE", "METRIC", "VALUE", "REQUIRED", "BEST", "PARENT", "PASSED"]
    assert lines[3].split() == ["sql-small", "exact_match", "0.79", ">=", "0.76", "alice/sql:1", "(0.8)", "yes"]
    assert "\x1b[" not in out, "piped output is plain"


def test_a_rejected_composition_exits_3_with_the_reasons_in_its_json(
    parents: EvalSuite, workers: Workers, capsys: pytest.CaptureFixture[str]
) -> None:
    workers.values["sql-small"] = 0.5

    code, out, err = run(capsys, *COMPOSE, "--wait", "--json")

    assert code == cli.EXIT_REJECTED == 3
    job = json.loads(out)
    assert job["status"] == "succeeded" and job["result"]["validation"] == "rejected"
    [reason] = job["result"]["validation_reasons"]
    assert (reason["suite"], reason["value"], reason["passed"]) == ("sql-small", 0.5, False)
    error = json.loads(err)["error"]
    assert error["code"] == "validation_rejected" and "alice/mix:1 was rejected" in error["message"]

    code, out, err = run(capsys, "jobs", job["id"], "--wait")  # the same verdict, the same exit status
    assert code == 3 and "validation: rejected" in out and "ahub: error: alice/mix:1 was rejected" in err
    assert out.splitlines()[-1].split()[-1] == "no"


def test_the_wait_gives_up_after_the_timeout_with_exit_124_and_the_version_pending(
    parents: EvalSuite, workers: Workers, capsys: pytest.CaptureFixture[str]
) -> None:
    workers.running = False  # no GPU worker: the gate's evaluations stay queued

    code, out, err = run(capsys, *COMPOSE, "--wait", "--timeout", "0.5", "--json")

    assert code == cli.EXIT_TIMEOUT == 124
    assert json.loads(out)["result"]["validation"] == "pending"
    assert json.loads(err)["error"]["code"] == "timeout" and "not decided on alice/mix:1" in err

    code, out, _ = run(capsys, *COMPOSE, "--wait", "--job-only")  # the same recipe: its job, at once
    assert code == 0 and "validation: pending" in out

    code, out, err = run(capsys, "eval", "alice/mix:1", "--wait", "--timeout", "0.3")
    assert code == 124 and "1 evaluations (sql-small) still queued or running" in err
    assert "no scores for alice/mix:1 yet" in out and "validation: pending" in out

    workers.composing = False
    code, out, err = run(capsys, *COMPOSE, "--wait", "--force", "--timeout", "0.3", "--json")
    assert code == 124 and json.loads(out)["status"] == "queued" and "is still queued after 0.3 s" in err


def test_eval_wait_runs_the_suites_asked_for_then_prints_scores_and_verdict(
    parents: EvalSuite, workers: Workers, capsys: pytest.CaptureFixture[str]
) -> None:
    workers.values["sql-small"] = 0.7

    code, out, err = run(capsys, "eval", "alice/sql", "--suite", "sql-small", "--force", "--wait", "--json")

    assert code == 0, err
    report = json.loads(out)
    assert (report["adapter"], report["version"], report["validation"]) == ("alice/sql", 1, "none")
    assert [(s["suite"], s["value"]) for s in report["scores"]] == [("sql-small", 0.7)]
    assert [(e["suite"], e["status"]) for e in report["evaluations"]] == [("sql-small", "succeeded")]

    # The bare base model's score on the suite, the baseline the adapter's is read against.
    BaselineEvaluation.objects.create(
        suite=parents, status="succeeded", metric="exact_match", value=0.25, precision="fp32"
    )
    code, out, _ = run(capsys, "eval", "alice/sql")
    header, row, verdict = out.splitlines()
    assert header.split() == [
        "SUITE",
        "METRIC",
        "VALUE",
        "BASE",
        "MODEL",
        "SAMPLES",
        "PRECISION",
        "SOURCE",
        "TOOK",
        "WHEN",
    ]
    assert row.split()[:8] == ["sql-small", "exact_match", "0.7", "0.25", "8", "fp32", "worker", "1.2"]
    assert verdict == "validation: none"


def test_a_failed_evaluation_makes_eval_wait_exit_1_and_says_why(
    parents: EvalSuite, workers: Workers, capsys: pytest.CaptureFixture[str]
) -> None:
    workers.values["sql-small"] = EvaluationError("bad_suite", "the suite's answers are empty")

    code, out, err = run(capsys, "eval", "alice/chat", "--suite", "sql-small", "--force", "--wait")

    assert code == 1
    assert "sql-small: evaluation failed: the suite's answers are empty" in out
    assert "1 evaluations of alice/chat:1 failed: sql-small [evaluation_failed]" in err


def test_eval_wait_on_a_composed_version_waits_for_the_gates_evaluations_and_verdict(
    parents: EvalSuite, workers: Workers, capsys: pytest.CaptureFixture[str]
) -> None:
    workers.values["sql-small"] = 0.5
    workers.delay = 0.5
    assert run(capsys, *COMPOSE, "--wait", "--job-only")[0] == 0

    code, out, err = run(capsys, "eval", "alice/mix:1", "--wait")

    assert code == 3 and "alice/mix:1 was rejected by the validation gate [validation_rejected]" in err
    assert "validation: rejected" in out and out.splitlines()[1].split()[:3] == ["sql-small", "exact_match", "0.5"]


def test_info_and_jobs_show_the_verdict_even_from_a_hub_that_leaves_it_out_of_jobs(
    parents: EvalSuite, workers: Workers, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    workers.values["sql-small"] = 0.9
    code, out, _ = run(capsys, *COMPOSE, "--wait", "--json")
    job_id = json.loads(out)["id"]
    assert code == 0

    code, out, _ = run(capsys, "info", "alice/mix")
    [row] = [line for line in out.splitlines() if line.startswith("1 ")]
    assert code == 0 and row.split()[-1] == "validated"
    code, out, _ = run(capsys, "info", "alice/mix:1")
    assert "validation: validated" in out.splitlines() and "commit: " in out

    # An older hub's jobs carry only the result's name: ahub asks the version for the verdict.
    original = HubClient._json

    def without_verdicts(self: HubClient, method: str, path: str, **kwargs: Any) -> Any:
        data = original(self, method, path, **kwargs)
        for job in data.get("results", [data]) if "/jobs/" in path and isinstance(data, dict) else []:
            for key in ("validation", "validation_reasons"):
                (job.get("result") or {}).pop(key, None)
        return data

    monkeypatch.setattr(HubClient, "_json", without_verdicts)
    code, out, _ = run(capsys, "jobs")
    header, row = out.splitlines()
    assert header.split()[:6] == ["JOB", "STATUS", "PROGRESS", "TARGET", "RESULT", "VALIDATION"]
    assert row.split()[:6] == [job_id, "succeeded", "100%", "alice/mix", "alice/mix:1", "validated"]
    code, out, _ = run(capsys, "jobs", job_id, "--json")
    assert json.loads(out)["result"]["validation"] == "validated"
    code, out, _ = run(capsys, "jobs", "--json")
    assert [j["result"]["validation"] for j in json.loads(out)] == ["validated"]


def test_compose_search_asks_the_hub_to_search_the_weights_on_the_suites(
    parents: EvalSuite, workers: Workers, capsys: pytest.CaptureFixture[str]
) -> None:
    EvalSuite.objects.filter(pk=parents.pk).update(search_fraction=0.5)

    code, out, err = run(
        capsys, "compose", "--search", "--suite", "sql-small", "--budget", "12", "alice/sql", "alice/chat:1",
        "--into", "alice/found", "--json",
    )  # fmt: skip

    assert code == 0, err
    job = CompositionJob.objects.get(pk=json.loads(out)["id"])
    assert job.recipe["method"] == "search"
    assert [(i["adapter"], i["version"]) for i in job.recipe["inputs"]] == [("alice/sql", 1), ("alice/chat", 1)]
    assert job.recipe["parameters"] == {
        "suites": ["sql-small"], "budget": 12, "merge": "linear", "bounds": [-1.5, 1.5], "rank": None, "seed": 0,
        "objective": "loss",
    }  # fmt: skip
    assert enqueue.task_for(CompositionJob, job.pk) == enqueue.SEARCH_TASK

    code, _, err = run(capsys, "compose", "--search", "alice/sql", "--into", "alice/found")
    assert code == 1 and "--search needs the suites" in err and CompositionJob.objects.count() == 1

"""The bare base model scored on its suites: every new suite queues its baseline, a worker measures
it with the same engine as the adapters, and scores and leaderboards show it beside theirs."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from registry.evaluations import run_baseline, run_evaluation
from registry.models import BaselineEvaluation, EvaluationRequest
from registry.reconcile import reconcile_jobs
from tests.helpers import json_of
from tests.registry.evals.conftest import BASE, DemoModels, create_suite

pytestmark = pytest.mark.django_db


def run_queued_baselines() -> list[BaselineEvaluation]:
    return [
        run_baseline(str(b.pk), worker="test-gpu")  # type: ignore[misc]
        for b in BaselineEvaluation.objects.filter(status="queued")
    ]


def hf_perplexity(base: Any, texts: list[str]) -> float:
    """The oracle: transformers' own loss on each text (BOS + text + EOS), weighted by its predicted tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base).eval()
    nll, count = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"]]
            ids.append(tokenizer.eos_token_id)
            tensor = torch.tensor([ids])
            loss = model(input_ids=tensor, labels=tensor).loss.item()
            nll += loss * (len(ids) - 1)
            count += len(ids) - 1
    return math.exp(nll / count)


def test_a_new_suite_gets_the_base_models_score_as_its_baseline(hub: Any, demo_models: DemoModels) -> None:
    from demo.skills import SKILLS

    lines = SKILLS[0].text_lines()
    assert create_suite(hub, "capital-text", "perplexity", lines, is_default=True).status_code == 201
    queued = BaselineEvaluation.objects.get()
    assert queued.status == "queued" and queued.suite.name == "capital-text"

    (done,) = run_queued_baselines()
    assert done.status == "succeeded" and done.metric == "perplexity" and done.precision == "fp32"
    assert done.value == pytest.approx(hf_perplexity(demo_models.base, [line["text"] for line in lines]), rel=1e-4)
    assert done.samples == len(lines) and done.device == "cpu"

    # The adapter's score and the base's, side by side, on the version's scores and the leaderboard.
    hub.post("/api/v1/adapters/alice/capital/versions/1/evaluations/", {}, format="json")
    for request in EvaluationRequest.objects.filter(status="queued"):
        run_evaluation(str(request.pk), worker="test-gpu")
    scores = json_of(hub.get("/api/v1/adapters/alice/capital/versions/1/scores/"))
    assert [b["suite"] for b in scores["baselines"]] == ["capital-text"]
    assert scores["baselines"][0]["value"] == pytest.approx(done.value)
    # The adapter was trained on these lines: it beats the bare base by far.
    assert scores["scores"][0]["value"] < done.value
    board = json_of(hub.get(f"/api/v1/base-models/{BASE}/leaderboard/?suite=capital-text"))
    assert board["baseline"]["value"] == pytest.approx(done.value) and board["baseline"]["status"] == "succeeded"
    assert [row["adapter"] for row in board["results"]] == ["alice/capital"]
    assert (
        json_of(hub.get(f"/api/v1/base-models/{BASE}/leaderboard/?suite=capital-text&precision=nf4"))["baseline"]
        is None
    )


def test_baselines_are_queued_once_unless_forced_and_only_by_who_manages_suites(
    hub: Any, bob: Any, client_for: Any
) -> None:
    from demo.skills import SKILLS

    create_suite(hub, "capital-text", "perplexity", SKILLS[0].text_lines())
    create_suite(hub, "opposite-choice", "multiple_choice", SKILLS[1].multiple_choice_lines())
    first = {b.suite.name: b.pk for b in BaselineEvaluation.objects.all()}
    assert set(first) == {"capital-text", "opposite-choice"}

    again = hub.post(f"/api/v1/base-models/{BASE}/baselines/", {}, format="json")
    assert again.status_code == 202
    assert {row["id"] for row in json_of(again)} == {str(pk) for pk in first.values()}
    forced = hub.post(
        f"/api/v1/base-models/{BASE}/baselines/", {"suites": ["capital-text"], "force": True}, format="json"
    )
    assert json_of(forced)[0]["id"] != str(first["capital-text"]) and BaselineEvaluation.objects.count() == 3

    anonymous = client_for(None).post(f"/api/v1/base-models/{BASE}/baselines/", {}, format="json")
    assert anonymous.status_code == 401 and json_of(anonymous)["code"] == "auth_required"
    refused = client_for(bob).post(f"/api/v1/base-models/{BASE}/baselines/", {}, format="json")
    assert refused.status_code == 403 and json_of(refused)["code"] == "suite_permission"
    unknown = hub.post(f"/api/v1/base-models/{BASE}/baselines/", {"suites": ["nope"]}, format="json")
    assert unknown.status_code == 404 and json_of(unknown)["code"] == "suite_not_found"
    listed = json_of(client_for(bob).get(f"/api/v1/base-models/{BASE}/baselines/"))
    assert listed["count"] == 3 and {row["status"] for row in listed["results"]} == {"queued"}


def test_a_baseline_that_fails_says_why_and_a_lost_one_is_sent_again(hub: Any, settings: Any) -> None:
    from demo.skills import SKILLS

    create_suite(hub, "capital-text", "perplexity", SKILLS[0].text_lines())
    # The workers cannot find the base model's files: the baseline fails with the reason, never stays running.
    settings.HUB_BASE_MODEL_PATHS = []
    (failed,) = run_queued_baselines()
    assert failed.status == "failed" and failed.error_code and failed.error_message
    assert hub.get(f"/api/v1/base-models/{BASE}/leaderboard/?suite=capital-text").json()["baseline"] is None

    # A queued baseline whose message was lost is sent again by the reconciler, like any job.
    lost = BaselineEvaluation.objects.create(suite=failed.suite)
    BaselineEvaluation.objects.filter(pk=lost.pk).update(created_at=lost.created_at.replace(year=2000))
    report = reconcile_jobs()
    assert str(lost.pk) in report.redispatched


def test_classification_suites_get_no_baseline(hub: Any) -> None:
    # A bare base model has no classification head to score.
    from demo.skills import SKILLS

    create_suite(hub, "capital-text", "perplexity", SKILLS[0].text_lines())
    labelled = [{"text": f"sentence {i}", "label": i % 2} for i in range(8)]
    assert create_suite(hub, "sentiment", "classification", labelled).status_code == 201
    suites = json_of(hub.get(f"/api/v1/base-models/{BASE}/baselines/"))["results"]
    assert [s["suite"] for s in suites] == ["capital-text"]
    named = hub.post(f"/api/v1/base-models/{BASE}/baselines/", {"suites": ["sentiment"]}, format="json")
    assert named.status_code == 404 and "bare base model" in json_of(named)["message"]

"""Suites, evaluation requests, scores, leaderboards and the validation gate through the hub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from composer.evaluation import BaseModelCache
from registry.compositions import run_composition
from registry.evaluations import find_base_model_folder, run_evaluation
from registry.models import EvalResult, EvalSuite, EvaluationRequest
from tests.helpers import json_of, push, push_folder, stored_blobs
from tests.registry.evals.conftest import BASE, DemoModels, create_suite

pytestmark = pytest.mark.django_db


def run_queued() -> None:
    for request in EvaluationRequest.objects.filter(status="queued"):
        run_evaluation(str(request.pk), worker="test-gpu")


def test_a_suite_evaluates_versions_into_scores_and_a_leaderboard(hub: Any) -> None:
    from demo.skills import SKILLS

    capital = SKILLS[0]
    assert (
        create_suite(hub, "capital-qa", "exact_match", capital.exact_match_lines(), is_default=True).status_code == 201
    )
    for adapter in ("alice/capital", "alice/opposite"):
        response = hub.post(f"/api/v1/adapters/{adapter}/versions/1/evaluations/", {}, format="json")
        assert response.status_code == 202
    run_queued()

    scores = json_of(hub.get("/api/v1/adapters/alice/capital/versions/1/scores/"))["scores"]
    assert [(s["suite"], s["metric"], s["value"]) for s in scores] == [("capital-qa", "exact_match", 1.0)]
    assert (
        scores[0]["samples"] == len(capital.pairs)
        and scores[0]["tokens_per_second"] > 0
        and scores[0]["device"] == "cpu"
        and scores[0]["precision"] == "fp32"
    )
    board = json_of(hub.get(f"/api/v1/base-models/{BASE}/leaderboard/?suite=capital-qa"))["results"]
    assert [(row["adapter"], row["value"]) for row in board] == [("alice/capital", 1.0), ("alice/opposite", 0.0)]
    suite_id = EvalSuite.objects.get(name="capital-qa").pk
    ranked = json_of(hub.get(f"/api/v1/adapters/?sort=score&suite={suite_id}"))["results"]
    assert [a["id"] for a in ranked] == ["alice/capital", "alice/opposite"]


def test_each_request_yields_exactly_one_result(hub: Any) -> None:
    from demo.skills import SKILLS

    create_suite(hub, "opposite-choice", "multiple_choice", SKILLS[1].multiple_choice_lines())
    response = hub.post(
        "/api/v1/adapters/alice/opposite/versions/1/evaluations/", {"suites": ["opposite-choice"]}, format="json"
    )
    request_id = json_of(response)[0]["id"]

    assert run_evaluation(request_id, worker="first").status == "succeeded"
    assert run_evaluation(request_id, worker="duplicate delivery") is None
    again = hub.post(
        "/api/v1/adapters/alice/opposite/versions/1/evaluations/", {"suites": ["opposite-choice"]}, format="json"
    )
    assert json_of(again)[0]["id"] == request_id, "an evaluated suite is not queued twice"
    assert EvalResult.objects.count() == 1


# How much of each tiny demo skill survives stacking depends on the CPU and the library releases the
# skills were trained with (exact_match 1.0 / 0.58 on one machine, 1.0 / 1.0 on another, 0.08 / 0.5 with
# transformers 5.24 and peft 0.21), so the bars are ones no score can miss: none (fraction 0) validates,
# more than the best parent's 1.0 rejects, wherever the suite runs. Each check's verdict is its own rule.
@pytest.mark.parametrize(("fraction", "expected"), [(0.0, "validated"), (1.01, "rejected")])
def test_the_gate_validates_or_rejects_a_composed_version(
    hub: Any, settings: Any, fraction: float, expected: str
) -> None:
    from demo.skills import SKILLS

    settings.VALIDATION_FRACTION = fraction
    for skill in SKILLS:
        create_suite(hub, f"{skill.name}-qa", "exact_match", skill.exact_match_lines())
    for adapter, skill in (("alice/capital", SKILLS[0]), ("alice/opposite", SKILLS[1])):
        hub.post(f"/api/v1/adapters/{adapter}/versions/1/evaluations/", {"suites": [f"{skill.name}-qa"]}, format="json")
    run_queued()

    job = json_of(
        hub.post(
            "/api/v1/compositions/",
            {
                "method": "stack",
                "inputs": [{"adapter": "alice/capital", "weight": 1}, {"adapter": "alice/opposite", "weight": 1}],
                "into": "alice/both",
            },
            format="json",
        )
    )
    run_composition(job["id"], worker="test")
    pending = json_of(hub.get("/api/v1/adapters/alice/both/versions/1/scores/"))
    assert pending["validation"] == "pending"
    assert sorted(r.suite.name for r in EvaluationRequest.objects.filter(version__adapter__name="both")) == [
        "capital-qa",
        "opposite-qa",
    ]
    run_queued()

    decided = json_of(hub.get("/api/v1/adapters/alice/both/versions/1/scores/"))
    assert decided["validation"] == expected, decided
    checks = {c["suite"]: c for c in decided["validation_reasons"]}
    assert set(checks) == {"capital-qa", "opposite-qa"}
    assert all(c["best_parent_value"] == 1.0 and c["required"] == pytest.approx(fraction) for c in checks.values())
    assert all(c["passed"] == (c["value"] >= c["required"]) for c in checks.values())
    assert decided["scores"] and all(0 < s["value"] <= 1 for s in decided["scores"])


def test_bad_suite_uploads_are_refused_and_store_nothing(hub: Any, client_for: Any, bob: Any, settings: Any) -> None:
    blobs = set(stored_blobs())
    bad = create_suite(hub, "bad", "multiple_choice", [{"prompt": "x=", "choices": ["a", "b"], "answer": 5}])
    assert bad.status_code == 422 and json_of(bad)["code"] == "bad_suite" and "line 1" in json_of(bad)["message"]
    settings.EVAL_SUITE_MAX_BYTES = 10
    big = create_suite(hub, "big", "perplexity", [{"text": "a long enough line"}])
    assert big.status_code == 413
    settings.EVAL_SUITE_MAX_BYTES = 50 * 1024**2
    stranger = create_suite(client_for(bob), "mine", "perplexity", [{"text": "hello"}])
    assert stranger.status_code == 403
    assert not EvalSuite.objects.exists() and set(stored_blobs()) == blobs


def test_base_model_folders_are_found_in_the_usual_layouts(settings: Any, tmp_path: Path) -> None:
    for folder in (tmp_path / "a" / "org" / "model", tmp_path / "b" / "org--model"):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
    cache = tmp_path / "c" / "models--org--model"
    (cache / "snapshots" / "abc123").mkdir(parents=True)
    (cache / "snapshots" / "abc123" / "config.json").write_text("{}")
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text("abc123")

    for root, expected in (("a", "a/org/model"), ("b", "b/org--model"), ("c", "c/models--org--model/snapshots/abc123")):
        settings.HUB_BASE_MODEL_PATHS = [str(tmp_path / root)]
        assert find_base_model_folder("org/model") == tmp_path / expected
    settings.HUB_BASE_MODEL_PATHS = [str(tmp_path / "empty")]
    with pytest.raises(Exception, match="no local copy of org/model"):
        find_base_model_folder("org/model")


def test_a_missing_base_model_fails_the_request_with_a_clear_error(hub: Any, settings: Any) -> None:
    from demo.skills import SKILLS

    create_suite(hub, "capital-qa", "exact_match", SKILLS[0].exact_match_lines())
    settings.HUB_BASE_MODEL_PATHS = [str(Path("/nonexistent"))]
    request_id = json_of(
        hub.post("/api/v1/adapters/alice/capital/versions/1/evaluations/", {"suites": ["capital-qa"]}, format="json")
    )[0]["id"]

    request = run_evaluation(request_id, worker="test-gpu", cache=BaseModelCache())

    assert request.status == "failed" and request.error_code == "base_model_unavailable"
    listed = json_of(hub.get("/api/v1/adapters/alice/capital/versions/1/evaluations/"))["results"]
    assert listed[0]["error"]["code"] == "base_model_unavailable"


def test_a_worker_without_local_copies_evaluates_with_the_base_fetched_from_s3(
    s3_settings: None, settings: Any, demo_models: DemoModels, alice: Any, client_for: Any, tmp_path: Path
) -> None:
    """A GPU worker on another machine: no HUB_BASE_MODEL_PATHS, only the database and S3."""
    from demo.skills import SKILLS
    from registry.base_models import fetch_base_model, register_from_folder

    settings.HUB_BASE_MODEL_PATHS = []
    settings.WORKER_BASE_CACHE_DIR = tmp_path / "worker-cache"
    base = register_from_folder(name=BASE, folder=demo_models.base)
    alice.is_staff = True
    alice.save()
    client = client_for(alice, scope="admin")
    assert push_folder(client, "alice/capital", demo_models.adapters["capital"]).status_code == 201
    assert create_suite(client, "capital-qa", "exact_match", SKILLS[0].exact_match_lines()).status_code == 201
    client.post("/api/v1/adapters/alice/capital/versions/1/evaluations/", {"suites": ["capital-qa"]}, format="json")

    cache = BaseModelCache()
    for request in EvaluationRequest.objects.filter(status="queued"):
        done = run_evaluation(str(request.pk), worker="remote-gpu", cache=cache)
        assert done is not None and done.status == "succeeded", done.error_message if done else None

    assert EvalResult.objects.get(suite="capital-qa").value == 1.0
    assert cache.loads == 1
    again = fetch_base_model(base)
    assert again.fetched_bytes == 0 and again.folder.parent == tmp_path / "worker-cache"
    assert (again.folder / "model.safetensors").read_bytes() == (demo_models.base / "model.safetensors").read_bytes()


def test_an_evaluation_that_breaks_unexpectedly_fails_instead_of_staying_running(
    hub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from demo.skills import SKILLS
    from registry import evaluations, tasks

    create_suite(hub, "capital-qa", "exact_match", SKILLS[0].exact_match_lines(), is_default=True)
    request_id = json_of(hub.post("/api/v1/adapters/alice/capital/versions/1/evaluations/", {}, format="json"))[0]["id"]

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("peft_type")  # what PEFT raised loading a non-PEFT adapter

    monkeypatch.setattr(evaluations, "_evaluate", broken)
    assert tasks.evaluate_version.apply(args=[request_id]).get() == "failed"

    failed = EvaluationRequest.objects.get(pk=request_id)
    assert failed.status == "failed" and failed.error_code == "internal_error" and "peft_type" in failed.error_message


def test_a_qlora_version_without_cuda_is_evaluated_unquantised_and_says_so(hub: Any, demo_models: DemoModels) -> None:
    from demo.skills import SKILLS

    create_suite(hub, "capital-qa", "exact_match", SKILLS[0].exact_match_lines(), is_default=True)
    assert push_folder(hub, "alice/capital-qlora", demo_models.adapters["capital"], method="qlora").status_code == 201
    hub.post("/api/v1/adapters/alice/capital-qlora/versions/1/evaluations/", {}, format="json")
    run_queued()

    scores = json_of(hub.get("/api/v1/adapters/alice/capital-qlora/versions/1/scores/"))["scores"]
    assert [(s["precision"], s["value"]) for s in scores] == [("fp32", 1.0)], "no CUDA here: full precision, recorded"
    board = json_of(hub.get(f"/api/v1/base-models/{BASE}/leaderboard/?suite=capital-qa&precision=nf4"))["results"]
    assert board == [], "a leaderboard of 4-bit scores holds none measured in fp32"


def test_a_bitfit_adapter_is_evaluated_with_its_biases(hub: Any, demo_models: DemoModels, tmp_path: Path) -> None:
    import torch

    from composer.bitfit import save_bitfit
    from demo.skills import SKILLS

    create_suite(hub, "capital-qa", "exact_match", SKILLS[0].exact_match_lines(), is_default=True)
    torch.manual_seed(0)
    folder = save_bitfit({"model.layers.1.mlp.down_proj.bias": torch.randn(96) * 50}, tmp_path / "b", base_model=BASE)
    assert push_folder(hub, "alice/bitfit", folder).status_code == 201
    for adapter in ("alice/bitfit", "alice/capital"):
        hub.post(f"/api/v1/adapters/{adapter}/versions/1/evaluations/", {}, format="json")
    run_queued()

    assert set(EvaluationRequest.objects.values_list("status", flat=True)) == {"succeeded"}
    scores = {
        adapter: json_of(hub.get(f"/api/v1/adapters/{adapter}/versions/1/scores/"))["scores"][0]["value"]
        for adapter in ("alice/bitfit", "alice/capital")
    }
    assert scores["alice/capital"] == 1.0 and scores["alice/bitfit"] < 1.0, "its huge biases change the answers"


def test_a_prompt_tuned_adapter_is_evaluated_with_its_virtual_tokens(
    hub: Any, demo_models: DemoModels, tmp_path: Path
) -> None:
    from peft import PromptTuningConfig

    from demo.skills import SKILLS, train_lora

    capital = SKILLS[0]
    prompt = train_lora(
        demo_models.base,
        capital,
        tmp_path / "prompt",
        steps=400,
        learning_rate=0.1,
        peft_config=PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=8),
    )
    assert push_folder(hub, "alice/capital-prompt", prompt).status_code == 201
    create_suite(hub, "capital-choice", "multiple_choice", capital.multiple_choice_lines())
    for adapter in ("alice/capital-prompt", "alice/opposite"):  # the other skill: the base's own answers
        hub.post(f"/api/v1/adapters/{adapter}/versions/1/evaluations/", {"suites": ["capital-choice"]}, format="json")
    run_queued()

    def score(adapter: str) -> float:
        return float(json_of(hub.get(f"/api/v1/adapters/{adapter}/versions/1/scores/"))["scores"][0]["value"])

    # Four choices: 0.25 is chance. Scored on the wrong positions the prompt's answers were noise.
    assert score("alice/capital-prompt") >= 0.4 and score("alice/capital-prompt") > score("alice/opposite") + 0.1


def test_a_sequence_classification_adapter_is_not_scored_as_a_language_model(hub: Any, demo_models: DemoModels) -> None:
    from demo.skills import SKILLS

    create_suite(hub, "capital-qa", "exact_match", SKILLS[0].exact_match_lines(), is_default=True)
    files = [
        (p.name, p.read_bytes() if p.name != "adapter_config.json" else _with_task(p.read_bytes(), "SEQ_CLS"))
        for p in sorted(demo_models.adapters["capital"].iterdir())
        if p.is_file()
    ]
    assert push(hub, "alice/classifier", files).status_code == 201

    refused = hub.post("/api/v1/adapters/alice/classifier/versions/1/evaluations/", {}, format="json")

    assert refused.status_code == 422 and json_of(refused)["code"] == "unsuitable_suite"
    assert not EvaluationRequest.objects.exists()


def _with_task(raw: bytes, task_type: str) -> bytes:
    return json.dumps({**json.loads(raw), "task_type": task_type}).encode()

"""A hybrid is evaluated as a whole: its LoRA part merged into the base, its prompt part on top."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from registry.models import EvalResult
from tests.helpers import json_of, push_folder
from tests.registry.evals.conftest import BASE, DemoModels, create_suite
from tests.registry.evals.test_evaluations import run_queued

pytestmark = pytest.mark.django_db


def test_a_hybrid_is_scored_with_both_parts_applied(hub: Any, demo_models: DemoModels, tmp_path: Path) -> None:
    from peft import PromptTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from demo.skills import SKILLS

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(demo_models.base),
        PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4),
    )
    torch.manual_seed(5)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.copy_(torch.randn_like(parameter) * 0.5)
    model.save_pretrained(tmp_path / "prompt")
    config = json.loads((tmp_path / "prompt" / "adapter_config.json").read_text())
    (tmp_path / "prompt" / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": BASE}))
    (tmp_path / "prompt" / "README.md").unlink()  # PEFT's card names the local folder
    hybrid = tmp_path / "hybrid"
    shutil.copytree(demo_models.adapters["capital"], hybrid / "lora")
    shutil.copytree(tmp_path / "prompt", hybrid / "prompt")
    (hybrid / "hybrid.json").write_text(json.dumps({"parts": [{"path": "lora"}, {"path": "prompt"}]}))
    for repo, folder in (("alice/capital-styled", hybrid), ("alice/styled", tmp_path / "prompt")):
        response = push_folder(hub, repo, folder)
        assert response.status_code == 201, (repo, response.content)
    create_suite(hub, "capital-ppl", "perplexity", [{"text": line["prompt"] + " " + line["answer"]}
                                                    for line in SKILLS[0].exact_match_lines()])  # fmt: skip

    for repo in ("alice/capital-styled", "alice/capital", "alice/styled"):
        response = hub.post(
            f"/api/v1/adapters/{repo}/versions/1/evaluations/", {"suites": ["capital-ppl"]}, format="json"
        )
        assert response.status_code in (200, 201, 202), response.content
    run_queued()

    values = {r.version.adapter.name: r.value for r in EvalResult.objects.filter(suite="capital-ppl")}
    assert set(values) == {"capital-styled", "capital", "styled"}
    # Both parts count: the whole scores as neither part alone does.
    assert values["capital-styled"] != pytest.approx(values["capital"]) and values["capital-styled"] != pytest.approx(
        values["styled"]
    )
    scores = json_of(hub.get("/api/v1/adapters/alice/capital-styled/versions/1/scores/"))["scores"]
    assert [s["suite"] for s in scores] == ["capital-ppl"]

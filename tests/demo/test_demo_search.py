"""`seed_demo` trains every demo skill, makes the target suites with a search split and lets the hub find the
weights of the four skill adapters (a `search` job into demo/found), before the composition that marks the
demo complete. Training is shortened and the evaluations skipped here: what is checked is what the demo
builds, not how well it scores (bench/autocompose.py measures that)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from demo import skills
from demo.management.commands import seed_demo
from registry.models import Adapter, CompositionJob, EvalSuite

pytestmark = pytest.mark.django_db
BUDGET = 3


@pytest.fixture
def quick_demo(
    settings: Any, tmp_path: Path, local_blob_store: Path, worker_blob_cache: Path, monkeypatch: Any
) -> None:
    settings.VAR_DIR = tmp_path / "var"
    settings.HUB_BASE_MODEL_PATHS = [str(tmp_path / "models")]
    build, train = skills.build_base_model, skills.train_lora
    monkeypatch.setattr(skills, "build_base_model", lambda folder: build(folder, pretrain_steps=20))
    monkeypatch.setattr(
        skills, "train_lora", lambda base, skill, out, *, seed: train(base, skill, out, seed=seed, steps=3)
    )
    monkeypatch.setattr(seed_demo, "SEARCH_BUDGET", BUDGET)
    monkeypatch.setattr(seed_demo.Command, "_evaluate", lambda self, requests: None)
    call_command("bootstrap_demo", stdout=io.StringIO())


def test_seed_demo_makes_the_target_suites_and_a_search_over_the_four_skill_adapters(quick_demo: None) -> None:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)

    targets = EvalSuite.objects.filter(name__in=[t.name for t in skills.TARGET_SUITES])
    assert sorted(targets.values_list("name", "search_fraction")) == [
        ("atlas-qa", 0.5), ("capital-opposite-qa", 0.5), ("words-qa", 0.5)
    ]  # fmt: skip
    names = {f"{s.name}-lora" for s in skills.ALL_SKILLS}
    assert set(Adapter.objects.filter(namespace__name="demo").values_list("name", flat=True)) >= names | {
        "found", "capital-opposite"
    }  # fmt: skip

    job = CompositionJob.objects.get(target_name="found")
    assert job.status == "succeeded", job.error_message
    assert job.recipe["method"] == "search" and job.recipe["into"] == "demo/found"
    assert [i["adapter"] for i in job.recipe["inputs"]] == [f"demo/{s.name}-lora" for s in skills.ALL_SKILLS]
    assert job.recipe["parameters"]["suites"] == sorted(t.name for t in skills.TARGET_SUITES)
    assert job.recipe["parameters"]["budget"] == BUDGET
    assert len(job.report["search"]["trace"]) == BUDGET and len(job.report["search"]["weights"]) == 4
    assert job.result_version is not None and job.result_version.adapter.name == "found"
    assert "search demo/found is" in out.getvalue()

    # Run again as if interrupted before the last step: every step done is skipped, the search job is reused.
    Adapter.objects.filter(namespace__name="demo", name="capital-opposite").update(name="capital-opposite-then")
    again = io.StringIO()
    call_command("seed_demo", stdout=again)
    assert "training" not in again.getvalue()
    assert CompositionJob.objects.filter(target_name="found").count() == 1

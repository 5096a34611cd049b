"""Compositions through the API on a worker take every method whose weight change is computable: a
LoRA with each of AdaLoRA, LoHa, LoKr, VeRA, FourierFT, IA3 and DoRA (the last two from the base
weights the worker fetches), published as a LoRA whose delta, loaded by PEFT, is the weighted sum of
the inputs' own deltas as PEFT merges them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from registry.base_models import register_from_folder
from registry.compositions import run_composition
from registry.models import VersionParent
from tests.composer.test_families import KINDS, peft_config
from tests.factories import BASE_MODEL_NAME, make_base_model_folder, tiny_llama
from tests.helpers import download, json_of, push_folder

pytestmark = pytest.mark.django_db


def trained(kind: str, folder: Path, seed: int) -> dict[str, torch.Tensor]:
    """A PEFT adapter of `kind` on the tests' tiny Llama, moved off its initialisation and saved;
    returns PEFT's own delta per module (merged weight minus base weight)."""
    from peft import get_peft_model

    model = get_peft_model(tiny_llama(), peft_config(kind))
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    model.peft_config["default"].base_model_name_or_path = BASE_MODEL_NAME
    model.save_pretrained(folder)
    base = tiny_llama().state_dict()
    merged = model.merge_and_unload().state_dict()
    return {k.removesuffix(".weight"): merged[k] - base[k] for k in base if not torch.equal(merged[k], base[k])}


def merged_delta(client: Any, version: dict[str, Any], folder: Path) -> dict[str, torch.Tensor]:
    from peft import PeftModel

    folder.mkdir()
    for f in version["files"]:
        status, body, _ = download(client, f["url"])
        assert status == 200
        (folder / f["path"]).write_bytes(body)
    merged = PeftModel.from_pretrained(tiny_llama(), folder).merge_and_unload().state_dict()
    base = tiny_llama().state_dict()
    return {k.removesuffix(".weight"): merged[k] - base[k] for k in base}


def compose_on_worker(client: Any, method: str, inputs: list[tuple[str, float]], into: str, **parameters: Any) -> Any:
    """POST the composition, run its job on this process's worker, return the finished job."""
    body: dict[str, Any] = {
        "method": method,
        "inputs": [{"adapter": adapter, "weight": weight} for adapter, weight in inputs],
        "into": into,
    }
    if parameters:
        body["parameters"] = parameters
    response = client.post("/api/v1/compositions/", body, format="json")
    assert response.status_code == 202, response.content
    job = run_composition(json_of(response)["id"], worker="test")
    assert job is not None and job.status == "succeeded", job.error_message if job else None
    return job


@pytest.fixture
def stored_weights(tmp_path: Path, settings: Any) -> None:
    """The base model registered with its files, as `register_base_model --from-folder` does."""
    settings.WORKER_BASE_CACHE_DIR = str(tmp_path / "worker-cache")
    register_from_folder(name=BASE_MODEL_NAME, folder=make_base_model_folder(tmp_path / "base"))


@pytest.mark.parametrize("kind", KINDS)
def test_a_lora_and_each_other_method_compose_on_a_worker_into_their_weighted_sum(
    kind: str, alice: Any, client_for: Any, stored_weights: None, tmp_path: Path
) -> None:
    client = client_for(alice)
    lora = trained("lora", tmp_path / "lora", seed=1)
    other = trained(kind, tmp_path / kind, seed=2)
    assert push_folder(client, "alice/skill", tmp_path / "lora").status_code == 201
    assert push_folder(client, f"alice/{kind}", tmp_path / kind).status_code == 201

    job = compose_on_worker(client, "linear", [("alice/skill", 0.6), (f"alice/{kind}", -0.4)], "alice/mixed", rank=64)

    version = json_of(client.get("/api/v1/adapters/alice/mixed/versions/1/"))
    assert json_of(client.get("/api/v1/adapters/alice/mixed/"))["method"] == "lora"
    assert VersionParent.objects.filter(child__adapter__name="mixed").count() == 2
    assert job.report["relative_error_max"] < 1e-3 and job.report["truncated_modules"] == 0
    composed = merged_delta(client, version, tmp_path / "out")
    for module in set(lora) | set(other):
        expected = 0.6 * lora.get(module, torch.zeros(())) - 0.4 * other.get(module, torch.zeros(()))
        torch.testing.assert_close(composed[module], expected, rtol=1e-4, atol=3e-5)


def test_ia3_adapters_summed_through_the_api_stay_ia3(alice: Any, client_for: Any, tmp_path: Path) -> None:
    """Vectors only: no base weights are needed, and the hub files the result as IA3."""
    client = client_for(alice)
    for seed in (1, 2):
        trained("ia3", tmp_path / f"ia3-{seed}", seed=seed)
        assert push_folder(client, f"alice/ia3-{seed}", tmp_path / f"ia3-{seed}").status_code == 201

    job = compose_on_worker(client, "linear", [("alice/ia3-1", 0.5), ("alice/ia3-2", 0.5)], "alice/ia3-mix")

    assert json_of(client.get("/api/v1/adapters/alice/ia3-mix/"))["method"] == "ia3"
    version = json_of(client.get("/api/v1/adapters/alice/ia3-mix/versions/1/"))
    assert version["peft_type"] == "IA3" and job.report["relative_error_max"] == 0


def prompt_tuning(folder: Path, seed: int) -> None:
    from peft import PromptTuningConfig, get_peft_model

    model = get_peft_model(tiny_llama(), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.copy_(torch.randn_like(parameter))
    model.peft_config["default"].base_model_name_or_path = BASE_MODEL_NAME
    model.save_pretrained(folder)


def test_a_lora_and_a_prompt_compose_into_a_hybrid_whose_parts_are_the_inputs(
    alice: Any, client_for: Any, lora_dir: Path, tmp_path: Path
) -> None:
    client = client_for(alice)
    prompt_tuning(tmp_path / "prompt", seed=1)
    assert push_folder(client, "alice/style", tmp_path / "prompt").status_code == 201
    assert push_folder(client, "alice/skill", lora_dir).status_code == 201

    response = client.post(
        "/api/v1/compositions/",
        {"method": "hybrid", "inputs": [{"adapter": "alice/style"}, {"adapter": "alice/skill"}], "into": "alice/both"},
        format="json",
    )
    assert response.status_code == 202, response.content
    job = run_composition(json_of(response)["id"], worker="test")

    assert job is not None and job.status == "succeeded", job.error_message if job else None
    assert json_of(client.get("/api/v1/adapters/alice/both/"))["method"] == "hybrid"
    files = {f["path"]: f["sha256"] for f in json_of(client.get("/api/v1/adapters/alice/both/versions/1/"))["files"]}
    inputs = {
        name: {
            f["path"]: f["sha256"] for f in json_of(client.get(f"/api/v1/adapters/alice/{name}/versions/1/"))["files"]
        }
        for name in ("skill", "style")
    }
    # The weight part first, the prompt last, each byte for byte the input's files.
    assert files["lora/adapter_model.safetensors"] == inputs["skill"]["adapter_model.safetensors"]
    assert files["prompt/adapter_model.safetensors"] == inputs["style"]["adapter_model.safetensors"]
    assert {"hybrid.json", "composition.json", "README.md"} <= set(files)
    assert VersionParent.objects.filter(child__adapter__name="both").count() == 2

    refused = client.post(
        "/api/v1/compositions/",
        {"method": "hybrid", "inputs": [{"adapter": "alice/style"}, {"adapter": "alice/style"}], "into": "alice/x"},
        format="json",
    )
    assert refused.status_code == 422 and json_of(refused)["code"] == "bad_input"
    # A hybrid joins a weighted sum: its LoRA merges with the other one, its prompt is kept.
    compose_on_worker(client, "expr", [("alice/both", 0.5), ("alice/skill", 0.5)], "alice/mix", rank=8)
    mixed = json_of(client.get("/api/v1/adapters/alice/mix/versions/1/"))
    mixed_files = {f["path"]: f["sha256"] for f in mixed["files"]}
    assert json_of(client.get("/api/v1/adapters/alice/mix/"))["method"] == "hybrid"
    assert mixed_files["prompt/adapter_model.safetensors"] == inputs["style"]["adapter_model.safetensors"]
    assert mixed_files["lora/adapter_model.safetensors"] != inputs["skill"]["adapter_model.safetensors"]
    refused = client.post(
        "/api/v1/compositions/",
        {"method": "ties", "inputs": [{"adapter": "alice/both"}, {"adapter": "alice/skill"}], "into": "alice/y",
         "parameters": {"density": 0.5}},
        format="json",
    )  # fmt: skip
    assert refused.status_code == 422 and "is a hybrid" in json_of(refused)["message"]


def test_two_prompts_sum_through_the_api_into_a_prompt(alice: Any, client_for: Any, tmp_path: Path) -> None:
    client = client_for(alice)
    for seed in (1, 2):
        prompt_tuning(tmp_path / f"p{seed}", seed=seed)
        assert push_folder(client, f"alice/p{seed}", tmp_path / f"p{seed}").status_code == 201

    compose_on_worker(client, "stack", [("alice/p1", 1), ("alice/p2", 1)], "alice/p12")

    assert json_of(client.get("/api/v1/adapters/alice/p12/"))["method"] == "prompt_tuning"
    details = {
        d["name"]: d["value"] for d in json_of(client.get("/api/v1/adapters/alice/p12/versions/1/"))["method_details"]
    }
    assert details["Virtual tokens"] == "8"


@pytest.mark.parametrize("kind", KINDS)
def test_each_method_composes_with_itself_on_a_worker(
    kind: str, alice: Any, client_for: Any, stored_weights: None, tmp_path: Path
) -> None:
    client = client_for(alice)
    first = trained(kind, tmp_path / "a", seed=1)
    second = trained(kind, tmp_path / "b", seed=2)
    for name in ("a", "b"):
        assert push_folder(client, f"alice/{kind}-{name}", tmp_path / name).status_code == 201

    compose_on_worker(client, "linear", [(f"alice/{kind}-a", 0.5), (f"alice/{kind}-b", 0.5)], "alice/twice", rank=64)
    composed = merged_delta(client, json_of(client.get("/api/v1/adapters/alice/twice/versions/1/")), tmp_path / "out")
    for module in first:
        torch.testing.assert_close(composed[module], 0.5 * first[module] + 0.5 * second[module], rtol=1e-4, atol=3e-5)

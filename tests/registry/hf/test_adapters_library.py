"""Bottleneck adapters of AdapterHub's `adapters` library, as its users work: saved with
`save_adapter(..., use_safetensors=True)`, pushed by REST, `ahub push` and huggingface_hub's
upload_folder (the library's own push_adapter_to_hub saves pickles, refused with its advice), shown with their architecture, pulled back byte for byte with `ahub pull`, and
loaded with `model.load_adapter(repo, source="hf")` through HF_ENDPOINT into logits identical to the
model that saved them; a GPT-2 one, and a RoBERTa one with its classification head, too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from huggingface_hub import HfApi
from safetensors.torch import load_file

from client import HubClient
from registry.base_models import register_from_folder
from registry.models import Adapter
from tests.helpers import json_of, push_folder
from tests.plugins.adapters_library import run_adapters_library
from tests.registry.hf.conftest import Hub

ROUND_TRIP = {
    "houlsby": "llama-double_seq_bn",
    "pfeiffer": "llama-seq_bn",
    "parallel": "llama-par_bn",
    "gpt2-houlsby": "gpt2-double_seq_bn",
    "roberta-head": "roberta-head",
}
ARCHITECTURE = {"houlsby": "Houlsby", "pfeiffer": "Pfeiffer", "parallel": "Parallel", "gpt2-houlsby": "Houlsby"}


def logits(path: Path) -> torch.Tensor:
    return load_file(path)["logits"]


@pytest.mark.slow
def test_bottleneck_adapters_push_every_way_and_load_back_with_identical_logits(
    hub: Hub, alice: Any, client_for: Any, token_for: Any, tmp_path: Path
) -> None:
    out = tmp_path / "library"
    token = token_for(alice)
    env = hub.env(token)
    run_adapters_library("save", out, ROUND_TRIP)
    register_from_folder(name="hub-test/tiny-gpt2", folder=out / "bases" / "gpt2")
    register_from_folder(name="hub-test/tiny-roberta", folder=out / "bases" / "roberta")
    rest, ahub = client_for(alice), HubClient(hub.url, token, progress=False, cache_dir=tmp_path / "ahub")

    hub.use_token(token)
    for name in ROUND_TRIP:
        assert push_folder(rest, f"alice/{name}", out / name).status_code == 201
        ahub.push(out / name, f"alice/{name}-ahub")
        HfApi().create_repo(f"alice/{name}-hf")
        HfApi().upload_folder(repo_id=f"alice/{name}-hf", folder_path=out / name)
    run_adapters_library("push", out, {"houlsby": ROUND_TRIP["houlsby"]}, env=env)
    answer = (out / "houlsby-p2h.answer.txt").read_text()
    assert answer.startswith("400 pickle_refused") and "use_safetensors=True" in answer

    repos = {f"alice/{name}{way}": kind for name, kind in ROUND_TRIP.items() for way in ("", "-ahub", "-hf")}
    methods = dict(Adapter.objects.filter(versions__isnull=False).values_list("name", "method"))
    assert methods == {repo.split("/")[1]: "bottleneck" for repo in repos}
    for name in ROUND_TRIP:
        version = json_of(rest.get(f"/api/v1/adapters/alice/{name}/versions/1/"))
        details = {d["name"]: d["value"] for d in version["method_details"]}
        assert details["Architecture"] == ARCHITECTURE.get(name, "Pfeiffer")
        assert "Reduction factor" in details and version["rank"] >= 2
        assert {f["path"] for f in version["files"]} >= {"adapter_config.json", "adapter.safetensors"}
        pulled = ahub.pull(f"alice/{name}-ahub")
        for f in (out / name).iterdir():
            assert (pulled.path / f.name).read_bytes() == f.read_bytes(), f.name  # the library's config too
    assert {"head_config.json", "model_head.safetensors"} <= {
        f["path"] for f in json_of(rest.get("/api/v1/adapters/alice/roberta-head/versions/1/"))["files"]
    }

    run_adapters_library("load", out, repos, env=env)

    for repo, kind in repos.items():
        name = repo.split("/")[1].removesuffix("-ahub").removesuffix("-hf")
        expected = logits(out / f"{name}.logits.safetensors")
        if not kind.startswith("roberta"):  # the adapter changes the model it was trained on
            assert not torch.allclose(expected, logits(out / "bases" / f"{kind.split('-')[0]}.logits.safetensors"))
        torch.testing.assert_close(
            logits(out / f"{repo.replace('/', '--')}.loaded.safetensors"), expected, rtol=0, atol=0
        )


def test_a_bottleneck_adapter_is_refused_for_evaluation_at_request_time(
    alice: Any, client_for: Any, library_adapters: Path
) -> None:
    from registry.models import EvaluationRequest

    client = client_for(alice)
    assert push_folder(client, "alice/houlsby", library_adapters / "houlsby").status_code == 201

    refused = client.post("/api/v1/adapters/alice/houlsby/versions/1/evaluations/", {}, format="json")

    assert refused.status_code == 422 and json_of(refused)["code"] == "unsupported_for_eval"
    assert "a Bottleneck adapter" in json_of(refused)["message"]
    assert not EvaluationRequest.objects.exists()

"""Hybrid adapters: a LoRA and a soft prompt in subfolders with hybrid.json, pushed by REST, `ahub push`
and huggingface_hub's upload_folder, shown as method hybrid with its parts, and each part loaded with
stock PEFT through HF_ENDPOINT (`subfolder=`) into logits identical to the parts saved."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from client import HubClient
from registry.models import Adapter
from tests.factories import BASE_MODEL_NAME, make_lora_adapter, tiny_llama
from tests.helpers import json_of, push_folder
from tests.registry.hf.conftest import Hub

PROMPT = torch.tensor([[1, 5, 9, 17, 33]])


def make_hybrid(folder: Path) -> Path:
    """lora/ (a real PEFT LoRA), prompt/ (a real PEFT prompt tuning, moved off its init), hybrid.json."""
    from peft import PromptTuningConfig, get_peft_model

    make_lora_adapter(folder / "lora", readme=None)
    model = get_peft_model(tiny_llama(), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    torch.manual_seed(3)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter))
    model.peft_config["default"].base_model_name_or_path = BASE_MODEL_NAME
    model.save_pretrained(folder / "prompt")
    (folder / "hybrid.json").write_text(json.dumps({"parts": [{"path": "lora"}, {"path": "prompt"}]}))
    (folder / "README.md").write_text("# A skill with a style\n")
    return folder


def part_logits(folder: Path | str, subfolder: str | None = None) -> torch.Tensor:
    from peft import PeftModel

    kwargs = {"subfolder": subfolder} if subfolder else {}
    model = PeftModel.from_pretrained(tiny_llama(), str(folder), **kwargs).eval()
    with torch.no_grad():
        return model(input_ids=PROMPT).logits


def test_a_hybrid_is_pushed_every_way_shown_with_its_parts_and_each_part_loads_with_peft(
    hub: Hub, alice: Any, client_for: Any, token_for: Any, tmp_path: Path
) -> None:
    from huggingface_hub import HfApi

    hybrid = make_hybrid(tmp_path / "hybrid")
    token = token_for(alice)
    client = client_for(alice)

    assert push_folder(client, "alice/skill-style", hybrid).status_code == 201
    HubClient(hub.url, token, progress=False, cache_dir=tmp_path / "ahub").push(hybrid, "alice/skill-style-ahub")
    hub.use_token(token)
    HfApi().create_repo("alice/skill-style-hf")
    HfApi().upload_folder(repo_id="alice/skill-style-hf", folder_path=hybrid)

    assert set(Adapter.objects.values_list("name", "method")) == {
        (name, "hybrid") for name in ("skill-style", "skill-style-ahub", "skill-style-hf")
    }
    version = json_of(client.get("/api/v1/adapters/alice/skill-style/versions/1/"))
    details = [(d["name"], d["value"]) for d in version["method_details"]]
    assert details == [("Part 1: lora/", "lora, rank 4"), ("Part 2: prompt/", "prompt_tuning, 4 virtual tokens")]
    for repo in ("alice/skill-style", "alice/skill-style-ahub", "alice/skill-style-hf"):
        for part in ("lora", "prompt"):
            torch.testing.assert_close(part_logits(repo, part), part_logits(hybrid / part), rtol=0, atol=0)


@pytest.mark.parametrize(
    "breakage, code",
    [
        ("prompt_first", "bad_hybrid"),
        ("stray_file", "bad_hybrid"),
        ("missing_part", "bad_hybrid"),
        ("one_part", "bad_hybrid"),
        ("two_bases", "base_model_mismatch"),
    ],
)
def test_broken_hybrids_are_refused_with_nothing_stored(
    breakage: str, code: str, alice: Any, client_for: Any, tmp_path: Path
) -> None:
    hybrid = make_hybrid(tmp_path / "hybrid")
    spec = {"parts": [{"path": "lora"}, {"path": "prompt"}]}
    if breakage == "prompt_first":
        spec["parts"].reverse()
    elif breakage == "stray_file":
        (hybrid / "notes.txt").write_text("x")
    elif breakage == "missing_part":
        spec["parts"].append({"path": "ia3"})
    elif breakage == "one_part":
        spec["parts"] = spec["parts"][:1]
    elif breakage == "two_bases":
        config = json.loads((hybrid / "lora" / "adapter_config.json").read_text())
        (hybrid / "lora" / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "x/y"}))
    (hybrid / "hybrid.json").write_text(json.dumps(spec))

    refused = push_folder(client_for(alice), "alice/broken", hybrid)

    assert refused.status_code in (400, 409, 422) and json_of(refused)["code"] == code, refused.content
    assert not Adapter.objects.filter(name="broken").exists()


def test_the_client_loads_a_whole_hybrid_in_one_call(
    hub: Hub, alice: Any, client_for: Any, token_for: Any, tmp_path: Path
) -> None:
    from peft import PeftModel

    hybrid = make_hybrid(tmp_path / "hybrid")
    assert push_folder(client_for(alice), "alice/skill-style", hybrid).status_code == 201
    client = HubClient(hub.url, token_for(alice), progress=False, cache_dir=tmp_path / "cache")

    loaded = client.load(tiny_llama(), "alice/skill-style").eval()

    by_hand = PeftModel.from_pretrained(tiny_llama(), hybrid / "lora").merge_and_unload()
    by_hand = PeftModel.from_pretrained(by_hand, hybrid / "prompt").eval()
    with torch.no_grad():
        expected = by_hand(input_ids=PROMPT).logits
        torch.testing.assert_close(loaded(input_ids=PROMPT).logits, expected, rtol=0, atol=0)
        assert not torch.allclose(expected, part_logits(hybrid / "prompt")), "the LoRA part changes the result"
    assert push_folder(client_for(alice), "alice/skill", hybrid / "lora").status_code == 201
    with torch.no_grad():
        plain = client.load(tiny_llama(), "alice/skill").eval()(input_ids=PROMPT).logits
    torch.testing.assert_close(plain, part_logits(hybrid / "lora"), rtol=0, atol=0)

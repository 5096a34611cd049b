"""OFT, BOFT, VeRA, FourierFT, LN tuning and LLaMA-Adapter: made with real PEFT, pushed through the
REST API with their shape rules checked against the registered base model, shown with their
method, and pulled back into PEFT with logits identical to the model that saved them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.adaptercheck.builders import OTHER_PEFT_KINDS
from tests.factories import BASE_MODEL_NAME, tiny_llama
from tests.helpers import download, json_of, push_folder

pytestmark = pytest.mark.django_db

PROMPT = torch.tensor([[1, 5, 9, 17, 33, 65, 2, 4]])


def peft_config(kind: str) -> Any:
    import peft

    return {
        "oft": lambda: peft.OFTConfig(r=0, oft_block_size=16, target_modules=["q_proj", "down_proj"]),
        "boft": lambda: peft.BOFTConfig(boft_block_size=8, target_modules=["k_proj", "up_proj"]),
        "vera": lambda: peft.VeraConfig(r=8, target_modules=["k_proj", "up_proj", "down_proj"]),
        "fourierft": lambda: peft.FourierFTConfig(n_frequency=40, scaling=10.0, target_modules=["q_proj", "up_proj"]),
        "ln_tuning": lambda: peft.LNTuningConfig(target_modules=["input_layernorm", "post_attention_layernorm"]),
        "llama_adapter": lambda: peft.AdaptionPromptConfig(task_type="CAUSAL_LM", adapter_len=4, adapter_layers=1),
    }[kind]()


def trained(kind: str, folder: Path) -> torch.Tensor:
    """Save a PEFT model of `kind` whose trainable weights moved off their (often identity)
    initialisation; returns its logits on PROMPT."""
    from peft import get_peft_model

    model = get_peft_model(tiny_llama(), peft_config(kind))
    torch.manual_seed(7)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter) * (1.0 if "gate" in name else 0.05))
    model.peft_config["default"].base_model_name_or_path = BASE_MODEL_NAME
    model.save_pretrained(folder)
    (folder / "README.md").write_text(f"# A {kind} test adapter\n")
    with torch.no_grad():
        return model(input_ids=PROMPT).logits


@pytest.mark.parametrize("kind", OTHER_PEFT_KINDS)
def test_pushed_and_pulled_back_with_identical_logits(kind: str, alice: Any, client_for: Any, tmp_path: Path) -> None:
    from peft import PeftModel

    expected = trained(kind, tmp_path / "pushed")
    client = client_for(alice)

    response = push_folder(client, f"alice/{kind}-adapter", tmp_path / "pushed")

    assert response.status_code == 201, response.content
    version = json_of(response)
    assert json_of(client.get(f"/api/v1/adapters/alice/{kind}-adapter/"))["method"] == kind
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    for f in version["files"]:
        status, body, _ = download(client, f["url"])
        assert status == 200
        (pulled / f["path"]).write_bytes(body)
    loaded = PeftModel.from_pretrained(tiny_llama(), pulled).eval()
    with torch.no_grad():
        logits = loaded(input_ids=PROMPT).logits
        bare = tiny_llama()(input_ids=PROMPT).logits
    assert torch.equal(logits, expected)
    assert not torch.allclose(logits, bare), "the adapter changes the model"


def test_gpt2_bases_have_one_layout_from_a_folder_or_a_config_and_take_lora_and_ia3(
    alice: Any, client_for: Any, tmp_path: Path
) -> None:
    """GPT-2's Conv1D stores weights (in, out); its manifest says (out, in) however it was
    registered, so LoRA (fan_in_fan_out) and IA3 adapters are checked right against either."""
    import peft
    from transformers import GPT2Config, GPT2LMHeadModel

    from registry.manifests import manifest_from_config, manifest_from_folder
    from registry.services import register_base_model

    torch.manual_seed(3)
    base = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=64, n_positions=16))
    base.save_pretrained(tmp_path / "gpt2")
    _, from_folder = manifest_from_folder(tmp_path / "gpt2")
    _, from_config = manifest_from_config(tmp_path / "gpt2" / "config.json")
    assert from_folder["transformer.h.0.attn.c_attn"] == [96, 32]
    assert {k: v for k, v in from_config.items() if k in from_folder} == {
        k: v for k, v in from_folder.items() if k in from_config
    }
    client = client_for(alice)
    for name, manifest in (("hub-test/gpt2-folder", from_folder), ("hub-test/gpt2-config", from_config)):
        register_base_model(name=name, architecture="GPT2LMHeadModel", manifest=manifest)
        for kind, config in (
            ("lora", peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True)),
            (
                "ia3",
                peft.IA3Config(target_modules=["c_attn", "c_fc"], feedforward_modules=["c_fc"], fan_in_fan_out=True),
            ),
        ):
            folder = tmp_path / f"{name.rsplit('/', 1)[-1]}-{kind}"
            model = peft.get_peft_model(GPT2LMHeadModel(base.config), config)
            model.peft_config["default"].base_model_name_or_path = name
            model.save_pretrained(folder)
            response = push_folder(client, f"alice/{folder.name}", folder)
            assert response.status_code == 201, (name, kind, response.content)


def test_bitfit_is_pushed_with_its_method_from_the_config_and_applies_after_a_pull(
    alice: Any, client_for: Any, tmp_path: Path
) -> None:
    from composer.bitfit import apply_bitfit, save_bitfit

    torch.manual_seed(4)
    trained = {
        "model.layers.0.self_attn.q_proj.bias": torch.randn(64) * 0.1,
        "model.layers.1.mlp.down_proj.bias": torch.randn(64) * 0.1,
    }
    save_bitfit(trained, tmp_path / "pushed", base_model=BASE_MODEL_NAME)
    with torch.no_grad():
        expected = apply_bitfit(tiny_llama(), tmp_path / "pushed")(input_ids=PROMPT).logits
    client = client_for(alice)

    response = push_folder(client, "alice/bitfit-adapter", tmp_path / "pushed")  # no method field

    assert response.status_code == 201, response.content
    assert json_of(client.get("/api/v1/adapters/alice/bitfit-adapter/"))["method"] == "bitfit"
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    for f in json_of(response)["files"]:
        (pulled / f["path"]).write_bytes(download(client, f["url"])[1])
    with torch.no_grad():
        assert torch.equal(apply_bitfit(tiny_llama(), pulled)(input_ids=PROMPT).logits, expected)

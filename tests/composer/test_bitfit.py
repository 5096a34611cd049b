"""BitFit, the hub's own format: saved, validated against the base model's shapes, applied."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from adaptercheck import AdapterValidationError, validate_adapter
from composer.bitfit import apply_bitfit, save_bitfit
from tests.composer.helpers import tiny_llama
from tests.factories import tiny_llama_manifest

PROMPT = torch.tensor([[1, 5, 9, 17, 33]])


def biases(seed: int = 0, width: int = 64) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {
        "model.layers.0.self_attn.q_proj.bias": torch.randn(width) * 0.1,
        "model.layers.1.mlp.down_proj.bias": torch.randn(64) * 0.1,
    }


def as_files(folder: Path) -> dict[str, tuple[io.BytesIO, int]]:
    return {p.name: (io.BytesIO(p.read_bytes()), p.stat().st_size) for p in folder.iterdir()}


def test_a_bitfit_folder_validates_against_the_manifest_and_applies(tmp_path: Path) -> None:
    folder = save_bitfit(biases(), tmp_path / "bitfit", base_model="hub-test/tiny-llama")

    validated = validate_adapter(as_files(folder), manifest=tiny_llama_manifest())
    assert (validated.method, validated.peft_type) == ("bitfit", "BITFIT")

    model = apply_bitfit(tiny_llama(), folder)
    expected = tiny_llama()
    expected.model.layers[0].self_attn.q_proj.bias = torch.nn.Parameter(
        biases()["model.layers.0.self_attn.q_proj.bias"]
    )
    expected.model.layers[1].mlp.down_proj.bias = torch.nn.Parameter(biases()["model.layers.1.mlp.down_proj.bias"])
    with torch.no_grad():
        assert torch.equal(model(input_ids=PROMPT).logits, expected(input_ids=PROMPT).logits)
        assert not torch.equal(model(input_ids=PROMPT).logits, tiny_llama()(input_ids=PROMPT).logits)


def test_a_bias_of_the_wrong_width_is_refused(tmp_path: Path) -> None:
    folder = save_bitfit(biases(width=48), tmp_path / "bitfit", base_model="hub-test/tiny-llama")

    with pytest.raises(AdapterValidationError) as info:
        validate_adapter(as_files(folder), manifest=tiny_llama_manifest())

    assert info.value.code == "base_shape_mismatch" and "q_proj" in info.value.message

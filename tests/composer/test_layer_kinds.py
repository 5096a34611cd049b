"""Layer kinds beyond nn.Linear: GPT-2 Conv1D (fan_in_fan_out), embeddings and convolutions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

import composer
from tests.composer.conftest import MakeAdapter
from tests.composer.helpers import effective_deltas, exact_sum, relative


def tiny_gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=64, n_positions=32)).eval()


class TinyConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3)
        self.conv1d = nn.Conv1d(3, 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.mark.parametrize("method,rank", [("stack", None), ("linear", 16)])
def test_gpt2_conv1d_fan_in_fan_out_is_transposed_correctly(
    make_adapter: MakeAdapter, tmp_path: Path, method: str, rank: int | None
) -> None:
    first = make_adapter("a", 1, model_factory=tiny_gpt2, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True)
    second = make_adapter("b", 2, model_factory=tiny_gpt2, target_modules=["c_attn"], fan_in_fan_out=True, r=8)
    result = composer.compose([(first, 0.6), (second, -0.9)], method=method, rank=rank)
    result.save(tmp_path / "out")
    assert json.loads((tmp_path / "out" / "adapter_config.json").read_text())["fan_in_fan_out"] is True

    expected = exact_sum([(effective_deltas(first, tiny_gpt2), 0.6), (effective_deltas(second, tiny_gpt2), -0.9)])
    actual = effective_deltas(tmp_path / "out", tiny_gpt2)
    for module, (delta, _) in expected.items():
        assert actual[module][0].shape == delta.shape  # (d_in, d_out) for Conv1D
        assert relative(actual[module][0], delta) < 1e-5, module


def test_embedding_loras_compose_exactly(make_adapter: MakeAdapter, tmp_path: Path) -> None:
    first = make_adapter("a", 1, target_modules=["embed_tokens", "q_proj"])
    second = make_adapter("b", 2, target_modules=["embed_tokens"], r=2, lora_alpha=2)
    result = composer.compose([(first, 1.0), (second, 0.5)], method="linear", rank=6)
    result.save(tmp_path / "out")
    loaded = composer.load_lora(tmp_path / "out")
    assert loaded.modules["model.embed_tokens"].shape.kind == "embedding"

    expected = exact_sum([(effective_deltas(first), 1.0), (effective_deltas(second), 0.5)])
    actual = effective_deltas(tmp_path / "out")
    for module, (delta, _) in expected.items():
        assert relative(actual[module][0], delta) < 1e-5, module


def test_convolution_loras_compose_exactly(make_adapter: MakeAdapter, tmp_path: Path) -> None:
    first = make_adapter("a", 1, model_factory=TinyConvNet, target_modules=["conv", "conv1d"], r=2, lora_alpha=4)
    second = make_adapter("b", 2, model_factory=TinyConvNet, target_modules=["conv"], r=3, lora_alpha=3)
    result = composer.compose([(first, 0.8), (second, -0.3)], method="linear", rank=5)
    result.save(tmp_path / "out")
    loaded = composer.load_lora(tmp_path / "out")
    assert loaded.modules["conv"].shape.in_shape == (3, 3, 3)

    expected = exact_sum([(effective_deltas(first, TinyConvNet), 0.8), (effective_deltas(second, TinyConvNet), -0.3)])
    actual = effective_deltas(tmp_path / "out", TinyConvNet)
    for module, (delta, _) in expected.items():
        assert actual[module][0].shape == delta.shape
        assert relative(actual[module][0], delta) < 1e-5, module

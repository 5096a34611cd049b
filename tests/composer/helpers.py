"""Helpers for composer tests: tiny randomly initialised models and real PEFT adapters on them.

PEFT is the oracle: adapters are made by `get_peft_model(...).save_pretrained`, and composed
results are loaded back with `PeftModel.from_pretrained` to read their effective deltas.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from peft import PeftModel
from torch import nn
from transformers import LlamaForCausalLM

from demo.tiny_llama import tiny_llama_config

BASE_NAME = "tiny-llama-for-tests"


def tiny_llama() -> LlamaForCausalLM:
    """The same randomly initialised tiny Llama every time."""
    config = tiny_llama_config(hidden_size=64, intermediate_size=128, max_position_embeddings=2048)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def randomize_lora(model: nn.Module, seed: int, scale: float = 0.1) -> None:
    """Give every LoRA tensor random values (B non-zero), so adapters actually change the model."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)


def effective_deltas(
    folder: Path, model_factory: Callable[[], nn.Module] = tiny_llama
) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """What PEFT adds at each module once the adapter is loaded: (delta weight, scaled lora_B bias)."""
    model = PeftModel.from_pretrained(model_factory(), str(folder))
    deltas: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
    for name, module in model.named_modules():
        lora_a = getattr(module, "lora_A", None)
        lora_emb = getattr(module, "lora_embedding_A", None)
        if not ((lora_a is not None and "default" in lora_a) or (lora_emb is not None and "default" in lora_emb)):
            continue
        delta = module.get_delta_weight("default").detach().float()
        bias = None
        if lora_a is not None and "default" in lora_a and module.lora_B["default"].bias is not None:
            bias = (module.lora_B["default"].bias * module.scaling["default"]).detach().float()
        deltas[name.removeprefix("base_model.model.")] = (delta, bias)
    return deltas


def exact_sum(
    parts: list[tuple[dict[str, tuple[torch.Tensor, torch.Tensor | None]], float]],
) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """sum_i w_i dW_i per module (and of the biases), a missing module counting as zero."""
    modules = sorted({m for deltas, _ in parts for m in deltas})
    out: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
    for module in modules:
        delta = sum(w * d[module][0] for d, w in parts if module in d)
        biases = [w * d[module][1] for d, w in parts if module in d and d[module][1] is not None]
        out[module] = (delta, sum(biases) if biases else None)  # type: ignore[arg-type]
    return out


def relative(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).norm() / expected.norm().clamp(min=1e-30))


def logits_with_deltas(deltas: dict[str, tuple[torch.Tensor, torch.Tensor | None]]) -> torch.Tensor:
    """Logits of the base model with the given deltas added to its weights (no biases)."""
    model = tiny_llama()
    named = dict(model.named_modules())
    with torch.no_grad():
        for module, (delta, _) in deltas.items():
            named[module].weight += delta
        return model(INPUT_IDS).logits


def logits_of_adapter(folder: Path) -> torch.Tensor:
    model = PeftModel.from_pretrained(tiny_llama(), str(folder))
    with torch.no_grad():
        return model(INPUT_IDS).logits


INPUT_IDS = torch.arange(24).reshape(2, 12) % 128

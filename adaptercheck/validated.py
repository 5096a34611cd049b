"""What a successful validation knows of an adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from adaptercheck.limits import CONFIG_NAME, WEIGHTS_NAME
from adaptercheck.safetensors_header import TensorInfo


@dataclass(frozen=True)
class ValidatedAdapter:
    config: dict[str, Any]
    peft_type: str
    method: str
    rank: int | None
    lora_alpha: float | None
    target_modules: list[str] | str | None
    base_model: str | None
    tensors: dict[str, TensorInfo]
    # Module name -> shape of the base weight it modifies: (out, in) for Linear, (num_embeddings,
    # embedding_dim) for Embedding. LoRA family only (lora/dora/rslora/qlora, adalora, loha, lokr).
    modules: dict[str, tuple[int, int]]
    total_size: int
    files: tuple[str, ...] = field(default=())
    # IA3 only: module -> ("out"|"in", size) of the base features its vector scales.
    scaled: dict[str, tuple[str, int]] = field(default_factory=dict)
    # Other families: what each module they change requires of the base model. Keys: "in"/"out"
    # (a Linear layer's features), "cells" (at least that many weights), "norm" (a normalisation layer of the hidden
    # size), "hidden" (an attention module whose q_proj reads that many features), "layer" (a part of the model
    # the base must have, whose hidden size is that: a bottleneck adapter's layers).
    requires: dict[str, dict[str, int]] = field(default_factory=dict)
    # The file holding the adapter's weights: PEFT's adapter_model.safetensors, or adapter.safetensors for
    # the `adapters` library's layout (whose adapter_config.json is its own, kept byte for byte).
    weights: str = WEIGHTS_NAME
    # The PEFT configs the hub points at the resolved base model (each part's, for a hybrid; none for
    # the `adapters` library's layout, whose config is kept byte for byte).
    config_paths: tuple[str, ...] = (CONFIG_NAME,)

    @property
    def peft_layout(self) -> bool:
        return self.weights == WEIGHTS_NAME

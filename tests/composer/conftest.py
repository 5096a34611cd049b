"""Fixtures for composer tests; the helpers they use live in tests/composer/helpers.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from tests.composer.helpers import BASE_NAME, randomize_lora, tiny_llama

MakeAdapter = Callable[..., Path]


@pytest.fixture
def make_adapter(tmp_path: Path) -> MakeAdapter:
    """make_adapter(name, seed, base=..., dtype=..., model_factory=..., **LoraConfig kwargs) -> folder."""

    def make(
        name: str,
        seed: int,
        *,
        base: str | None = BASE_NAME,
        dtype: torch.dtype | None = None,
        model_factory: Callable[[], nn.Module] = tiny_llama,
        **lora_kwargs: Any,
    ) -> Path:
        lora_kwargs.setdefault("r", 4)
        lora_kwargs.setdefault("lora_alpha", 8)
        lora_kwargs.setdefault("target_modules", ["q_proj", "v_proj"])
        model = get_peft_model(model_factory(), LoraConfig(init_lora_weights=False, **lora_kwargs))
        randomize_lora(model, seed)
        if dtype is not None:
            model = model.to(dtype)
        model.peft_config["default"].base_model_name_or_path = base
        folder = tmp_path / name
        model.save_pretrained(str(folder))
        return folder

    return make

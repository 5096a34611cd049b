"""Real models and adapters for tests: a tiny Llama built from a config, and PEFT adapters on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BASE_MODEL_NAME = "hub-test/tiny-llama"


def tiny_llama_config() -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=128,
        max_position_embeddings=64,
    )


def tiny_llama(seed: int = 0) -> Any:
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(tiny_llama_config()).eval()


def make_base_model_folder(folder: Path) -> Path:
    """config.json + model.safetensors of the tiny Llama, as `save_pretrained` writes them."""
    tiny_llama().save_pretrained(folder, safe_serialization=True)
    return folder


def make_lora_adapter(
    folder: Path,
    *,
    seed: int = 0,
    r: int = 4,
    target_modules: tuple[str, ...] = ("q_proj", "v_proj"),
    base_model_name: str = BASE_MODEL_NAME,
    readme: str | None = "# A test adapter\n\nTrained on nothing, for tests.\n",
    **lora_kwargs: Any,
) -> Path:
    """A real PEFT LoRA adapter (B initialised non-zero) saved with `save_pretrained`."""
    import torch
    from peft import LoraConfig, get_peft_model

    base = tiny_llama()  # seeded on its own, so every adapter shares one base model
    torch.manual_seed(seed)
    config = LoraConfig(
        r=r,
        lora_alpha=2 * r,
        target_modules=list(target_modules),
        init_lora_weights=False,
        **lora_kwargs,
    )
    model = get_peft_model(base, config)
    model.peft_config["default"].base_model_name_or_path = base_model_name
    model.save_pretrained(folder)
    # PEFT writes a template card; ours keeps tests independent of its wording.
    if readme is not None:
        (folder / "README.md").write_text(readme)
    else:
        (folder / "README.md").unlink(missing_ok=True)
    return folder


def read_config(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "adapter_config.json").read_text()))

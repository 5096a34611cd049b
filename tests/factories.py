"""Real models and adapters for tests: a tiny Llama built from a config, and PEFT adapters on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from demo.tiny_llama import tiny_llama_config as demo_tiny_llama_config

BASE_MODEL_NAME = "hub-test/tiny-llama"


def tiny_llama_config(hidden_size: int = 64) -> Any:
    return demo_tiny_llama_config(hidden_size=hidden_size, intermediate_size=128)


def tiny_llama(seed: int = 0, hidden_size: int = 64) -> Any:
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(tiny_llama_config(hidden_size)).eval()


def tiny_llama_manifest(hidden_size: int = 64) -> dict[str, list[int]]:
    """The shape manifest (linear module -> [out, in]) of tiny_llama, as register_base_model keeps it."""
    import torch
    from transformers import LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(tiny_llama_config(hidden_size))
    return {
        name: [module.out_features, module.in_features]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    }


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
    hidden_size: int = 64,
    **lora_kwargs: Any,
) -> Path:
    """A real PEFT LoRA adapter (B initialised non-zero) saved with `save_pretrained`."""
    import torch
    from peft import LoraConfig, get_peft_model

    base = tiny_llama(hidden_size=hidden_size)  # seeded on its own, so every adapter shares one base model
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


LLAMA_PROJECTIONS = {
    "self_attn.q_proj": ("hidden", "hidden"),
    "self_attn.k_proj": ("hidden", "hidden"),
    "self_attn.v_proj": ("hidden", "hidden"),
    "self_attn.o_proj": ("hidden", "hidden"),
    "mlp.gate_proj": ("intermediate", "hidden"),
    "mlp.up_proj": ("intermediate", "hidden"),
    "mlp.down_proj": ("hidden", "intermediate"),
}


def synthetic_manifest(*, hidden: int = 1024, intermediate: int = 2816, layers: int = 4) -> dict[str, list[int]]:
    """The manifest of the base model make_synthetic_lora's adapters are of."""
    sizes = {"hidden": hidden, "intermediate": intermediate}
    return {
        f"model.layers.{layer}.{module}": [sizes[out_dim], sizes[in_dim]]
        for layer in range(layers)
        for module, (out_dim, in_dim) in LLAMA_PROJECTIONS.items()
    }


def make_synthetic_lora(
    folder: Path,
    *,
    seed: int,
    hidden: int = 1024,
    intermediate: int = 2816,
    layers: int = 4,
    r: int = 16,
    base_model_name: str = "hub-test/llama-1024",
) -> Path:
    """A PEFT-format LoRA adapter at realistic sizes, written directly (no model is built)."""
    import torch
    from safetensors.torch import save_file

    sizes = {"hidden": hidden, "intermediate": intermediate}
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(layers):
        for module, (out_dim, in_dim) in LLAMA_PROJECTIONS.items():
            key = f"base_model.model.model.layers.{layer}.{module}"
            d_out, d_in = sizes[out_dim], sizes[in_dim]
            tensors[f"{key}.lora_A.weight"] = torch.randn(r, d_in, generator=generator) / d_in**0.5
            tensors[f"{key}.lora_B.weight"] = torch.randn(d_out, r, generator=generator) * 0.02
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": r,
        "lora_alpha": 2 * r,
        "lora_dropout": 0.0,
        "target_modules": sorted(m.split(".")[1] for m in LLAMA_PROJECTIONS),
        "base_model_name_or_path": base_model_name,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "inference_mode": True,
    }
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return folder

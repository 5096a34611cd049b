"""BitFit adapters: trained biases, the hub's own format (PEFT has none).

A BitFit folder holds `adapter_config.json` with `"peft_type": "BITFIT"` (plus
`base_model_name_or_path` and, optionally, the `target_modules` it trained) and
`adapter_model.safetensors` with one tensor per changed layer, named after the base model's own
parameter: `<module path>.bias`, shape (out_features,). Applying it sets each named layer's bias,
adding one to a layer built without (Llama's projections have none).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

PEFT_TYPE = "BITFIT"
WEIGHTS_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"


def apply_bitfit(model: nn.Module, folder: str | Path) -> nn.Module:
    """Set the biases a BitFit folder holds on `model`, in place; returns the model."""
    folder = Path(folder)
    config = json.loads((folder / CONFIG_FILE).read_text())
    if config.get("peft_type") != PEFT_TYPE:
        raise ValueError(f"{folder} is not a BitFit adapter (peft_type {config.get('peft_type')!r})")
    for name, bias in load_file(str(folder / WEIGHTS_FILE)).items():
        layer = model.get_submodule(name.removesuffix(".bias"))
        weight, current = getattr(layer, "weight", None), getattr(layer, "bias", None)
        value = bias.to(weight.device, weight.dtype) if isinstance(weight, torch.Tensor) else bias
        if isinstance(current, torch.Tensor):
            with torch.no_grad():
                current.copy_(value)
        else:
            layer.bias = nn.Parameter(value, requires_grad=False)
    return model


def save_bitfit(biases: dict[str, torch.Tensor], folder: str | Path, *, base_model: str) -> Path:
    """Write a BitFit folder from trained biases (parameter name -> tensor); returns the folder."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    modules = sorted({name.removesuffix(".bias").rsplit(".", 1)[-1] for name in biases})
    config = {"peft_type": PEFT_TYPE, "base_model_name_or_path": base_model, "target_modules": modules}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_file({k: v.detach().contiguous() for k, v in biases.items()}, str(folder / WEIGHTS_FILE))
    return folder

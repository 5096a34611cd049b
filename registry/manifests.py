"""Shape manifests of base models (linear module name -> [out, in]), built without loading weights.

From a model folder the safetensors headers are read (a few KB per shard); from a `transformers`
config the model is instantiated on the meta device, which allocates no memory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adaptercheck import build_manifest_from_safetensors_headers, parse_safetensors_header


def manifest_from_folder(folder: Path) -> tuple[str, dict[str, list[int]]]:
    """(architecture, manifest) of a model folder holding config.json and safetensors weights."""
    config = _read_config(folder / "config.json")
    index = folder / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        shards = [p.name for p in sorted(folder.glob("*.safetensors"))]
    if not shards:
        raise ValueError(f"{folder} has no *.safetensors weights (pickled weights are not read)")
    headers = []
    for shard in shards:
        path = folder / shard
        with path.open("rb") as f:
            headers.append(parse_safetensors_header(f, path.stat().st_size, path=shard))
    stored_in_out = _conv1d_modules(folder)
    return _architecture(config), build_manifest_from_safetensors_headers(headers, stored_in_out=stored_in_out)


def _meta_model(config_path: Path) -> Any:
    """The model a `transformers` config describes, on the meta device (no memory): a causal LM
    when the architecture has one, else its base model (encoders such as RoBERTa)."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(config_path.parent if config_path.is_file() else config_path)
    with torch.device("meta"):
        try:
            return AutoModelForCausalLM.from_config(config)
        except ValueError:  # no causal LM head for this architecture
            return AutoModel.from_config(config)


def _conv1d_modules(folder: Path) -> set[str]:
    """Modules whose weight is stored (in, out) (GPT-2's Conv1D), found on the meta model; none when
    transformers cannot build the model from its config (then every 2-D weight is taken as (out, in))."""
    from transformers.pytorch_utils import Conv1D

    try:
        model = _meta_model(folder / "config.json")
    except (ValueError, KeyError, OSError):
        return set()
    prefix = getattr(model, "base_model_prefix", "")
    names = {name for name, module in model.named_modules() if isinstance(module, Conv1D)}
    # A checkpoint of the bare model (GPT2Model) names modules without the head model's prefix.
    return names | {name[len(prefix) + 1 :] for name in names if prefix and name.startswith(f"{prefix}.")}


def manifest_from_config(config_path: Path) -> tuple[str, dict[str, list[int]]]:
    """(architecture, manifest) of the model a `transformers` config describes."""
    import torch
    from transformers.pytorch_utils import Conv1D

    model = _meta_model(config_path)
    config = model.config
    manifest: dict[str, list[int]] = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            manifest[name] = [module.out_features, module.in_features]
        elif isinstance(module, Conv1D):  # GPT-2 style: the weight is stored (in, out)
            manifest[name] = [module.nf, module.weight.shape[0]]
    return _architecture(config.to_dict()), manifest


def _read_config(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ValueError(f"{path} is missing: a model folder needs its config.json")
    return dict(json.loads(path.read_text()))


def _architecture(config: dict[str, Any]) -> str:
    architectures = config.get("architectures") or []
    return str(architectures[0]) if architectures else str(config.get("model_type", ""))

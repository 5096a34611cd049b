"""Shape rules of bottleneck adapters (Houlsby, Pfeiffer, parallel) as AdapterHub's `adapters` library
saves them with `model.save_adapter(path, name, use_safetensors=True)`:

- adapter_config.json: ``{"config": {...}, "name", "model_name", "model_type", "model_class",
  "hidden_size", "version"}``, the adapter's own settings under ``config``;
- adapter.safetensors: per adapted block ``<layer>.<block>.adapters.<name>.adapter_down.0.weight``
  (bottleneck, hidden) and ``.adapter_up.weight`` (hidden, bottleneck), with biases; Pfeiffer's
  invertible adapters add ``<body>.invertible_adapters.<name>.{F,G}.{0,2}.{weight,bias}`` over half the
  hidden size;
- optionally head_config.json and model_head.safetensors: a copy of a base model layer (a causal LM's
  ``lm_head``) or a flexible head ``heads.<name>.<i>.{weight,bias}`` reading the hidden states.

Checked here: every tensor's place in that layout and the shapes that tie them together. What the
base model must have (the layers, the hidden size) is returned as requirements and checked against its
manifest by base_model.check_base_shapes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from adaptercheck.errors import refuse
from adaptercheck.families.common import Ctx
from adaptercheck.safetensors_header import TensorInfo

LIBRARY_WEIGHTS = "adapter.safetensors"
HEAD_CONFIG = "head_config.json"
HEAD_WEIGHTS = "model_head.safetensors"
LIBRARY_PICKLES = ("pytorch_adapter.bin", "pytorch_model_head.bin")

_BLOCK_RE = re.compile(
    r"(?P<module>(?P<layer>.+?\.\d+)(?:\.[^.]+)+?)\.adapters\.(?P<name>[^.]+)\."
    r"(?P<kind>adapter_down\.0\.(?:weight|bias)|adapter_up\.(?:weight|bias)|gate\.(?:weight|bias)"
    r"|adapter_norm_(?:before|after)\.(?:weight|bias))"
)
_INVERTIBLE_RE = re.compile(
    r"(?P<module>.+)\.invertible_adapters\.(?P<name>[^.]+)\.(?P<kind>[FG]\.[02]\.(?:weight|bias))"
)
_FLEX_HEAD_RE = re.compile(r"heads\.(?P<name>[^.]+)\.(?P<index>\d+)\.(?P<kind>weight|bias)")
_BASE_LAYER_RE = re.compile(r"(?P<module>.+)\.(?P<kind>weight|bias)")
_EXPECTED = "<layer>.<block>.adapters.<name>.adapter_down.0.weight / .adapter_up.weight and their biases"


def is_library_config(config: Mapping[str, Any]) -> bool:
    """Whether an adapter_config.json is the `adapters` library's (its settings nested under
    "config", the model it was saved from beside them), not PEFT's."""
    return isinstance(config.get("config"), dict) and "peft_type" not in config and "model_type" in config


def library_base_model(config: Mapping[str, Any]) -> str | None:
    """The base model the library recorded: `model_name`, the id or folder the model was loaded from."""
    name = config.get("model_name")
    return name.strip() if isinstance(name, str) and name.strip() else None


def check_library_config(config: Mapping[str, Any], path: str) -> None:
    """The library's other architectures (its LoRA, prefix tuning, ReFT, unions) are PEFT's business here."""
    architecture = config["config"].get("architecture")
    if architecture not in (None, "bottleneck"):
        raise refuse(
            "unsupported_adapter_architecture",
            f"{path} describes an `adapters` library {architecture!r} adapter; the hub takes that library's "
            "bottleneck adapters (Houlsby, Pfeiffer, parallel). Train other methods with PEFT, which the hub "
            "takes in full.",
            path,
        )
    for key in ("name", "model_name", "model_type", "model_class"):
        if config.get(key) is not None and not isinstance(config[key], str):
            raise refuse("bad_config", f"{path}: {key!r} must be a string, got {config[key]!r}.", path)
    hidden = config.get("hidden_size")
    if hidden is not None and (not isinstance(hidden, int) or isinstance(hidden, bool) or hidden <= 0):
        raise refuse("bad_config", f"{path}: 'hidden_size' must be a positive integer, got {hidden!r}.", path)


def architecture_of(settings: Mapping[str, Any]) -> str:
    """What people call a bottleneck configuration: Houlsby (after attention and feed-forward),
    Pfeiffer (after feed-forward), parallel (beside the block)."""
    if settings.get("is_parallel"):
        return "Parallel"
    if settings.get("mh_adapter") and settings.get("output_adapter"):
        return "Houlsby"
    return "Pfeiffer" if settings.get("output_adapter") else "Bottleneck"


def _grouped(ctx: Ctx, name: str | None) -> tuple[dict[str, dict[str, TensorInfo]], dict[str, str]]:
    """Tensors by block (and invertible module), and each block's layer."""
    blocks: dict[str, dict[str, TensorInfo]] = {}
    layers: dict[str, str] = {}
    for tensor, info in ctx.tensors.items():
        match = _BLOCK_RE.fullmatch(tensor) or _INVERTIBLE_RE.fullmatch(tensor)
        if match is None:
            raise refuse(
                "unexpected_tensor",
                f"{ctx.path}: tensor {tensor!r} is not part of a bottleneck adapter (expected {_EXPECTED}).",
                ctx.path,
            )
        if name is not None and match.group("name") != name:
            raise refuse(
                "unexpected_tensor",
                f"{ctx.path}: tensor {tensor!r} belongs to adapter {match.group('name')!r}, but the config saves "
                f"adapter {name!r}.",
                ctx.path,
            )
        name = match.group("name")
        module = match.group("module")
        key = f"{module}.invertible_adapters" if "layer" not in match.groupdict() else module
        blocks.setdefault(key, {})[match.group("kind")] = info
        if "layer" in match.groupdict():
            layers[key] = match.group("layer")
        else:
            layers[key] = module
    if not blocks:
        raise refuse("empty_adapter", f"{ctx.path} holds no bottleneck adapter tensors ({_EXPECTED}).", ctx.path)
    return blocks, layers


def _vector(ctx: Ctx, module: str, part: str, parts: Mapping[str, TensorInfo], size: int, why: str) -> None:
    if part in parts and parts[part].shape != (size,):
        raise ctx.shape_error(module, part, f"({size},)", parts[part].shape, why)


def _check_block(ctx: Ctx, module: str, parts: Mapping[str, TensorInfo]) -> tuple[int, int]:
    """(hidden, bottleneck) of one adapter block."""
    for needed in ("adapter_down.0.weight", "adapter_up.weight"):
        if needed not in parts:
            raise refuse(
                "unpaired_lora",
                f"{ctx.path}: bottleneck block {module!r} has no {needed}; each block needs adapter_down.0.weight "
                "and adapter_up.weight.",
                ctx.path,
            )
    down, up = parts["adapter_down.0.weight"].shape, parts["adapter_up.weight"].shape
    if len(down) != 2:
        raise ctx.shape_error(module, "adapter_down.0.weight", "(bottleneck, hidden)", down, "a Linear layer")
    bottleneck, hidden = down
    if up != (hidden, bottleneck):
        raise ctx.shape_error(
            module, "adapter_up.weight", f"({hidden}, {bottleneck})", up, "adapter_down's shape transposed"
        )
    _vector(ctx, module, "adapter_down.0.bias", parts, bottleneck, "one per bottleneck feature")
    for part in (
        "adapter_up.bias",
        *(f"adapter_norm_{w}.{p}" for w in ("before", "after") for p in ("weight", "bias")),
    ):
        _vector(ctx, module, part, parts, hidden, "one per hidden feature")
    gate = parts.get("gate.weight")
    if gate is not None and (len(gate.shape) != 2 or gate.shape[1] != hidden):
        raise ctx.shape_error(module, "gate.weight", f"(gates, {hidden})", gate.shape, "a gate reads the hidden state")
    return hidden, bottleneck


def _check_invertible(ctx: Ctx, module: str, parts: Mapping[str, TensorInfo]) -> int:
    """The hidden size of an invertible adapter: its F and G each map one half of it to the other."""
    first = parts.get("F.0.weight")
    if first is None or len(first.shape) != 2:
        raise ctx.shape_error(module, "F.0.weight", "(reduced, hidden / 2)", first.shape if first else (), "NICE")
    reduced, half = first.shape
    for net in ("F", "G"):
        for part, shape in ((f"{net}.0.weight", (reduced, half)), (f"{net}.2.weight", (half, reduced))):
            if part not in parts or parts[part].shape != shape:
                found = parts[part].shape if part in parts else ()
                raise ctx.shape_error(module, part, str(shape), found, "a NICE coupling over half the hidden size")
        _vector(ctx, module, f"{net}.0.bias", parts, reduced, "one per reduced feature")
        _vector(ctx, module, f"{net}.2.bias", parts, half, "one per half-hidden feature")
    return 2 * half


def check_bottleneck(ctx: Ctx) -> tuple[dict[str, dict[str, int]], int]:
    """Layer -> {"layer": hidden} for each adapted layer the base model must have, and the bottleneck
    size (the largest, as reduction factors may differ per layer)."""
    name = ctx.config.get("name")
    blocks, layers = _grouped(ctx, name if isinstance(name, str) else None)
    widths: set[int] = set()
    bottleneck = 0
    required: dict[str, dict[str, int]] = {}
    for module, parts in sorted(blocks.items()):
        if module.endswith(".invertible_adapters"):
            hidden = _check_invertible(ctx, module, parts)
        else:
            hidden, size = _check_block(ctx, module, parts)
            bottleneck = max(bottleneck, size)
        widths.add(hidden)
        required[layers[module]] = {"layer": hidden}
    declared = ctx.config.get("hidden_size")
    if len(widths) > 1 or (declared is not None and widths != {declared}):
        raise refuse(
            "shape_mismatch",
            f"{ctx.path}: the adapter's blocks read hidden sizes {sorted(widths)} but {ctx.config_path} says "
            f"hidden_size {declared}.",
            ctx.path,
        )
    return required, bottleneck


def check_head(tensors: Mapping[str, TensorInfo], path: str, hidden: int | None) -> dict[str, dict[str, int]]:
    """A saved prediction head: copies of base layers (module -> {"head_out", "head_in"}, checked against
    the manifest: a tied head, as GPT-2's, is in no manifest and must read the hidden state) or a flexible
    head whose first layer reads the hidden state (checked here against `hidden`)."""
    required: dict[str, dict[str, int]] = {}
    flex: dict[int, TensorInfo] = {}
    for tensor, info in tensors.items():
        match = _FLEX_HEAD_RE.fullmatch(tensor)
        if match is not None:
            if match.group("kind") == "weight":
                flex[int(match.group("index"))] = info
            continue
        base_layer = _BASE_LAYER_RE.fullmatch(tensor)
        if base_layer is None:
            raise refuse(
                "unexpected_tensor",
                f"{path}: tensor {tensor!r} is neither a base model layer nor a head layer heads.<name>.<i>.weight.",
                path,
            )
        shape = info.shape
        if base_layer.group("kind") == "weight" and len(shape) == 2:
            required[base_layer.group("module")] = {"head_out": shape[0], "head_in": shape[1]}
        elif len(shape) != 1:
            raise refuse("shape_mismatch", f"{path}: tensor {tensor!r} has shape {list(shape)}.", path)
    if flex:
        first = flex[min(flex)]
        if len(first.shape) != 2 or (hidden is not None and first.shape[1] != hidden):
            raise refuse(
                "shape_mismatch",
                f"{path}: the head's first layer is {list(first.shape)} but should read the model's {hidden} hidden "
                "features.",
                path,
            )
    return required

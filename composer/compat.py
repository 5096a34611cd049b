"""Checks that a set of adapters can be composed, run before any tensor math.

Every refusal names what differs and which inputs disagree, so a person can fix the request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from composer.errors import CompositionError
from composer.io import LoraAdapter, load_lora
from composer.types import ModuleShape

# LoraConfig fields that turn on a LoRA variant whose forward pass is not x + s*B@A*x
# (PEFT tags most with "is_lora_variant"; QALoRA pools its input). Adding such deltas as
# plain LoRA would be silently wrong, which is what PEFT's add_weighted_adapter does.
_VARIANT_FIELDS: dict[str, str] = {
    "use_dora": "DoRA rescales each output row by a learned magnitude vector",
    "use_qalora": "QA-LoRA pools its input before lora_A",
    "use_bdlora": "BD-LoRA uses block-diagonal factors",
    "kasa_config": "KaSA adds a learned diagonal between the factors",
    "velora_config": "VeLoRA changes the layer's forward pass",
    "monteclora_config": "MonteCLoRA samples its factors",
    "arrow_config": "Arrow routes between several LoRAs per token",
    "alora_invocation_tokens": "activated LoRA only applies after invocation tokens",
    "target_parameters": "LoRA on nn.Parameter targets is not a module delta",
    "trainable_token_indices": "trainable-token deltas are not LoRA factors",
    "layer_replication": "layer replication changes the base model's layer layout",
}
# init_lora_weights values after which the adapter only works on a *modified* base model
# (the residual W - s*B0@A0), unless it was converted when saved (PEFT then writes True).
_RESIDUAL_INITS = ("pissa", "olora", "corda")
_VARIANT_INITS = ("mica",)


@dataclass(frozen=True)
class Compatibility:
    """What a set of compatible adapters share: the base model and the union of their modules."""

    base_model: str | None
    revision: str | None
    modules: dict[str, ModuleShape]
    extra_keys: tuple[str, ...]
    fan_in_fan_out: bool
    task_type: str | None
    has_bias: bool
    dtype: torch.dtype  # the inputs' common storage dtype, float32 when they disagree


def as_adapter(item: LoraAdapter | str | os.PathLike[str]) -> LoraAdapter:
    return item if isinstance(item, LoraAdapter) else load_lora(item)


def check_compatible(adapters: Sequence[LoraAdapter | str | os.PathLike[str]]) -> Compatibility:
    """Refuse, with a `CompositionError` that says exactly what differs, adapters we cannot compose.

    Steps:
        1. Each input is a plain LoRA adapter (no DoRA or other variant) whose config and tensors agree.
        2. All inputs record the same base model (name and revision).
        3. Every module shared by several inputs has the same kind and shape in each.
        4. Non-LoRA tensors (modules_to_save copies, trained biases) are identical in all inputs.
        5. Shared layout settings (fan_in_fan_out, task_type) agree.

    Different ranks, alphas, rsLoRA and target-module sets are all fine: modules are united and a
    module an input lacks counts as a zero delta for it.
    """
    loaded = [as_adapter(item) for item in adapters]
    if not loaded:
        raise CompositionError("bad_input", "no input adapters given")
    for adapter in loaded:
        _check_plain_lora(adapter)
    _check_same_base(loaded)
    modules = _check_module_shapes(loaded)
    extra_keys = _check_extras(loaded)
    fan_in_fan_out = _agreed_flag(loaded, "fan_in_fan_out")
    task_types = {a.config.get("task_type") for a in loaded} - {None}
    if len(task_types) > 1:
        raise CompositionError(
            "config_mismatch",
            f"inputs were trained for different task types: {', '.join(sorted(map(str, task_types)))}",
        )
    dtypes = {a.dtype for a in loaded}
    return Compatibility(
        base_model=loaded[0].base_model,
        revision=loaded[0].revision,
        modules=modules,
        extra_keys=extra_keys,
        fan_in_fan_out=fan_in_fan_out,
        task_type=task_types.pop() if task_types else None,
        has_bias=any(entry.bias_key is not None for a in loaded for entry in a.modules.values()),
        dtype=dtypes.pop() if len(dtypes) == 1 else torch.float32,
    )


def check_plain_lora_config(config: Mapping[str, Any], name: str) -> None:
    """Refuse (unsupported_variant) a LoRA config whose variant the composer cannot treat as a
    plain delta; the registry calls it before queueing a job, the composer again on the tensors."""
    for field, why in _VARIANT_FIELDS.items():
        if config.get(field):
            raise CompositionError(
                "unsupported_variant", f"{name} sets {field}: {why}, so it cannot be composed as a plain LoRA delta"
            )
    init = config.get("init_lora_weights")
    if isinstance(init, str) and init.startswith(_RESIDUAL_INITS):
        raise CompositionError(
            "unsupported_variant",
            f"{name} sets init_lora_weights={init!r} and was saved without conversion, so it only applies to a modified "
            "base model; re-save it with path_initial_model_for_weight_conversion",
        )
    if isinstance(init, str) and init.startswith(_VARIANT_INITS):
        raise CompositionError(
            "unsupported_variant", f"{name} sets init_lora_weights={init!r}, a LoRA variant that is not supported"
        )


def _check_plain_lora(adapter: LoraAdapter) -> None:
    name = adapter.reference
    if adapter.peft_type.upper() != "LORA":
        raise CompositionError(
            "unsupported_adapter_type",
            f"{name} is a {adapter.peft_type or 'non-PEFT'} adapter; only LoRA adapters can be composed",
        )
    config = adapter.config
    check_plain_lora_config(config, name)
    if adapter.unsupported_keys:
        shown = ", ".join(adapter.unsupported_keys[:3])
        raise CompositionError(
            "unsupported_variant", f"{name} has LoRA-variant tensors that cannot be composed exactly: {shown}"
        )
    if not adapter.modules:
        raise CompositionError("bad_input", f"{name} contains no LoRA factors")
    if config.get("lora_bias") is False and any(e.bias_key for e in adapter.modules.values()):
        raise CompositionError("bad_input", f"{name} has lora_B biases but its config says lora_bias=false")
    for module, entry in adapter.modules.items():
        declared = adapter.declared_rank(module)
        if declared != entry.rank:
            raise CompositionError(
                "bad_input",
                f"{name}: adapter_config.json gives module {module!r} rank {declared} but its tensors have rank "
                f"{entry.rank}; PEFT could not load this adapter either",
            )


def _check_same_base(adapters: Sequence[LoraAdapter]) -> None:
    first = adapters[0]
    for other in adapters[1:]:
        if other.base_model != first.base_model:
            raise CompositionError(
                "base_model_mismatch",
                f"{first.reference} was trained on base model {first.base_model!r} but {other.reference} on "
                f"{other.base_model!r}",
            )
        if other.revision != first.revision:
            raise CompositionError(
                "base_model_mismatch",
                f"{first.reference} was trained on {first.base_model!r} revision {first.revision!r} but "
                f"{other.reference} on revision {other.revision!r}",
            )


def _check_module_shapes(adapters: Sequence[LoraAdapter]) -> dict[str, ModuleShape]:
    shapes: dict[str, tuple[ModuleShape, str]] = {}
    for adapter in adapters:
        for module, entry in adapter.modules.items():
            seen = shapes.get(module)
            if seen is None:
                shapes[module] = (entry.shape, adapter.reference)
            elif seen[0] != entry.shape:
                raise CompositionError(
                    "shape_mismatch",
                    f"module {module!r} is {seen[0].describe()} in {seen[1]} but {entry.shape.describe()} in "
                    f"{adapter.reference}; the adapters were not trained on the same base model",
                )
    return {module: shapes[module][0] for module in sorted(shapes)}


def _check_extras(adapters: Sequence[LoraAdapter]) -> tuple[str, ...]:
    """Full-module copies cannot be weighted like deltas, so they pass through only when identical."""
    first = adapters[0]
    for other in adapters[1:]:
        if set(other.extra_keys) != set(first.extra_keys):
            differing = sorted(set(other.extra_keys) ^ set(first.extra_keys))
            raise CompositionError(
                "modules_to_save_conflict",
                f"{first.reference} and {other.reference} carry different non-LoRA tensors (modules_to_save or "
                f"trained biases), e.g. {differing[0]!r}; such full-module copies cannot be weighted, so they must be "
                "identical in every input",
            )
        for key in first.extra_keys:
            if not _same_tensor(first.tensor(key), other.tensor(key)):
                raise CompositionError(
                    "modules_to_save_conflict",
                    f"{first.reference} and {other.reference} carry different values for the non-LoRA tensor {key!r} "
                    "(modules_to_save or trained bias); it can only be carried over when identical in every input",
                )
    return first.extra_keys


def _same_tensor(left: torch.Tensor, right: torch.Tensor) -> bool:
    return left.shape == right.shape and left.dtype == right.dtype and bool(torch.equal(left, right))


def _agreed_flag(adapters: Sequence[LoraAdapter], field: str) -> bool:
    values = {bool(a.config.get(field, False)) for a in adapters}
    if len(values) > 1:
        which = ", ".join(f"{a.reference}={bool(a.config.get(field, False))}" for a in adapters)
        raise CompositionError("config_mismatch", f"inputs disagree on {field}: {which}")
    return values.pop()

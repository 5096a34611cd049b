"""Checks that a set of adapters can be composed, run before any tensor math.

Every refusal names what differs and which inputs disagree, so a person can fix the request.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from composer.errors import CompositionError
from composer.families import COMPOSABLE_TYPES, BaseView, FamilyAdapter, family_of, load_family_adapter
from composer.hybrid import HYBRID_FILE, HybridInput, hybrid_paths
from composer.io import CONFIG_FILE, LoraAdapter, load_lora
from composer.types import ModuleShape

# Any input the composer reads: a LoRA (factors as stored) or another method's deltas.
Input = LoraAdapter | FamilyAdapter

# LoraConfig fields that turn on a LoRA variant whose forward pass is not x + s*B@A*x
# (PEFT tags most with "is_lora_variant"; QALoRA pools its input). Adding such deltas as
# plain LoRA would be silently wrong, which is what PEFT's add_weighted_adapter does. (DoRA is
# read as its own method, composer.families, whose delta is computed from the base weight.)
_VARIANT_FIELDS: dict[str, str] = {
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


def load_adapter(
    path: str | os.PathLike[str],
    *,
    reference: str | None = None,
    sha256: str | None = None,
    base: BaseView | None = None,
) -> Any:
    """Open a PEFT adapter folder as the composer reads it: a plain LoRA as a LoraAdapter, a method
    whose delta is computable (AdaLoRA, LoHa, LoKr, VeRA, FourierFT, IA3, DoRA) as a FamilyAdapter
    (`base` gives the layer shapes and weights some of them need); a hybrid as a HybridInput of those."""
    folder = Path(path)
    if (folder / HYBRID_FILE).is_file():
        named = reference or str(folder)
        parts = [
            (name, load_adapter(folder / name, reference=f"{named}/{name}", base=base)) for name in hybrid_paths(folder)
        ]
        return HybridInput(parts=parts, reference=reference or str(folder), sha256=sha256)
    config_path = folder / CONFIG_FILE
    if folder.is_dir() and config_path.is_file():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CompositionError("bad_input", f"{config_path} is not valid JSON: {exc}") from None
        if isinstance(config, dict) and family_of(config) in COMPOSABLE_TYPES:
            return load_family_adapter(folder, reference=reference, sha256=sha256, base=base)
    return load_lora(folder, reference=reference, sha256=sha256)


def as_adapter(item: Any, base: BaseView | None = None) -> Any:
    return item if isinstance(item, (LoraAdapter, FamilyAdapter, HybridInput)) else load_adapter(item, base=base)


def module_shapes(adapter: Input) -> dict[str, ModuleShape]:
    if isinstance(adapter, LoraAdapter):
        return {module: entry.shape for module, entry in adapter.modules.items()}
    return dict(adapter.modules)


def check_compatible(adapters: Sequence[Input | str | os.PathLike[str]]) -> Compatibility:
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
        if isinstance(adapter, LoraAdapter):
            _check_plain_lora(adapter)
        else:
            adapter.require_shapes()
    check_same_base(loaded)
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
        has_bias=any(
            entry.bias_key is not None for a in loaded if isinstance(a, LoraAdapter) for entry in a.modules.values()
        ),
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
            f"{name} is a {adapter.peft_type or 'non-PEFT'} adapter, which changes no weight by a computable delta",
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


def check_same_base(adapters: Sequence[Input]) -> None:
    """Refuse (base_model_mismatch) inputs trained on different base models or revisions."""
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


def _check_module_shapes(adapters: Sequence[Input]) -> dict[str, ModuleShape]:
    shapes: dict[str, tuple[ModuleShape, str]] = {}
    for adapter in adapters:
        for module, shape in module_shapes(adapter).items():
            seen = shapes.get(module)
            if seen is None:
                shapes[module] = (shape, adapter.reference)
            elif seen[0] != shape:
                raise CompositionError(
                    "shape_mismatch",
                    f"module {module!r} is {seen[0].describe()} in {seen[1]} but {shape.describe()} in "
                    f"{adapter.reference}; the adapters were not trained on the same base model",
                )
    return {module: shapes[module][0] for module in sorted(shapes)}


def _check_extras(adapters: Sequence[Input]) -> tuple[str, ...]:
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


def _agreed_flag(adapters: Sequence[Input], field: str) -> bool:
    values = {bool(a.config.get(field, False)) for a in adapters}
    if len(values) > 1:
        which = ", ".join(f"{a.reference}={bool(a.config.get(field, False))}" for a in adapters)
        raise CompositionError("config_mismatch", f"inputs disagree on {field}: {which}")
    return values.pop()

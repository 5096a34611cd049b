"""Shape rules of methods that train whole small layers: LN tuning (copies of normalisation
layers) and LLaMA-Adapter (PEFT's adaption prompt: learned prompts and gates in the top
attention layers)."""

from __future__ import annotations

import re

from adaptercheck.errors import refuse
from adaptercheck.families.common import Ctx, group

_LN_RE = re.compile(r"(?P<module>.+)\.ln_tuning_layers\.(?P<kind>weight|bias)")
_ADAPTION_RE = re.compile(r"(?P<module>.+\.(?P<layer>\d+)\.[^.]+)\.(?P<kind>adaption_prompt|adaption_gate)")


def check_ln_tuning(ctx: Ctx) -> dict[str, int]:
    """Norm module -> its size (the model's hidden size, checked against the base's manifest)."""
    sizes: dict[str, int] = {}
    for module, parts in sorted(group(ctx, _LN_RE, "<module>.ln_tuning_layers.weight").items()):
        ctx.check_targeted(module)
        for part, info in parts.items():
            if len(info.shape) != 1:
                raise ctx.shape_error(module, f"ln_tuning_layers.{part}", "(hidden,)", info.shape, "a norm's vector")
        widths = {info.shape[0] for info in parts.values()}
        if len(widths) != 1:
            raise ctx.shape_error(module, "ln_tuning_layers.bias", "(hidden,)", parts["bias"].shape, "as its weight")
        sizes[module] = widths.pop()
    return sizes


def check_adaption_prompt(ctx: Ctx) -> dict[str, dict[str, int]]:
    """Attention module -> {"hidden": size}: `adaption_prompt` is (1, adapter_len, hidden),
    `adaption_gate` (1,), in exactly `adapter_layers` layers, the top ones of the model."""
    length, layers = int(ctx.config["adapter_len"]), int(ctx.config["adapter_layers"])
    grouped = group(ctx, _ADAPTION_RE, "<layer>.<attention>.adaption_prompt and .adaption_gate")
    required: dict[str, dict[str, int]] = {}
    for module, parts in sorted(grouped.items()):
        for needed in ("adaption_prompt", "adaption_gate"):
            if needed not in parts:
                raise refuse(
                    "unpaired_lora",
                    f"{ctx.path}: LLaMA-Adapter module {module!r} has no {needed}; each adapted layer needs both.",
                    ctx.path,
                )
        prompt, gate = parts["adaption_prompt"].shape, parts["adaption_gate"].shape
        if len(prompt) != 3 or prompt[:2] != (1, length):
            raise ctx.shape_error(
                module, "adaption_prompt", f"(1, {length}, hidden)", prompt, f"adapter_len is {length}"
            )
        if gate != (1,):
            raise ctx.shape_error(module, "adaption_gate", "(1,)", gate, "one gate per layer")
        required[module] = {"hidden": prompt[2]}
    if len(required) != layers:
        raise refuse(
            "shape_mismatch",
            f"{ctx.path}: adapter_layers is {layers} but {len(required)} layers hold adaption prompts.",
            ctx.path,
        )
    return required

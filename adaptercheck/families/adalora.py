"""Shape rules of AdaLoRA: A, B and the singular values E, ranks pruned per module."""

from __future__ import annotations

import re

from adaptercheck._util import shape_str
from adaptercheck.families.common import PEFT_PREFIX, Ctx, group, require_2d, require_parts

_ADALORA_RE = re.compile(r"(?P<module>.+)\.(?P<kind>lora_A|lora_B|lora_E)(?:\.[^.]+)?")


def check_adalora(ctx: Ctx) -> tuple[dict[str, tuple[int, int]], int]:
    """Return module shapes and the largest rank actually stored (AdaLoRA prunes ranks per module)."""
    cfg = ctx.config
    grouped = group(ctx, _ADALORA_RE, "<module>.lora_A / lora_B / lora_E triples")
    # AdaLoRA's rank_pattern maps "<module>.lora_E[.<adapter>]" to the kept-rank mask.
    masks: dict[str, int] = {}
    for key, mask in (cfg.get("rank_pattern") or {}).items():
        module = key.split(".lora_E")[0]
        masks[module[len(PEFT_PREFIX) :] if module.startswith(PEFT_PREFIX) else module] = sum(bool(b) for b in mask)
    bound = int(cfg.get("init_r") or cfg["r"])
    shapes: dict[str, tuple[int, int]] = {}
    top = 0
    for module in sorted(grouped):
        parts = grouped[module]
        require_parts(ctx, module, parts, ("lora_A", "lora_B", "lora_E"), "AdaLoRA")
        ctx.check_targeted(module)
        require_2d(ctx, module, parts, ("lora_A", "lora_B", "lora_E"))
        a, b, e = parts["lora_A"].shape, parts["lora_B"].shape, parts["lora_E"].shape
        rank = a[0]
        if module in masks and rank != masks[module]:
            raise ctx.shape_error(module, "lora_A", f"({masks[module]}, in)", a, "rank_pattern keeps that many ranks")
        if rank > bound:
            raise ctx.shape_error(module, "lora_A", f"at most ({bound}, in)", a, f"init_r={bound}")
        if b[1] != rank:
            raise ctx.shape_error(module, "lora_B", f"(out, {rank})", b, "lora_A's rank")
        if e != (rank, 1):
            raise ctx.shape_error(module, "lora_E", shape_str((rank, 1)), e, "lora_A's rank")
        shapes[module] = (b[0], a[1])
        top = max(top, rank)
    return shapes, top

"""Shape rules of LoKr: Kronecker factors, whole or low-rank."""

from __future__ import annotations

import re

from adaptercheck.errors import refuse
from adaptercheck.families.common import Ctx, group, rank_for, require_2d

_LOKR_RE = re.compile(
    r"(?P<module>.+)\.(?P<kind>lokr_w1|lokr_w1_a|lokr_w1_b|lokr_w2|lokr_w2_a|lokr_w2_b|lokr_t2)(?:\.[^.]+)?",
)


def check_lokr(ctx: Ctx) -> dict[str, tuple[int, int]]:
    cfg = ctx.config
    grouped = group(ctx, _LOKR_RE, "<module>.lokr_w1 (or lokr_w1_a/_b) and lokr_w2 (or lokr_w2_a/_b)")
    shapes: dict[str, tuple[int, int]] = {}
    for module in sorted(grouped):
        parts = grouped[module]
        ctx.check_targeted(module)
        if "lokr_t2" in parts:
            raise refuse(
                "unsupported_layer",
                f"{ctx.path}: module {module!r} is a convolution LoKr (lokr_t2); only Linear layers are supported.",
                ctx.path,
            )
        require_2d(ctx, module, parts, tuple(parts))
        rank, why = rank_for(cfg, module)
        factors: list[tuple[int, int]] = []
        for w in ("lokr_w1", "lokr_w2"):
            full, left, right = parts.get(w), parts.get(f"{w}_a"), parts.get(f"{w}_b")
            if full is not None and left is None and right is None:
                factors.append((full.shape[0], full.shape[1]))
                continue
            if full is not None or left is None or right is None:
                have = ", ".join(sorted(p for p in parts if p.startswith(w))) or "nothing"
                raise refuse(
                    "unpaired_lora",
                    f"{ctx.path}: LoKr module {module!r} has {have} for {w}; it needs either {w} or both {w}_a and "
                    f"{w}_b.",
                    ctx.path,
                )
            if left.shape[1] != rank:
                raise ctx.shape_error(module, f"{w}_a", f"(rows, {rank})", left.shape, why)
            if right.shape[0] != rank:
                raise ctx.shape_error(module, f"{w}_b", f"({rank}, cols)", right.shape, why)
            factors.append((left.shape[0], right.shape[1]))
        (o1, i1), (o2, i2) = factors
        shapes[module] = (o1 * o2, i1 * i2)
    return shapes

"""Shape rules of LoHa: two Hadamard-multiplied low-rank pairs per module."""

from __future__ import annotations

import re

from adaptercheck._util import shape_str
from adaptercheck.errors import refuse
from adaptercheck.families.common import Ctx, group, rank_for, require_2d, require_parts

_LOHA_RE = re.compile(
    r"(?P<module>.+)\.(?P<kind>hada_w1_a|hada_w1_b|hada_w2_a|hada_w2_b|hada_t1|hada_t2)(?:\.[^.]+)?",
)


def check_loha(ctx: Ctx) -> dict[str, tuple[int, int]]:
    cfg = ctx.config
    grouped = group(ctx, _LOHA_RE, "<module>.hada_w1_a / hada_w1_b / hada_w2_a / hada_w2_b")
    shapes: dict[str, tuple[int, int]] = {}
    for module in sorted(grouped):
        parts = grouped[module]
        require_parts(ctx, module, parts, ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"), "LoHa")
        ctx.check_targeted(module)
        if "hada_t1" in parts or "hada_t2" in parts:
            raise refuse(
                "unsupported_layer",
                f"{ctx.path}: module {module!r} is a convolution LoHa (hada_t1/hada_t2); only Linear layers are "
                "supported.",
                ctx.path,
            )
        require_2d(ctx, module, parts, ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"))
        rank, why = rank_for(cfg, module)
        out, inp = parts["hada_w1_a"].shape[0], parts["hada_w1_b"].shape[1]
        expected = {
            "hada_w1_a": (out, rank),
            "hada_w2_a": (out, rank),
            "hada_w1_b": (rank, inp),
            "hada_w2_b": (rank, inp),
        }
        for part, shape in expected.items():
            if parts[part].shape != shape:
                raise ctx.shape_error(
                    module,
                    part,
                    shape_str(shape),
                    parts[part].shape,
                    f"{why}, out={out}, in={inp}",
                )
        shapes[module] = (out, inp)
    return shapes

"""Shape rules of IA3: one scaling vector per module, on its outputs or (feed-forward) inputs."""

from __future__ import annotations

import re

from adaptercheck._util import shape_str
from adaptercheck.errors import refuse
from adaptercheck.families.common import Ctx, group, spec_matches

_IA3_RE = re.compile(r"(?P<module>.+)\.(?P<kind>ia3_l)(?:\.[^.]+)?")


def check_ia3(ctx: Ctx) -> dict[str, tuple[str, int]]:
    """Return module -> ("out"|"in", size): IA3 scales outputs, or inputs of feedforward modules."""
    cfg = ctx.config
    grouped = group(ctx, _IA3_RE, "<module>.ia3_l vectors")
    scaled: dict[str, tuple[str, int]] = {}
    for module in sorted(grouped):
        info = grouped[module]["ia3_l"]
        ctx.check_targeted(module)
        shape = info.shape
        if len(shape) != 2:
            raise refuse(
                "unsupported_layer",
                f"{ctx.path}: module {module!r}: ia3_l has shape {shape_str(shape)}; only Linear layers are supported.",
                ctx.path,
            )
        if spec_matches(cfg.get("feedforward_modules"), module):
            if shape[0] != 1:
                raise ctx.shape_error(module, "ia3_l", "(1, in)", shape, "feedforward modules scale their input")
            scaled[module] = ("in", shape[1])
        else:
            if shape[1] != 1:
                raise ctx.shape_error(
                    module,
                    "ia3_l",
                    "(out, 1)",
                    shape,
                    "non-feedforward modules scale their output",
                )
            scaled[module] = ("out", shape[0])
    return scaled

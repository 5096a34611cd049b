"""Shape rules of BitFit, the hub's own format (composer/bitfit.py): `<module>.bias` vectors of
Linear layers, one value per output feature."""

from __future__ import annotations

import re

from adaptercheck.families.common import Ctx, group

_BIAS_RE = re.compile(r"(?P<module>.+)\.(?P<kind>bias)")


def check_bitfit(ctx: Ctx) -> dict[str, dict[str, int]]:
    """Module -> {"out": features} for each trained bias."""
    required: dict[str, dict[str, int]] = {}
    for module, parts in sorted(group(ctx, _BIAS_RE, "<module>.bias vectors").items()):
        if ctx.config.get("target_modules") is not None:
            ctx.check_targeted(module)
        shape = parts["bias"].shape
        if len(shape) != 1:
            raise ctx.shape_error(module, "bias", "(out,)", shape, "one value per output feature")
        required[module] = {"out": shape[0]}
    return required

"""Shape rules of the methods that train vectors on Linear layers: VeRA (per-module scaling
vectors around random projections shared by all modules) and FourierFT (a sparse spectrum of
the weight change)."""

from __future__ import annotations

import re

from adaptercheck.errors import refuse
from adaptercheck.families.common import Ctx, group, require_parts

_VERA_RE = re.compile(r"(?P<module>.+)\.(?P<kind>vera_lambda_b|vera_lambda_d)")
_VERA_PROJECTIONS = ("vera_A", "vera_B")
_FOURIER_RE = re.compile(r"(?P<module>.+)\.(?P<kind>fourierft_spectrum)")


def check_vera(ctx: Ctx) -> dict[str, dict[str, int]]:
    """Module -> {"out": features}: `vera_lambda_b` is (out,), `vera_lambda_d` (r,); the shared
    projections, when saved, are `vera_A` (r, max in) and `vera_B` (max out, r)."""
    rank = int(ctx.config["r"])
    # The projections sit outside any module (`base_model.vera_A`); the vectors inside each one.
    projections = {n.rsplit(".", 1)[-1]: i for n, i in ctx.tensors.items() if n.rsplit(".", 1)[-1] in _VERA_PROJECTIONS}
    vectors = {n: i for n, i in ctx.tensors.items() if n.rsplit(".", 1)[-1] not in _VERA_PROJECTIONS}
    grouped = group(Ctx(ctx.config, vectors, ctx.path, ctx.config_path), _VERA_RE, "<module>.vera_lambda_b/_d")
    required: dict[str, dict[str, int]] = {}
    for module, parts in sorted(grouped.items()):
        ctx.check_targeted(module)
        require_parts(ctx, module, parts, ["vera_lambda_b", "vera_lambda_d"], "VeRA")
        out, inner = parts["vera_lambda_b"].shape, parts["vera_lambda_d"].shape
        if len(out) != 1:
            raise ctx.shape_error(module, "vera_lambda_b", "(out,)", out, "one scale per output feature")
        if inner != (rank,):
            raise ctx.shape_error(module, "vera_lambda_d", f"({rank},)", inner, f"r is {rank}")
        required[module] = {"out": out[0]}
    if ctx.config.get("save_projection", True):
        missing = [p for p in _VERA_PROJECTIONS if p not in projections]
        if missing:
            raise refuse(
                "missing_projection",
                f"{ctx.path}: save_projection is true but {' and '.join(missing)} are not saved; PEFT cannot load it.",
                ctx.path,
            )
        a, b = projections["vera_A"].shape, projections["vera_B"].shape
        widest_out = max(need["out"] for need in required.values())
        if len(a) != 2 or a[0] != rank:
            raise ctx.shape_error("vera_A", "vera_A", f"({rank}, max in)", a, f"r is {rank}")
        if len(b) != 2 or b[1] != rank or b[0] != widest_out:
            raise ctx.shape_error("vera_B", "vera_B", f"({widest_out}, {rank})", b, "the widest adapted output")
    return required


def check_fourierft(ctx: Ctx) -> dict[str, dict[str, int]]:
    """Modules the spectra change (any Linear layer of the manifest); each `fourierft_spectrum`
    holds n_frequency coefficients."""
    default = int(ctx.config["n_frequency"])
    pattern = ctx.config.get("n_frequency_pattern") or {}
    required: dict[str, dict[str, int]] = {}
    for module, parts in sorted(group(ctx, _FOURIER_RE, "<module>.fourierft_spectrum").items()):
        ctx.check_targeted(module)
        count = next((int(v) for key, v in pattern.items() if module == key or module.endswith(f".{key}")), default)
        shape = parts["fourierft_spectrum"].shape
        if shape != (count,):
            raise ctx.shape_error(module, "fourierft_spectrum", f"({count},)", shape, f"n_frequency is {count}")
        required[module] = {"cells": count}
    return required

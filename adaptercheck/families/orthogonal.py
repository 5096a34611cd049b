"""Shape rules of OFT and BOFT: block-diagonal (OFT) or butterfly (BOFT) rotations of a Linear
layer's input features, plus BOFT's output scaling. The base weight's in-features must be split
exactly into the blocks the tensors hold."""

from __future__ import annotations

import re

from adaptercheck.families.common import Ctx, group, require_parts

_OFT_RE = re.compile(r"(?P<module>.+)\.oft_R\.(?P<kind>weight|bias)")
_BOFT_RE = re.compile(r"(?P<module>.+)\.(?P<kind>boft_R|boft_s)")


def check_oft(ctx: Ctx) -> dict[str, dict[str, int]]:
    """Module -> {"in": features}: `oft_R.weight` is (blocks, b(b-1)/2), the upper triangles of
    `blocks` skew-symmetric b x b blocks (one shared block when block_share)."""
    required: dict[str, dict[str, int]] = {}
    for module, parts in sorted(group(ctx, _OFT_RE, "<module>.oft_R.weight").items()):
        ctx.check_targeted(module)
        require_parts(ctx, module, parts, ["weight"], "OFT")
        shape = parts["weight"].shape
        if len(shape) != 2:
            raise ctx.shape_error(
                module, "oft_R.weight", "(blocks, b*(b-1)/2)", shape, "upper triangles of b x b blocks"
            )
        block = _block_size(shape[1])
        if block is None:
            raise ctx.shape_error(module, "oft_R.weight", "(blocks, b*(b-1)/2)", shape, f"{shape[1]} is no b*(b-1)/2")
        configured = ctx.config.get("oft_block_size") or 0
        if configured and configured != block:
            raise ctx.shape_error(
                module, "oft_R.weight", f"(blocks, {configured * (configured - 1) // 2})", shape,
                f"oft_block_size is {configured}",
            )  # fmt: skip
        if ctx.config.get("block_share"):
            if shape[0] != 1:
                raise ctx.shape_error(module, "oft_R.weight", "(1, ...)", shape, "block_share keeps one block")
            continue  # one shared block divides the in-features; their count is not in the tensor
        required[module] = {"in": shape[0] * block}
        if "bias" in parts and parts["bias"].shape != ():
            required[module]["out"] = parts["bias"].shape[0]
    return required


def check_boft(ctx: Ctx) -> dict[str, dict[str, int]]:
    """Module -> {"in", "out"}: `boft_R` is (factors, blocks, b, b) with blocks * b in-features,
    `boft_s` is (out, 1)."""
    required: dict[str, dict[str, int]] = {}
    for module, parts in sorted(group(ctx, _BOFT_RE, "<module>.boft_R and <module>.boft_s").items()):
        ctx.check_targeted(module)
        require_parts(ctx, module, parts, ["boft_R", "boft_s"], "BOFT")
        rotation, scale = parts["boft_R"].shape, parts["boft_s"].shape
        if len(rotation) != 4 or rotation[2] != rotation[3]:
            raise ctx.shape_error(module, "boft_R", "(factors, blocks, b, b)", rotation, "square butterfly blocks")
        configured = ctx.config.get("boft_block_size") or 0
        if configured and configured != rotation[2]:
            raise ctx.shape_error(
                module, "boft_R", f"(factors, blocks, {configured}, {configured})", rotation,
                f"boft_block_size is {configured}",
            )  # fmt: skip
        if len(scale) != 2 or scale[1] != 1:
            raise ctx.shape_error(module, "boft_s", "(out, 1)", scale, "one scale per output feature")
        required[module] = {"in": rotation[1] * rotation[2], "out": scale[0]}
    return required


def _block_size(triangle: int) -> int | None:
    """b such that b*(b-1)/2 == triangle, if any."""
    block = round((1 + (1 + 8 * triangle) ** 0.5) / 2)
    return block if block * (block - 1) // 2 == triangle and block > 1 else None

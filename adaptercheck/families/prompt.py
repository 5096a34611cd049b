"""Shape rules of prompt, prefix and p-tuning: virtual token embeddings."""

from __future__ import annotations

from adaptercheck._util import shape_str
from adaptercheck.errors import refuse
from adaptercheck.families.common import Ctx, is_allowed_extra
from adaptercheck.safetensors_header import TensorInfo


def check_prompt(ctx: Ctx) -> None:
    cfg = ctx.config
    peft_type = cfg["peft_type"]
    found: TensorInfo | None = None
    for name, info in ctx.tensors.items():
        if name == "prompt_embeddings":
            found = info
        elif not is_allowed_extra(cfg, ctx.local(name)):
            raise ctx.unexpected(name, "a single 'prompt_embeddings' tensor")
    if found is None:
        raise refuse(
            "missing_tensor",
            f"{ctx.path} has no 'prompt_embeddings' tensor, which every {peft_type} adapter stores.",
            ctx.path,
        )
    shape = found.shape
    if len(shape) != 2:
        raise refuse(
            "shape_mismatch",
            f"{ctx.path}: 'prompt_embeddings' should be 2-D but is {shape_str(shape)}.",
            ctx.path,
        )
    tokens = cfg["num_virtual_tokens"]
    submodules = cfg.get("num_transformer_submodules") or 1
    token_dim = cfg.get("token_dim")
    if peft_type == "PREFIX_TUNING":
        # Prefix tuning stores key and value prefixes for every layer: num_layers * 2 * token_dim columns.
        rows, why_rows = (tokens,), f"num_virtual_tokens={tokens}"
        cols: tuple[int, ...] = ()
        if token_dim is not None:
            cols = (cfg["num_layers"] * 2 * token_dim,)
            if cfg.get("prefix_projection"):
                # With prefix_projection peft may store the pre-projection embedding (token_dim wide).
                cols += (token_dim,)
        why_cols = f"num_layers={cfg['num_layers']} x 2 x token_dim={token_dim}"
    else:
        rows = (tokens * submodules,)
        why_rows = f"num_virtual_tokens={tokens} x num_transformer_submodules={submodules}"
        cols, why_cols = ((token_dim,), f"token_dim={token_dim}") if token_dim is not None else ((), "")
    if shape[0] not in rows or (cols and shape[1] not in cols):
        expected = f"({rows[0]}, {cols[0] if cols else 'token_dim'})"
        raise refuse(
            "shape_mismatch",
            f"{ctx.path}: 'prompt_embeddings' should be {expected} ({why_rows}{', ' + why_cols if cols else ''}) "
            f"but is {shape_str(shape)}.",
            ctx.path,
        )

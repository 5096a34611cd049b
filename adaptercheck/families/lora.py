"""Shape rules of LoRA and its variants (DoRA, rsLoRA, QLoRA-trained): A/B pairs, embeddings, DoRA magnitudes."""

from __future__ import annotations

import re

from adaptercheck._util import shape_str
from adaptercheck.errors import refuse
from adaptercheck.families.common import Ctx, group, rank_for, require_2d, require_parts

_LORA_RE = re.compile(
    r"(?P<module>.+)\.(?:"
    r"(?P<kind>lora_A|lora_B)(?:\.[^.]+)?\.(?P<param>weight|bias)"
    r"|(?P<emb>lora_embedding_A|lora_embedding_B)(?:\.[^.]+)?"
    r"|(?P<mag>lora_magnitude_vector)(?:\.[^.]+)?(?:\.weight)?"
    r"|(?P<base>base_layer)\.weight)"
)


def _lora_part(match: re.Match[str]) -> str:
    if match.group("kind"):
        return f"{match.group('kind')}.{match.group('param')}"
    return match.group("emb") or match.group("mag") or "base_layer.weight"


def check_lora(ctx: Ctx) -> dict[str, tuple[int, int]]:
    cfg = ctx.config
    grouped = group(ctx, _LORA_RE, "<module>.lora_A.weight / <module>.lora_B.weight pairs", part_of=_lora_part)
    use_dora = bool(cfg.get("use_dora"))
    lora_bias = bool(cfg.get("lora_bias"))
    shapes: dict[str, tuple[int, int]] = {}
    for module in sorted(grouped):
        parts = grouped[module]
        embedding = "lora_embedding_A" in parts or "lora_embedding_B" in parts
        a_key, b_key = ("lora_embedding_A", "lora_embedding_B") if embedding else ("lora_A.weight", "lora_B.weight")
        allowed = {a_key, b_key, "lora_magnitude_vector"} | ({"base_layer.weight"} if embedding else {"lora_B.bias"})
        for part, info in parts.items():
            if part not in allowed:
                raise ctx.unexpected(info.name, f"{a_key} and {b_key} for module {module!r}")
        require_parts(ctx, module, parts, (a_key, b_key), "LoRA")
        ctx.check_targeted(module)
        require_2d(ctx, module, parts, (a_key, b_key))
        a, b = parts[a_key].shape, parts[b_key].shape
        rank, why = rank_for(cfg, module)
        if a[0] != rank:
            raise ctx.shape_error(module, a_key, f"({rank}, in)", a, why)
        if b[1] != rank:
            raise ctx.shape_error(module, b_key, f"(out, {rank})", b, why)
        out, inp = b[0], a[1]
        if embedding:
            # lora_embedding_A is (r, num_embeddings) and lora_embedding_B is (embedding_dim, r).
            shapes[module] = (inp, out)
            base = parts.get("base_layer.weight")
            if base is not None and base.shape != (inp, out):
                raise ctx.shape_error(
                    module,
                    "base_layer.weight",
                    shape_str((inp, out)),
                    base.shape,
                    "num_embeddings x embedding_dim from the LoRA tensors",
                )
        else:
            shapes[module] = (out, inp)
        magnitude = parts.get("lora_magnitude_vector")
        if use_dora and magnitude is None:
            raise refuse(
                "missing_tensor",
                f"{ctx.path}: module {module!r} has no lora_magnitude_vector although use_dora is true.",
                ctx.path,
            )
        if magnitude is not None:
            if not use_dora:
                raise ctx.unexpected(magnitude.name, "no DoRA magnitude vectors because use_dora is false")
            sizes = (out, inp) if embedding else (out,)
            if len(magnitude.shape) != 1 or magnitude.shape[0] not in sizes:
                raise ctx.shape_error(
                    module,
                    "lora_magnitude_vector",
                    shape_str((out,)),
                    magnitude.shape,
                    "one magnitude per output feature",
                )
        bias = parts.get("lora_B.bias")
        if lora_bias and not embedding and bias is None:
            raise refuse(
                "missing_tensor",
                f"{ctx.path}: module {module!r} has no lora_B.bias although lora_bias is true.",
                ctx.path,
            )
        if bias is not None:
            if not lora_bias:
                raise ctx.unexpected(bias.name, "no lora_B.bias because lora_bias is false")
            if bias.shape != (out,):
                raise ctx.shape_error(
                    module,
                    "lora_B.bias",
                    shape_str((out,)),
                    bias.shape,
                    "one bias per output feature",
                )
    return shapes

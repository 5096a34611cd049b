"""Soft prompts combine too: prompt-tuning adapters of one base model are token embeddings
(`prompt_embeddings`, (virtual tokens, hidden)), so

    linear / expr   the weighted sum of prompts of the same length: sum_i w_i P_i        exact
    stack / cat     the prompts one after the other, their virtual tokens adding up      exact

P-tuning and prefix tuning run their prompts through an encoder or per-layer projections, where a
weighted sum of parameters is no weighted sum of effects: they are refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from composer.compat import check_same_base
from composer.errors import CompositionError
from composer.io import LoraAdapter
from composer.recipe import Recipe, RecipeInput, environment
from composer.types import ModuleReport
from composer.version import VERSION

PROMPT_KEY = "prompt_embeddings"
PROMPT_METHODS = ("linear", "expr", "stack")


def is_prompt_tuning(adapter: Any) -> bool:
    return isinstance(adapter, LoraAdapter) and adapter.peft_type == "PROMPT_TUNING"


def compose_prompts(
    adapters: Sequence[LoraAdapter], weights: Sequence[float], method: str, params: Any
) -> tuple[LoraAdapter, ModuleReport, dict[str, Any]]:
    """A prompt-tuning adapter from prompt-tuning inputs (see the module docstring), with its report
    line and recipe."""
    if method not in PROMPT_METHODS:
        raise CompositionError(
            "unsupported_method", f"prompt-tuning inputs combine by linear, expr or stack, not {method}"
        )
    first = adapters[0]
    check_same_base(adapters)
    prompts = []
    for adapter in adapters:
        if PROMPT_KEY not in adapter.source.keys() or int(adapter.config.get("num_transformer_submodules") or 1) != 1:
            raise CompositionError(
                "bad_input", f"{adapter.reference} holds no single prompt ({PROMPT_KEY} for one transformer stack)"
            )
        prompts.append(adapter.tensor(PROMPT_KEY).to(torch.float32))
    widths = {p.shape[1] for p in prompts}
    if len(widths) > 1:
        raise CompositionError("shape_mismatch", f"the prompts have different widths: {sorted(widths)}")
    if method == "stack":
        combined = torch.cat([p * w for p, w in zip(prompts, weights, strict=True)], dim=0)
    else:
        lengths = {p.shape[0] for p in prompts}
        if len(lengths) > 1:
            raise CompositionError(
                "shape_mismatch",
                f"a weighted sum needs prompts of one length; these have {sorted(lengths)} virtual tokens (stack "
                "concatenates prompts of any length)",
            )
        combined = sum((p * w for p, w in zip(prompts, weights, strict=True)), torch.zeros_like(prompts[0]))
    out_dtype = params.output_dtype(first.source.dtype(PROMPT_KEY))
    config = dict(first.config)
    config.update(num_virtual_tokens=int(combined.shape[0]), inference_mode=True, prompt_tuning_init="RANDOM")
    config.pop("prompt_tuning_init_text", None)
    report = ModuleReport(
        module=PROMPT_KEY,
        rank=int(combined.shape[0]),
        input_ranks=tuple(int(p.shape[0]) for p in prompts),
        retained_energy=1.0,
        relative_error=0.0,
        truncated=False,
    )
    recipe = Recipe(
        library="composer",
        version=VERSION,
        method=method,
        parameters=params.recorded(out_dtype),
        seed=None,
        inputs=tuple(
            RecipeInput(reference=a.reference, weight=w, sha256=a.sha256)
            for a, w in zip(adapters, weights, strict=True)
        ),
        base_model=first.base_model,
        revision=first.revision,
        environment=environment(torch.device("cpu")),
    ).to_dict((report,))
    result = LoraAdapter.from_tensors(
        config, {PROMPT_KEY: combined.to(out_dtype).contiguous()}, reference=f"composition:{method}", recipe=recipe
    )
    return result, report, recipe

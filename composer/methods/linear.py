"""`linear`: the exact weighted sum of deltas, re-factored to a target rank."""

from __future__ import annotations

from collections.abc import Sequence

from composer.lora import concatenate_factors, refactor_factored
from composer.types import LowRankDelta, ScaledFactors


def linear(factors: Sequence[ScaledFactors], *, rank: int | None, energy: float | None) -> LowRankDelta:
    """Task arithmetic sum_i w_i dW_i in factored form, truncated optimally to `rank`.

    Unlike PEFT's `linear`, A and B are never averaged separately (that adds cross terms
    sqrt(c_i c_j) B_i A_j, a 97-100% deviation measured in composition-notes.md). The factors
    are stacked exactly and then re-factored by QR of the stacks plus an SVD of the R x R core,
    so the result is exact when sum r_i <= rank and otherwise the Eckart-Young optimum.
    Negative weights negate a task (https://arxiv.org/abs/2212.04089).

    Args:
        factors: each input's factors at this module, coefficients folded in.
        rank: output rank, or None to choose the smallest rank keeping `energy`.
        energy: fraction of ||sum||_F^2 to keep when `rank` is None.
    """
    b_cat, a_cat = concatenate_factors(factors)  # (d_out, R), (R, d_in)
    return refactor_factored(b_cat, a_cat, rank=rank, energy=energy)

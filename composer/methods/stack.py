"""`stack` (alias `cat`): exact weighted sum by concatenating factors."""

from __future__ import annotations

from collections.abc import Sequence

from composer.lora import concatenate_factors
from composer.types import LowRankDelta, ScaledFactors


def stack(factors: Sequence[ScaledFactors]) -> LowRankDelta:
    """Concatenate factors: B' = [B_1 | ... | B_n], A' = [c_1 A_1; ...; c_n A_n], so B'A' = sum c_i B_i A_i.

    Exact for any real weights and any mix of ranks; the output rank is sum r_i. This is the
    "CAT" composition of LoRA Soups, https://arxiv.org/abs/2410.13025.

    Args:
        factors: each input's factors at this module, coefficients folded in.

    Returns:
        The stacked factors; nothing is truncated, so retained energy is 1 and error 0.
    """
    b_cat, a_cat = concatenate_factors(factors)  # (d_out, R), (R, d_in)
    return LowRankDelta(b=b_cat, a=a_cat, retained_energy=1.0, relative_error=0.0, truncated=False)

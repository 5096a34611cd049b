"""`svd`: re-rank (compress) one adapter."""

from __future__ import annotations

from collections.abc import Sequence

from composer.lora import concatenate_factors, refactor_factored
from composer.types import LowRankDelta, ScaledFactors


def svd(factors: Sequence[ScaledFactors], *, rank: int | None, energy: float | None) -> LowRankDelta:
    """Best rank-`rank` approximation of one adapter's (weighted) delta, by the factored QR-core SVD.

    Eckart & Young (1936), https://doi.org/10.1007/BF02288367: truncating the SVD minimises the
    Frobenius error over all matrices of that rank. The dense d_out x d_in delta is never formed.

    Args:
        factors: exactly one input's factors at this module.
        rank: output rank, or None to choose the smallest rank keeping `energy`.
        energy: fraction of ||delta||_F^2 to keep when `rank` is None.
    """
    assert len(factors) == 1, f"svd re-ranks one adapter, got {len(factors)} at this module"
    b_cat, a_cat = concatenate_factors(factors)  # (d_out, r), (r, d_in)
    return refactor_factored(b_cat, a_cat, rank=rank, energy=energy)

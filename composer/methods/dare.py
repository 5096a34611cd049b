"""`dare_linear` and `dare_ties`: random drop with rescale, then a weighted sum or a TIES merge."""

from __future__ import annotations

import torch
from torch import Tensor

from composer.sparsify import random_drop_, sign_consensus_mean, weight_tasks_
from composer.types import SignMethod


def dare_linear(deltas: Tensor, weights: Tensor, *, density: float, generator: torch.Generator) -> Tensor:
    """DARE, Yu et al. 2024, https://arxiv.org/abs/2311.03099, followed by task arithmetic.

    Each entry of each task vector is dropped with probability 1 - density and survivors are
    rescaled by 1/density, then the tasks are summed with their weights.

    Args:
        deltas: (n_tasks, d_out, d_in) task vectors; consumed in place.
        weights: (n_tasks,) per-task weights.
        density: keep probability, in (0, 1]; 1 leaves the tasks untouched.
        generator: source of the drop masks, seeded per module by the caller.

    Returns:
        (d_out, d_in) merged task vector.
    """
    dropped = random_drop_(deltas, density, generator)
    return weight_tasks_(dropped, weights / density).sum(dim=0)  # 1/density: DARE's rescale


def dare_ties(
    deltas: Tensor,
    weights: Tensor,
    *,
    density: float,
    generator: torch.Generator,
    majority_sign_method: SignMethod = "total",
) -> Tensor:
    """DARE drop-and-rescale, then TIES sign election and disjoint mean (no magnitude trim).

    Args:
        deltas: (n_tasks, d_out, d_in) task vectors; consumed in place.
        weights: (n_tasks,) per-task weights, applied before the election.
        density: keep probability, in (0, 1].
        generator: source of the drop masks, seeded per module by the caller.
        majority_sign_method: "total" or "frequency".

    Returns:
        (d_out, d_in) merged task vector.
    """
    dropped = weight_tasks_(random_drop_(deltas, density, generator), weights / density)  # with DARE's rescale
    return sign_consensus_mean(dropped, majority_sign_method)

"""`magnitude_prune`: keep each task's largest entries, then sum with weights."""

from __future__ import annotations

from torch import Tensor

from composer.sparsify import magnitude_trim_, weight_tasks_


def magnitude_prune(deltas: Tensor, weights: Tensor, *, density: float) -> Tensor:
    """Magnitude pruning of each task vector followed by task arithmetic.

    The trim step of TIES (https://arxiv.org/abs/2306.01708) without sign election: useful to
    drop the small, noisy part of each task before adding.

    Args:
        deltas: (n_tasks, d_out, d_in) task vectors; consumed in place.
        weights: (n_tasks,) per-task weights.
        density: fraction of entries kept per task, in (0, 1].

    Returns:
        (d_out, d_in) merged task vector.
    """
    return weight_tasks_(magnitude_trim_(deltas, density), weights).sum(dim=0)

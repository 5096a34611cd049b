"""`ties`: TIES-merging (trim, elect sign, disjoint mean) on dense task vectors."""

from __future__ import annotations

from torch import Tensor

from composer.sparsify import magnitude_trim_, sign_consensus_mean, weight_tasks_
from composer.types import SignMethod


def ties(deltas: Tensor, weights: Tensor, *, density: float, majority_sign_method: SignMethod = "total") -> Tensor:
    """TIES-merging of one module, Yadav et al. 2023, https://arxiv.org/abs/2306.01708.

    Steps:
        1. Weight each task vector (a negative weight flips the task, so it votes with that sign).
        2. Trim: keep the top `density` fraction of each task's entries by magnitude.
        3. Elect: per entry, the sign of the summed mass ("total") or of the sign count ("frequency").
        4. Disjoint mean: average the entries that agree with the elected sign.

    With equal positive weights this is exactly PEFT's `ties` on dense deltas; the weights enter
    before the election so that task negation means what it says.

    Args:
        deltas: (n_tasks, d_out, d_in) task vectors dW_i, scaling already applied; consumed in place.
        weights: (n_tasks,) per-task weights.
        density: fraction of entries kept per task, in (0, 1].
        majority_sign_method: "total" (paper) or "frequency".

    Returns:
        (d_out, d_in) merged task vector.
    """
    weighted = weight_tasks_(deltas, weights)
    trimmed = magnitude_trim_(weighted, density)
    return sign_consensus_mean(trimmed, majority_sign_method)

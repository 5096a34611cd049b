"""Element-wise building blocks of TIES, DARE and magnitude pruning, on stacked task vectors.

Task vectors are stacked on dim 0: `deltas` is (n_tasks, ...) with any trailing shape. Functions
ending in `_` modify their argument in place: a stack of 7B-sized deltas is too big to copy.

Passes over the entries run in chunks of `CHUNK` elements with preallocated buffers: on a
2-core CPU this is ~2.5x faster than whole-tensor ops (the working set stays in cache) and
keeps temporaries at a few MB whatever the module size.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from composer.types import SignMethod

CHUNK = 1 << 18
# Below this many entries kthvalue on the whole tensor is as fast as the bracket below.
_BRACKET_MIN_NUMEL = 1 << 18
_BRACKET_SAMPLE = 1 << 14
# 4/sqrt(sample) is ~8 standard deviations of a sample quantile: misses fall back to kthvalue.
_BRACKET_MARGIN = 4.0 / (_BRACKET_SAMPLE**0.5)


def _chunks(numel: int) -> Iterator[slice]:
    for start in range(0, numel, CHUNK):
        yield slice(start, min(numel, start + CHUNK))


def _flat_tasks(deltas: Tensor) -> Tensor:
    assert deltas.is_contiguous(), "stacked task vectors must be contiguous"
    return deltas.view(deltas.shape[0], -1)  # (n_tasks, numel)


def kth_largest_magnitude(values: Tensor, k: int) -> float:
    """Exactly the k-th largest |entry| of a 1-D tensor, 1 <= k <= numel, without a full sort.

    A random sample brackets the answer; counting the entries above the bracket tells which
    entry inside it is the k-th largest, and only the bracket (~6% of entries) goes through
    `kthvalue`. The answer is exact whatever the sample; a bad sample only costs time.
    """
    n = values.numel()
    assert 1 <= k <= n, f"k={k} outside 1..{n}"
    if n < _BRACKET_MIN_NUMEL:
        return float(torch.kthvalue(values.abs(), n - k + 1).values)
    # A fixed seed makes timing reproducible; correctness never depends on the sample.
    sampler = torch.Generator(device=values.device).manual_seed(0)
    sample = values[torch.randint(n, (_BRACKET_SAMPLE,), generator=sampler, device=values.device)].abs()
    position = (1.0 - k / n) * (_BRACKET_SAMPLE - 1)  # ascending position of the answer in the sample
    margin = _BRACKET_MARGIN * _BRACKET_SAMPLE
    low = float(torch.kthvalue(sample, max(1, int(position - margin))).values)
    high = float(torch.kthvalue(sample, min(_BRACKET_SAMPLE, int(position + margin) + 1)).values)

    above = 0
    inside: list[Tensor] = []
    magnitudes = torch.empty(min(n, CHUNK), device=values.device, dtype=values.dtype)
    for span in _chunks(n):
        chunk = torch.abs(values[span], out=magnitudes[: span.stop - span.start])
        above += int((chunk > high).sum())
        inside.append(chunk[(chunk >= low) & (chunk <= high)])
    window = torch.cat(inside)
    rank_inside = k - above  # the answer is the rank_inside-th largest entry of the window
    if above >= k or rank_inside > window.numel():
        return float(torch.kthvalue(values.abs(), n - k + 1).values)
    return float(torch.kthvalue(window, window.numel() - rank_inside + 1).values)


def magnitude_trim_(deltas: Tensor, density: float) -> Tensor:
    """Keep the `density` fraction of largest-magnitude entries of each task vector, zero the rest.

    Entries tied with the threshold are all kept (a measure-zero event for trained weights).
    This is the "trim" step of TIES, https://arxiv.org/abs/2306.01708.
    """
    if density >= 1.0:
        return deltas
    tasks = _flat_tasks(deltas)
    keep_mask = torch.empty(min(tasks.shape[1], CHUNK), device=deltas.device, dtype=deltas.dtype)
    for task in tasks:
        keep = int(density * task.numel())
        if keep == 0:
            task.zero_()
            continue
        threshold = kth_largest_magnitude(task, keep)
        for span in _chunks(task.numel()):
            chunk = task[span]
            mask = keep_mask[: chunk.numel()]
            torch.ge(torch.abs(chunk, out=mask), threshold, out=mask)
            chunk.mul_(mask)
    return deltas


def random_drop_(deltas: Tensor, density: float, generator: torch.Generator) -> Tensor:
    """Zero each entry with probability 1 - density (the drop of DARE), without the rescale.

    DARE then rescales survivors by 1/density so each entry keeps its expectation
    (https://arxiv.org/abs/2311.03099); callers fold that factor into the task weights, which
    saves a pass over every entry. Masks are drawn chunk by chunk from `generator`, so they
    depend only on its seed.
    """
    if density >= 1.0:
        return deltas
    tasks = _flat_tasks(deltas)
    draws = torch.empty(min(tasks.shape[1], CHUNK), device=deltas.device, dtype=deltas.dtype)
    for task in tasks:
        for span in _chunks(task.numel()):
            chunk = task[span]
            mask = draws[: chunk.numel()].uniform_(generator=generator)
            chunk.mul_(torch.lt(mask, density, out=mask))
    return deltas


def sign_consensus_mean(deltas: Tensor, method: SignMethod) -> Tensor:
    """TIES sign election and disjoint mean in one pass over the tasks.

    Per entry, the elected sign is + when the summed mass ("total") or the count of positive
    minus negative tasks ("frequency") is >= 0, else -. The result is the mean of the tasks
    whose entry is non-zero with the elected sign, 0 where none is. Since agreeing entries are
    exactly the positive (or negative) ones, four running sums suffice: the total, the sum of
    positive parts, and the counts of positive and of negative entries.

    Args:
        deltas: (n_tasks, ...) trimmed or dropped, weighted task vectors.
        method: "total" or "frequency".

    Returns:
        (...) merged tensor, a new tensor.
    """
    tasks = _flat_tasks(deltas)
    numel = tasks.shape[1]
    merged = torch.empty(numel, device=deltas.device, dtype=deltas.dtype)
    size = min(numel, CHUNK)
    total, positive, n_positive, n_negative, scratch = (
        torch.empty(size, device=deltas.device, dtype=deltas.dtype) for _ in range(5)
    )
    for span in _chunks(numel):
        length = span.stop - span.start
        sums, pos_sum, pos_count, neg_count, tmp = (
            buffer[:length] for buffer in (total, positive, n_positive, n_negative, scratch)
        )
        first, *rest = tasks[:, span]
        sums.copy_(first)
        torch.clamp(first, min=0.0, out=pos_sum)
        torch.gt(first, 0.0, out=pos_count)
        torch.lt(first, 0.0, out=neg_count)
        for task in rest:
            sums.add_(task)
            pos_sum.add_(torch.clamp(task, min=0.0, out=tmp))
            pos_count.add_(torch.gt(task, 0.0, out=tmp))
            neg_count.add_(torch.lt(task, 0.0, out=tmp))
        elected_positive = (sums >= 0) if method == "total" else (pos_count >= neg_count)
        neg_mean = sums.sub_(pos_sum).div_(neg_count.clamp_(min=1.0))
        pos_mean = pos_sum.div_(pos_count.clamp_(min=1.0))
        torch.where(elected_positive, pos_mean, neg_mean, out=merged[span])
    return merged.view(deltas.shape[1:])


def weight_tasks_(deltas: Tensor, weights: Tensor) -> Tensor:
    """Multiply task i by weights[i], in place. weights: (n_tasks,)."""
    assert weights.shape == (deltas.shape[0],), f"{weights.shape[0]} weights for {deltas.shape[0]} tasks"
    for task, weight in zip(deltas, weights.tolist(), strict=True):
        task.mul_(weight)
    return deltas

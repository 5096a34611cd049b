"""Merge methods by name, each with the paper it implements.

Two families:
    factored     work on the LoRA factors and never build a d_out x d_in matrix (stack, linear, svd, expr);
    elementwise  need each module's dense task vector, built one module at a time, then re-factored
                 by a randomized low-rank SVD (ties, dare_linear, dare_ties, magnitude_prune).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from composer.errors import CompositionError
from composer.methods.dare import dare_linear, dare_ties
from composer.methods.linear import linear
from composer.methods.magnitude_prune import magnitude_prune
from composer.methods.stack import stack
from composer.methods.svd import svd
from composer.methods.ties import ties
from composer.types import MethodKind


@dataclass(frozen=True)
class MergeMethod:
    """A registered merge method and the parameters it understands."""

    name: str
    kind: MethodKind
    merge: Callable[..., Any]
    reference_url: str
    summary: str
    uses_rank: bool = True
    uses_density: bool = False
    uses_sign_method: bool = False
    uses_seed: bool = False
    single_input: bool = False

    def __post_init__(self) -> None:
        if not self.reference_url.startswith("https://"):
            raise ValueError(f"method {self.name!r} needs a paper reference URL")
        if self.kind == "factored" and (self.uses_density or self.uses_seed):
            raise ValueError(f"factored method {self.name!r} cannot take density or seed")


METHODS: Final[dict[str, MergeMethod]] = {
    method.name: method
    for method in (
        MergeMethod(
            name="stack",
            kind="factored",
            merge=stack,
            reference_url="https://arxiv.org/abs/2410.13025",
            summary="exact weighted sum by concatenating factors; rank = sum of input ranks",
            uses_rank=False,
        ),
        MergeMethod(
            name="linear",
            kind="factored",
            merge=linear,
            reference_url="https://arxiv.org/abs/2212.04089",
            summary="exact weighted sum re-factored to a target rank (QR + core SVD, optimal truncation)",
        ),
        MergeMethod(
            name="expr",
            kind="factored",
            merge=linear,
            reference_url="https://arxiv.org/abs/2212.04089",
            summary="task arithmetic written as '0.7*a + 0.5*b - 0.3*c'; computed as linear",
        ),
        MergeMethod(
            name="svd",
            kind="factored",
            merge=svd,
            reference_url="https://doi.org/10.1007/BF02288367",
            summary="re-rank (compress) one adapter to its optimal lower-rank approximation",
            single_input=True,
        ),
        MergeMethod(
            name="ties",
            kind="elementwise",
            merge=ties,
            reference_url="https://arxiv.org/abs/2306.01708",
            summary="TIES: trim by magnitude, elect sign, disjoint mean; then low-rank SVD",
            uses_density=True,
            uses_sign_method=True,
        ),
        MergeMethod(
            name="dare_linear",
            kind="elementwise",
            merge=dare_linear,
            reference_url="https://arxiv.org/abs/2311.03099",
            summary="DARE random drop with 1/density rescale, weighted sum; then low-rank SVD",
            uses_density=True,
            uses_seed=True,
        ),
        MergeMethod(
            name="dare_ties",
            kind="elementwise",
            merge=dare_ties,
            reference_url="https://arxiv.org/abs/2311.03099",
            summary="DARE random drop, TIES sign election and disjoint mean; then low-rank SVD",
            uses_density=True,
            uses_sign_method=True,
            uses_seed=True,
        ),
        MergeMethod(
            name="magnitude_prune",
            kind="elementwise",
            merge=magnitude_prune,
            reference_url="https://arxiv.org/abs/2306.01708",
            summary="keep each task's largest entries, weighted sum; then low-rank SVD",
            uses_density=True,
        ),
    )
}

ALIASES: Final[dict[str, str]] = {"cat": "stack"}


def get_method(name: str) -> MergeMethod:
    """The method registered as `name` (or an alias of it)."""
    method = METHODS.get(ALIASES.get(name, name))
    if method is None:
        known = ", ".join(sorted([*METHODS, *ALIASES]))
        raise CompositionError("unsupported_method", f"unknown merge method {name!r}; known methods: {known}")
    return method

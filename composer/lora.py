"""Delta math on LoRA factors: exact stacking, factored truncation, and low-rank SVD of dense deltas.

Everything runs in fp32 (the tiny R x R cores in fp64) whatever the adapters' storage dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import AbstractContextManager

import torch
from torch import Tensor

from composer.threads import using_threads
from composer.types import LowRankDelta, ScaledFactors


def single_threaded() -> AbstractContextManager[None]:
    """Run tiny LAPACK calls (QR of d x R stacks, SVD of R x R cores) on one thread, whatever the
    composer's thread policy (composer.threads).

    Threading them costs more than their math, and on a loaded machine MKL's OpenMP threads
    wait on each other: a 32 x 32 SVD measured 50 ms on 2 threads against 0.3 ms on one.
    """
    return using_threads(1)


def concatenate_factors(factors: Sequence[ScaledFactors]) -> tuple[Tensor, Tensor]:
    """Stack factors so that `b_cat @ a_cat == sum_i coefficient_i * b_i @ a_i` exactly.

    Each coefficient is split as sqrt|c| on both sides (the sign on A) so the two factors keep
    similar magnitudes, which matters once they are stored in fp16.
    """
    b_blocks: list[Tensor] = []
    a_blocks: list[Tensor] = []
    for f in factors:
        root = math.sqrt(abs(f.coefficient))
        b_blocks.append(f.b * root)
        a_blocks.append(f.a * math.copysign(root, f.coefficient))
    return torch.cat(b_blocks, dim=1), torch.cat(a_blocks, dim=0)  # (d_out, R), (R, d_in)


def combined_bias(factors: Sequence[ScaledFactors]) -> Tensor | None:
    """sum_i c_i * bias_i over inputs that have a lora_B bias; None when none has one.

    A bias is a vector added after the product, so rank truncation never touches it.
    """
    biases = [f.coefficient * f.bias for f in factors if f.bias is not None]
    if not biases:
        return None
    return torch.stack(biases).sum(dim=0)  # (d_out,)


def choose_rank(singular_values: Tensor, rank: int | None, energy: float | None) -> int:
    """Rank to keep: `rank` capped by what exists, or the smallest one retaining `energy` of ||.||_F^2."""
    available = int(singular_values.numel())
    if rank is not None:
        return max(1, min(rank, available))
    assert energy is not None, "either rank or energy must be given"
    squares = singular_values.double() ** 2
    total = float(squares.sum())
    if total == 0.0:
        return 1
    cumulative = torch.cumsum(squares, dim=0) / total
    # The small slack keeps round-off from asking for one more component at energy=1.0.
    reached = torch.nonzero(cumulative >= energy - 1e-12)
    return int(reached[0]) + 1 if reached.numel() else available


def refactor_factored(b_cat: Tensor, a_cat: Tensor, *, rank: int | None, energy: float | None) -> LowRankDelta:
    """Best rank-t factors of `b_cat @ a_cat` without ever forming the d_out x d_in product.

    Steps:
        1. Orthonormal bases of B_cat's and A_cat^T's columns from their R x R Gram matrices
           (`_gram_basis`): B_cat = Q_B R_B, A_cat^T = Q_A R_A, Q_B = B_cat W_B, Q_A = A_cat^T W_A.
        2. SVD of the small core R_B R_A^T = U S V^T (at most R x R, in fp64).
        3. B' = Q_B U_t sqrt(S_t) = B_cat (W_B U_t sqrt(S_t)), A' = sqrt(S_t) V_t^T Q_A^T.

    The result is the Eckart-Young optimum; the discarded energy comes straight from S. Cost is
    O((d_out + d_in) R^2 + R^3) against O(d_out d_in min(d_out, d_in)) for a dense SVD; the d x R
    work is three matrix products per side, which run several times faster than a Householder QR.

    Args:
        b_cat: (d_out, R) stacked, already weighted B factors.
        a_cat: (R, d_in) stacked A factors.
        rank: target rank, or None to choose it from `energy`.
        energy: fraction of ||delta||_F^2 to keep when `rank` is None.

    Returns:
        The truncated factors with retained energy and relative Frobenius error.

    See https://arxiv.org/abs/2509.17786 (core-space merging) for the same reduction.
    """
    with single_threaded():
        w_b, r_b = _gram_basis(b_cat)  # (R, k_b), (k_b, R)
        w_a, r_a = _gram_basis(a_cat.T)  # (R, k_a), (k_a, R)
        core = r_b @ r_a.T  # (k_b, k_a), fp64
        u, s, vh = torch.linalg.svd(core, full_matrices=False)  # (k_b, k), (k,), (k, k_a)
        t = choose_rank(s, rank, energy)
        root = s[:t].sqrt()
        b_out = b_cat @ (w_b @ (u[:, :t] * root)).to(b_cat.dtype)  # (d_out, t)
        a_out = ((root[:, None] * vh[:t]) @ w_a.T).to(a_cat.dtype) @ a_cat  # (t, d_in)
    total = float((s**2).sum())
    kept = float((s[:t] ** 2).sum())
    retained = kept / total if total > 0 else 1.0
    return LowRankDelta(
        b=b_out,
        a=a_out,
        retained_energy=retained,
        relative_error=math.sqrt(max(0.0, 1.0 - retained)),
        truncated=t < s.numel(),
    )


def _gram_basis(m: Tensor) -> tuple[Tensor, Tensor]:
    """(W, R) in fp64 with Q = m @ W orthonormal (d, k) and m = Q @ R.

    Fast path: from the eigenvectors of the Gram matrix m^T m = V S^2 V^T, W = V S^-1 (Q = U of
    m's SVD) and R = S V^T. The reconstruction m W R = m V V^T = m is exact whatever the Gram's
    round-off, because V is orthonormal (fp64 eigh); the round-off only blurs Q's orthonormality,
    by about eps * cond(m)^2. So the fast path is taken only for well-conditioned stacks (cond <=
    1000, what trained LoRA factors have); anything else (rank-deficient stacks, an adapter twice)
    goes through a Householder QR.
    """
    gram = (m.T @ m).double()  # (R, R)
    values, vectors = torch.linalg.eigh(gram)  # ascending
    if values.numel() and float(values[0]) >= float(values[-1]) * 1e-6 > 0.0:
        root = values.sqrt()
        return vectors / root, (vectors * root).T
    q, r = torch.linalg.qr(m)  # (d, k), (k, R)
    # W with m @ W = Q: the least-squares solution, which R's pseudo-inverse gives exactly here.
    return torch.linalg.pinv(r.double()), r.double()


def randomized_svd(
    matrix: Tensor, rank: int, *, generator: torch.Generator, oversample: int = 8, power_iterations: int = 2
) -> tuple[Tensor, Tensor, Tensor]:
    """Top-`rank` singular triplets of a dense matrix by a randomized range finder.

    Same algorithm as `torch.svd_lowrank` (Halko, Martinsson & Tropp, https://arxiv.org/abs/0909.4061),
    written out so the random test matrix comes from `generator`: results are then a pure
    function of the seed, with no global RNG state involved.

    Returns:
        u (m, t), s (t,), vh (t, n) with t = min(rank, m, n); u @ diag(s) @ vh = U_t U_t^T matrix,
        an orthogonal projection, so ||matrix - approx||^2 = ||matrix||^2 - ||s||^2 exactly.
    """
    m, n = matrix.shape
    q = min(rank + oversample, m, n)
    if q >= min(m, n):
        # Small or nearly full-rank requests: the exact SVD is as cheap and has no sampling error.
        u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
        t = min(rank, s.numel())
        return u[:, :t], s[:t], vh[:t]
    probe = torch.randn(n, q, generator=generator, device=matrix.device, dtype=matrix.dtype)  # (n, q)
    basis = _orthonormal(matrix @ probe)  # (m, q)
    for _ in range(power_iterations):
        # Re-orthonormalize at every half step: plain powers would collapse onto sigma_1 in fp32.
        co_basis = _orthonormal(matrix.T @ basis)  # (n, q)
        basis = _orthonormal(matrix @ co_basis)  # (m, q)
    small = (matrix.T @ basis).T  # (q, n); computed as (M^T Q)^T to reuse the fast layout of M^T @ x
    with single_threaded():
        u_small, s, vh = torch.linalg.svd(small, full_matrices=False)  # (q, q), (q,), (q, n)
    t = min(rank, s.numel())
    return basis @ u_small[:, :t], s[:t], vh[:t]


def _orthonormal(columns: Tensor) -> Tensor:
    """Orthonormal basis of a tall-skinny matrix's columns (the Q of its QR)."""
    if columns.device.type != "cpu":
        return torch.linalg.qr(columns).Q
    with single_threaded():
        return torch.linalg.qr(columns).Q


def refactor_dense(
    matrix: Tensor, *, rank: int | None, energy: float | None, max_rank: int, generator: torch.Generator
) -> LowRankDelta:
    """Low-rank factors of a dense merged delta, with the exact error of the factors returned.

    Args:
        matrix: (d_out, d_in) merged delta, fp32.
        rank: target rank, or None to pick the smallest rank <= `max_rank` keeping `energy`.
        energy: fraction of ||matrix||_F^2 to keep when `rank` is None.
        max_rank: cap for the energy rule (the rank an exact linear sum would need).
        generator: seeds the randomized range finder.
    """
    target = rank if rank is not None else max_rank
    u, s, vh = randomized_svd(matrix, target, generator=generator)
    t = choose_rank(s, rank, None) if rank is not None else _energy_rank(matrix, s, energy)
    total = float(torch.linalg.vector_norm(matrix).double() ** 2)
    kept = float((s[:t].double() ** 2).sum())
    retained = min(1.0, kept / total) if total > 0 else 1.0
    root = s[:t].sqrt()
    return LowRankDelta(
        b=u[:, :t] * root,
        a=root[:, None] * vh[:t],
        retained_energy=retained,
        relative_error=math.sqrt(max(0.0, 1.0 - retained)),
        truncated=retained < 1.0 - 1e-6,
    )


def _energy_rank(matrix: Tensor, singular_values: Tensor, energy: float | None) -> int:
    """Smallest t whose top singular values hold `energy` of the whole matrix's ||.||_F^2."""
    assert energy is not None
    total = float(torch.linalg.vector_norm(matrix).double() ** 2)
    if total == 0.0:
        return 1
    cumulative = torch.cumsum(singular_values.double() ** 2, dim=0) / total
    reached = torch.nonzero(cumulative >= energy - 1e-12)
    return int(reached[0]) + 1 if reached.numel() else int(singular_values.numel())

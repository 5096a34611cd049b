"""Small immutable value types shared across the composer."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import Tensor

ModuleKind = Literal["linear", "embedding", "conv"]
MethodKind = Literal["factored", "elementwise"]
SignMethod = Literal["total", "frequency"]
DtypeName = Literal["fp16", "bf16", "fp32"]
RankSpec = int | Literal["auto"] | None

DTYPES: dict[str, torch.dtype] = {
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "fp32": torch.float32,
}
DTYPE_NAMES: dict[torch.dtype, DtypeName] = {
    torch.float16: "fp16",
    torch.bfloat16: "bf16",
    torch.float32: "fp32",
}


class ProgressCallback(Protocol):
    def __call__(self, done_modules: int, total_modules: int) -> None: ...


@dataclass(frozen=True)
class ModuleShape:
    """What a LoRA module looks like, independent of its rank.

    `in_shape` is `(d_in,)` for linear and embedding layers and `(c_in, *kernel)` for convolutions,
    whose lora_A carries the kernel while lora_B is 1x1.
    """

    kind: ModuleKind
    d_out: int
    in_shape: tuple[int, ...]

    @property
    def d_in(self) -> int:
        return math.prod(self.in_shape)

    def describe(self) -> str:
        return f"{self.kind} {self.d_out}x{'x'.join(str(d) for d in self.in_shape)}"


@dataclass(frozen=True)
class ModuleEntry:
    """Where one module's tensors live in an adapter file."""

    name: str  # module path in the base model, e.g. "model.layers.0.self_attn.q_proj"
    shape: ModuleShape
    rank: int
    a_key: str
    b_key: str
    bias_key: str | None


@dataclass(frozen=True)
class ScaledFactors:
    """One input's LoRA factors at one module: its weighted delta is `coefficient * b @ a`.

    `coefficient` is the user weight times the adapter's own scaling (alpha/r, or alpha/sqrt(r)
    for rsLoRA), so every method sees plain products with nothing left to fold in.
    """

    b: Tensor  # (d_out, r) fp32
    a: Tensor  # (r, d_in) fp32, convolution kernels flattened into d_in
    coefficient: float
    scaling: float  # the adapter's own alpha/r (or alpha/sqrt(r)), already inside `coefficient`
    bias: Tensor | None  # (d_out,) fp32, the raw lora_B.bias, to be multiplied by `coefficient`

    def __post_init__(self) -> None:
        assert self.b.shape[1] == self.a.shape[0], f"rank mismatch: B {tuple(self.b.shape)} vs A {tuple(self.a.shape)}"


@dataclass(frozen=True)
class LowRankDelta:
    """A method's output at one module: delta = b @ a (+ bias), with how much of the target it kept."""

    b: Tensor  # (d_out, t)
    a: Tensor  # (t, d_in)
    retained_energy: float  # ||kept||_F^2 / ||target||_F^2; 1.0 when nothing was cut
    relative_error: float  # ||target - b @ a||_F / ||target||_F
    truncated: bool  # whether rank was cut below what an exact result needs

    @property
    def rank(self) -> int:
        return int(self.b.shape[1])


@dataclass(frozen=True)
class ModuleReport:
    """Per-module quality line of a composition, also written to composition.json."""

    module: str
    rank: int
    input_ranks: tuple[int, ...]
    retained_energy: float
    relative_error: float
    truncated: bool
    # The rank at which the result would be exact: the inputs' ranks added up (a dense delta counts
    # as full rank), at most the layer's own.
    exact_rank: int | None = None

    def to_dict(self) -> dict[str, object]:
        line: dict[str, object] = {
            "module": self.module,
            "rank": self.rank,
            "input_ranks": list(self.input_ranks),
            "retained_energy": round(self.retained_energy, 8),
            "relative_error": round(self.relative_error, 8),
            "truncated": self.truncated,
        }
        if self.exact_rank is not None:
            line["exact_rank"] = self.exact_rank
        return line

"""What each PEFT method does to a base layer's weight: its delta ΔW, as exact low-rank factors where
the method's structure gives them and as a dense matrix otherwise. One small function per method;
`FamilyAdapter` reads an adapter of any of these methods lazily, one module at a time.

    method    delta (per module, W the base weight (out, in))                       form
    AdaLoRA   B · diag(E) · A · alpha / r                                           factors, rank r
    LoHa      (W1a W1b) ⊙ (W2a W2b) · alpha / r                                     factors, rank r1·r2
    LoKr      kron(W1, W2) · alpha / r, each factor full or a product               factors, rank k1·k2
    VeRA      diag(λb) B[:out] · diag(λd) A[:, :in]  (shared projections B, A)      factors, rank r
    FourierFT Re(ifft2(spectrum placed at seeded positions)) · scaling              dense
    IA3       (l − 1) ⊙ W, by output rows or input columns                          dense, needs W
    DoRA      m / ‖W + s·BA‖_row · (W + s·BA) − W                                  dense, needs W
    OFT/BOFT  W·Rᵀ − W, R orthogonal (Cayley blocks; BOFT's butterfly, output scale) dense, needs W

OFT and BOFT build R through PEFT's own layer (their Cayley-Neumann series, block sharing, the
butterfly permutations and constraints are PEFT's to define): `peft_layer_delta` wraps the base
layer in that layer alone, loads the adapter's tensors and merges.

A factor form is exact: B @ A equals PEFT's own `get_delta_weight` (the tests check it against PEFT),
and a composition that keeps enough rank reproduces the weighted sum of the inputs' deltas exactly.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from composer.errors import CompositionError
from composer.io import (
    CONFIG_FILE,
    PEFT_PREFIX,
    WEIGHTS_FILE,
    ConfigViews,
    SafetensorsSource,
    TensorSource,
    file_sha256,
    match_pattern,
)
from composer.types import ModuleShape


class BaseView(Protocol):
    """What a composition may need of the base model: a layer's (out, in) shape (VeRA, FourierFT
    and IA3 files do not say it) and its weight and bias (IA3 and DoRA deltas are made of them)."""

    def shape(self, module: str) -> tuple[int, int] | None: ...

    def weight(self, module: str, device: torch.device) -> tuple[Tensor, Tensor | None]: ...


@dataclass(frozen=True)
class ModuleDelta:
    """One input's change to one module: `b @ a` (exact low-rank factors) or `dense`, each already
    multiplied by the method's own scaling; `bias` is the change to the layer's bias, if any."""

    shape: ModuleShape
    b: Tensor | None = None  # (out, k)
    a: Tensor | None = None  # (k, in)
    dense: Tensor | None = None  # (out, in)
    bias: Tensor | None = None  # (out,)

    @property
    def rank(self) -> int | None:
        return int(self.a.shape[0]) if self.a is not None else None

    def matrix(self) -> Tensor:
        if self.dense is not None:
            return self.dense
        assert self.b is not None and self.a is not None
        return self.b @ self.a


# --------------------------------------------------------------------------------------------------
# One function per method: the tensors of one module (fp32, on one device) -> its delta.


def adalora_delta(parts: dict[str, Tensor], config: dict[str, Any], module: str) -> tuple[Tensor, Tensor]:
    """AdaLoRA's SVD-shaped update P·Λ·Q: lora_B (out, r) · diag(lora_E) · lora_A (r, in), times
    lora_alpha / r, r being the rank kept (PEFT divides by its ranknum, r + 1e-5)."""
    a, b, e = parts["lora_A"], parts["lora_B"], parts["lora_E"]
    alpha = float(config.get("lora_alpha") or a.shape[0])
    return b * (alpha / (a.shape[0] + 1e-5)), a * e  # (out, r), (r, in)


def loha_delta(parts: dict[str, Tensor], scale: float) -> tuple[Tensor, Tensor]:
    """LoHa's Hadamard product of two low-rank products. (U1 V1) ⊙ (U2 V2) = (U1 ⊙r U2)(V1 ⊙r V2),
    ⊙r the row-wise Kronecker product: exact factors of rank r1·r2."""
    u1, v1, u2, v2 = parts["hada_w1_a"], parts["hada_w1_b"], parts["hada_w2_a"], parts["hada_w2_b"]
    b = (u1[:, :, None] * u2[:, None, :]).reshape(u1.shape[0], -1)  # (out, r1*r2)
    a = (v1[:, None, :] * v2[None, :, :]).reshape(-1, v1.shape[1])  # (r1*r2, in)
    return b * scale, a


def _factor_pair(parts: dict[str, Tensor], name: str) -> tuple[Tensor, Tensor]:
    """A LoKr factor as U @ V: its stored pair, or the full matrix beside an identity (whichever
    inner size is smaller)."""
    if f"{name}_a" in parts:
        return parts[f"{name}_a"], parts[f"{name}_b"]
    full = parts[name]
    rows, cols = full.shape
    eye = torch.eye(min(rows, cols), dtype=full.dtype, device=full.device)
    return (full, eye) if cols <= rows else (eye, full)


def lokr_delta(parts: dict[str, Tensor], scale: float) -> tuple[Tensor, Tensor]:
    """LoKr's Kronecker product. With W1 = U1 V1 and W2 = U2 V2, kron(W1, W2) = kron(U1, U2) ·
    kron(V1, V2): exact factors of rank k1·k2."""
    u1, v1 = _factor_pair(parts, "lokr_w1")
    u2, v2 = _factor_pair(parts, "lokr_w2")
    return torch.kron(u1, u2) * scale, torch.kron(v1, v2)


def vera_delta(parts: dict[str, Tensor], shared: dict[str, Tensor], shape: ModuleShape) -> tuple[Tensor, Tensor]:
    """VeRA: the shared random projections, sliced to the layer and scaled by its two trained vectors."""
    b = parts["vera_lambda_b"][:, None] * shared["vera_B"][: shape.d_out, :]  # (out, r)
    a = parts["vera_lambda_d"][:, None] * shared["vera_A"][:, : shape.d_in]  # (r, in)
    return b, a


def fourierft_positions(shape: ModuleShape, n_frequency: int, seed: int) -> tuple[Tensor, Tensor]:
    """The spectrum's (row, column) positions: PEFT draws them from a permutation seeded with
    random_loc_seed, so they are a pure function of the seed and the layer's shape."""
    order = torch.randperm(shape.d_out * shape.d_in, generator=torch.Generator().manual_seed(seed))[:n_frequency]
    return order // shape.d_in, order % shape.d_in


def fourierft_delta(spectrum: Tensor, shape: ModuleShape, seed: int, scaling: float) -> Tensor:
    """FourierFT: the trained coefficients placed in an (out, in) spectrum, back through ifft2."""
    rows, cols = fourierft_positions(shape, spectrum.numel(), seed)
    dense = torch.zeros(shape.d_out, shape.d_in, device=spectrum.device)
    dense[rows.to(spectrum.device), cols.to(spectrum.device)] = spectrum
    return torch.fft.ifft2(dense).real * scaling


def ia3_delta(vector: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """IA3 rescales a layer: (out, 1) vectors scale its outputs (bias included), (1, in) vectors its
    inputs. Its delta is (l − 1) times the base weight along that side."""
    if vector.shape[0] == 1:  # feed-forward: x * l before the layer; the bias is untouched
        return weight * (vector - 1.0), None
    rows = vector - 1.0  # (out, 1)
    return weight * rows, (bias * rows[:, 0]) if bias is not None else None


def dora_delta(b: Tensor, a: Tensor, magnitude: Tensor, scaling: float, weight: Tensor) -> Tensor:
    """DoRA: the LoRA-updated weight, each output row renormalised to the learned magnitude, minus W."""
    updated = weight + scaling * (b @ a)
    norm = torch.linalg.vector_norm(updated, dim=1)  # (out,)
    return (magnitude / norm)[:, None] * updated - weight


class _OneLayer(torch.nn.Module):
    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            self.layer.weight.copy_(weight.detach().cpu())


# Config fields that place an adapter in a model; the one-layer model of peft_layer_delta has its own.
_PLACEMENT_FIELDS = ("target_modules", "exclude_modules", "layers_to_transform", "layers_pattern", "modules_to_save")


def peft_layer_delta(config: dict[str, Any], stored: dict[str, Tensor], weight: Tensor) -> Tensor:
    """PEFT's own merged change of one layer: the base weight in an nn.Linear, the method's PEFT
    layer around it with the adapter's tensors (named by their part, e.g. `oft_R.weight`), merged."""
    from peft import PeftType, get_peft_model, set_peft_model_state_dict
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    config_class = PEFT_TYPE_TO_CONFIG_MAPPING[PeftType(str(config["peft_type"]))]
    known = set(config_class.__dataclass_fields__)
    fields = {k: v for k, v in config.items() if k in known and k not in _PLACEMENT_FIELDS and k != "peft_type"}
    fields.update(target_modules=["layer"], task_type=None, inference_mode=True)
    holder = _OneLayer(weight)
    model = get_peft_model(holder, config_class(**fields))
    set_peft_model_state_dict(model, {f"base_model.model.layer.{part}": t for part, t in stored.items()})
    merged = model.merge_and_unload().get_submodule("layer").get_parameter("weight")
    return merged.detach().to(device=weight.device, dtype=torch.float32) - weight


# --------------------------------------------------------------------------------------------------
# Reading adapters of these methods


_PART_RE = re.compile(
    r"(?P<module>.+)\.(?P<part>lora_A|lora_B|lora_E|lora_magnitude_vector|hada_w[12]_[ab]|lokr_w[12](?:_[ab])?"
    r"|vera_lambda_[bd]|fourierft_spectrum|ia3_l|oft_R|boft_R|boft_s)(?:\.weight)?"
)
_SHARED = ("base_model.vera_A", "base_model.vera_B")
# peft_type (or "DORA") -> the parts every module must have.
_REQUIRED: dict[str, tuple[str, ...]] = {
    "ADALORA": ("lora_A", "lora_B", "lora_E"),
    "LOHA": ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"),
    "LOKR": (),
    "VERA": ("vera_lambda_b", "vera_lambda_d"),
    "FOURIERFT": ("fourierft_spectrum",),
    "IA3": ("ia3_l",),
    "DORA": ("lora_A", "lora_B", "lora_magnitude_vector"),
    "OFT": ("oft_R",),
    "BOFT": ("boft_R", "boft_s"),
}
COMPOSABLE_TYPES = frozenset(_REQUIRED)
NEEDS_BASE = frozenset({"IA3", "DORA", "OFT", "BOFT"})


def sums_ia3_vectors(families: set[str], method: str, rank: object) -> bool:
    """Whether a composition keeps IA3 as IA3 (a weighted sum of its vectors, as PEFT mixes them):
    only IA3 inputs, a weighted sum, no rank asked for. Then no base weight is needed."""
    return families == {"IA3"} and method in ("linear", "expr") and rank is None


def family_of(config: dict[str, Any]) -> str:
    """The method whose delta rule applies: the peft_type, or DORA for a LoRA with use_dora."""
    peft_type = str(config.get("peft_type") or "")
    return "DORA" if peft_type == "LORA" and config.get("use_dora") else peft_type


class FamilyAdapter(ConfigViews):
    """A PEFT adapter of one of COMPOSABLE_TYPES: config, an index of its modules, and `delta`."""

    def __init__(
        self,
        *,
        config: dict[str, Any],
        source: TensorSource,
        reference: str,
        sha256: str | None = None,
        base: BaseView | None = None,
    ) -> None:
        self.config = json.loads(json.dumps(config))
        self.base = base
        self.source = source
        self.reference = reference
        self._sha256 = sha256
        self.family = family_of(self.config)
        if self.family not in COMPOSABLE_TYPES:
            raise CompositionError(
                "unsupported_adapter_type", f"{reference} is a {self.family or 'non-PEFT'} adapter, which has no delta"
            )
        self.parts: dict[str, dict[str, str]] = {}
        extra: list[str] = []
        for key in source.keys():
            if key in _SHARED:
                continue
            match = _PART_RE.fullmatch(key)
            if match is None:
                extra.append(key)
                continue
            self.parts.setdefault(match["module"].removeprefix(PEFT_PREFIX), {})[match["part"]] = key
        self.extra_keys = tuple(sorted(extra))
        if not self.parts:
            raise CompositionError("bad_input", f"{reference} contains no {self.family} tensors")
        # Layers whose shape only the base model knows stay out of `modules` until a base is given.
        self.modules: dict[str, ModuleShape] = {}
        self.unshaped: list[str] = []
        for module in sorted(self.parts):
            shape = self._shape(module)
            if shape is None:
                self.unshaped.append(module)
            else:
                self.modules[module] = shape
        if self.family == "VERA" and not all(k in source.keys() for k in _SHARED):
            raise CompositionError(
                "bad_input",
                f"{reference} was saved without its shared projections (save_projection=False); re-save it with "
                "save_projection=True so its delta is reproducible",
            )

    # -- what the composer asks of every input ---------------------------------------------------

    @property
    def dtype(self) -> torch.dtype:
        dtypes = {self.source.dtype(k) for parts in self.parts.values() for k in parts.values()}
        return dtypes.pop() if len(dtypes) == 1 else torch.float32

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = file_sha256(self.source.path) if isinstance(self.source, SafetensorsSource) else ""
        return self._sha256

    def tensor(self, key: str) -> Tensor:
        return self.source.get(key)

    def nominal_rank(self, module: str) -> int | None:
        """The rank of its exact factors; None for a dense delta."""
        if self.family in ("FOURIERFT", "IA3", "DORA", "OFT", "BOFT"):
            return None
        shape = self._factor_shapes(module)
        return shape[1][0] if shape is not None else None

    def delta(self, module: str, device: torch.device) -> ModuleDelta:
        """This adapter's change at `module`, in fp32 on `device`."""
        base = self.base
        shape = self.modules[module]
        parts = {p: self.source.get(k).to(device=device, dtype=torch.float32) for p, k in self.parts[module].items()}
        family = self.family
        if family in NEEDS_BASE:
            if base is None:
                raise CompositionError(
                    "base_model_required", f"{self.reference} is {family}: its delta needs the base model's weights"
                )
            weight, bias = base.weight(module, device)
            if tuple(weight.shape) != (shape.d_out, shape.d_in):
                raise CompositionError(
                    "shape_mismatch",
                    f"{self.reference}: module {module!r} is {shape.d_out}x{shape.d_in} in the adapter but "
                    f"{tuple(weight.shape)} in the base model",
                )
            if family == "IA3":
                dense, bias_change = ia3_delta(parts["ia3_l"], weight, bias)
                return ModuleDelta(shape=shape, dense=dense, bias=bias_change)
            if family in ("OFT", "BOFT"):
                prefix = f"{PEFT_PREFIX}{module}."
                stored = {k.removeprefix(prefix): self.source.get(k) for k in self.parts[module].values()}
                return ModuleDelta(shape=shape, dense=peft_layer_delta(self.config, stored, weight))
            magnitude = parts["lora_magnitude_vector"]
            dense = dora_delta(parts["lora_B"], parts["lora_A"], magnitude, self._lora_scaling(module), weight)
            return ModuleDelta(shape=shape, dense=dense)
        if family == "FOURIERFT":
            scaling = float(self.config.get("scaling", 150.0))
            seed = int(self.config.get("random_loc_seed", 777))
            return ModuleDelta(shape=shape, dense=fourierft_delta(parts["fourierft_spectrum"], shape, seed, scaling))
        if family == "VERA":
            shared = {name.rsplit(".", 1)[1]: self.source.get(name).to(device, torch.float32) for name in _SHARED}
            b, a = vera_delta(parts, shared, shape)
        elif family == "ADALORA":
            b, a = adalora_delta(parts, self.config, module)
        elif family == "LOHA":
            b, a = loha_delta(parts, self._scale(module))
        else:
            b, a = lokr_delta(parts, self._scale(module))
        return ModuleDelta(shape=shape, b=b, a=a)

    # -- helpers ----------------------------------------------------------------------------------

    def _scale(self, module: str) -> float:
        """LoHa and LoKr run at alpha / r, both resolved through their patterns."""
        rank = match_pattern(self.config.get("rank_pattern") or {}, module)
        alpha = match_pattern(self.config.get("alpha_pattern") or {}, module)
        r = float(rank if rank is not None else self.config.get("r", 8))
        return float(alpha if alpha is not None else self.config.get("alpha", 8)) / r

    def _lora_scaling(self, module: str) -> float:
        rank = match_pattern(self.config.get("rank_pattern") or {}, module)
        alpha = match_pattern(self.config.get("alpha_pattern") or {}, module)
        r = float(rank if rank is not None else self.config.get("r", 8))
        a = float(alpha if alpha is not None else self.config.get("lora_alpha", 8))
        return a / math.sqrt(r) if self.config.get("use_rslora") else a / r

    def _factor_shapes(self, module: str) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """(b, a) shapes of the module's exact factors, from tensor shapes alone."""
        parts = {p: self.source.shape(k) for p, k in self.parts[module].items()}
        shape = self.modules[module]
        if self.family in ("ADALORA", "VERA"):
            r = parts["lora_A"][0] if self.family == "ADALORA" else parts["vera_lambda_d"][0]
            return (shape.d_out, r), (r, shape.d_in)
        if self.family == "LOHA":
            r = parts["hada_w1_a"][1] * parts["hada_w2_a"][1]
            return (shape.d_out, r), (r, shape.d_in)
        if self.family == "LOKR":
            inner = 1
            for name in ("lokr_w1", "lokr_w2"):
                if f"{name}_a" in parts:
                    inner *= parts[f"{name}_a"][1]
                else:
                    inner *= min(parts[name])
            return (shape.d_out, inner), (inner, shape.d_in)
        return None

    def _shape(self, module: str) -> ModuleShape | None:
        """The base layer's (out, in), from the tensors (and, for IA3, the base's side it scales)."""
        parts = {p: self.source.shape(k) for p, k in self.parts[module].items()}
        family = self.family
        missing = [p for p in _REQUIRED[family] if p not in parts]
        if family == "LOKR":
            missing = [n for n in ("lokr_w1", "lokr_w2") if n not in parts and f"{n}_a" not in parts]
        if missing:
            raise CompositionError("bad_input", f"{self.reference}: module {module!r} has no {', '.join(missing)}")
        if family in ("ADALORA", "DORA"):
            return ModuleShape("linear", parts["lora_B"][0], (parts["lora_A"][1],))
        if family == "LOHA":
            return ModuleShape("linear", parts["hada_w1_a"][0], (parts["hada_w1_b"][1],))
        if family == "LOKR":
            rows, cols = 1, 1
            for name in ("lokr_w1", "lokr_w2"):
                if f"{name}_a" in parts:
                    rows, cols = rows * parts[f"{name}_a"][0], cols * parts[f"{name}_b"][-1]
                else:
                    rows, cols = rows * parts[name][0], cols * parts[name][1]
            return ModuleShape("linear", rows, (cols,))
        if self.base is None:
            return None
        known = self.base.shape(module)
        if known is None:
            raise CompositionError(
                "base_model_required",
                f"{self.reference}: the shape of {family} module {module!r} comes from the base model, which has no "
                "such layer",
            )
        return ModuleShape("linear", known[0], (known[1],))

    def require_shapes(self) -> None:
        """Refuse (base_model_required) when some layer's shape needs a base model none gave."""
        if self.unshaped:
            raise CompositionError(
                "base_model_required",
                f"{self.reference} is {self.family}: the shapes of its layers ({self.unshaped[0]!r}, ...) come from "
                "the base model; pass one",
            )

    def ia3_vectors(self) -> dict[str, Tensor]:
        """IA3's scaling vectors by module, as stored."""
        return {module: self.source.get(parts["ia3_l"]) for module, parts in self.parts.items()}


def load_family_adapter(
    folder: Path, *, reference: str | None = None, sha256: str | None = None, base: BaseView | None = None
) -> FamilyAdapter:
    config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    source = SafetensorsSource(folder / WEIGHTS_FILE)
    return FamilyAdapter(config=config, source=source, reference=reference or str(folder), sha256=sha256, base=base)

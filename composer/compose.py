"""The composition engine: validate, then merge one module at a time, then assemble a PEFT adapter."""

from __future__ import annotations

import hashlib
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from composer.compat import Compatibility, Input, as_adapter, check_compatible, check_same_base
from composer.errors import CompositionError
from composer.expression import parse_expression
from composer.families import BaseView, FamilyAdapter, sums_ia3_vectors
from composer.hybrid import PROMPT_TYPES, HybridInput, HybridPart, HybridResult
from composer.io import (
    PEFT_PREFIX,
    WEIGHTS_FILE,
    LoraAdapter,
    SafetensorsSource,
    SafetensorsWriter,
    load_lora,
    match_pattern,
    save_lora,
)
from composer.lora import combined_bias, refactor_dense, single_threaded
from composer.prompts import compose_prompts, is_prompt_tuning
from composer.recipe import Recipe, RecipeInput, environment, summarize
from composer.registry import MergeMethod, get_method
from composer.threads import using_threads
from composer.types import (
    DTYPE_NAMES,
    DTYPES,
    LowRankDelta,
    ModuleReport,
    ModuleShape,
    ProgressCallback,
    RankSpec,
    ScaledFactors,
    SignMethod,
)
from composer.version import VERSION

InputItem = tuple[Input | str | os.PathLike[str], float]

_DTYPE_ALIASES = {"float16": "fp16", "half": "fp16", "bfloat16": "bf16", "float32": "fp32", "float": "fp32"}
DEFAULT_SEED = 0
DEFAULT_ENERGY = 0.99


@dataclass(frozen=True)
class CompositionParams:
    """A validated composition request (everything except the inputs themselves)."""

    method: str
    rank: RankSpec = None
    density: float | None = None
    seed: int | None = None
    majority_sign_method: SignMethod = "total"
    energy: float = DEFAULT_ENERGY
    dtype: str | None = None
    device: str = "auto"
    expression: str | None = None

    def __post_init__(self) -> None:
        spec = self.spec  # raises unsupported_method
        rank = self.rank
        if rank is not None and rank != "auto" and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
            raise CompositionError("bad_input", f"rank must be a positive integer, 'auto' or None, got {rank!r}")
        if rank is not None and not spec.uses_rank:
            raise CompositionError(
                "bad_input", f"{spec.name} keeps every input's rank (output rank = sum of ranks); use linear to set one"
            )
        if spec.uses_density:
            if self.density is None:
                raise CompositionError(
                    "missing_parameter",
                    f"{spec.name} needs density, the fraction of each task vector to keep (0 < density <= 1)",
                )
            if not (isinstance(self.density, (int, float)) and 0.0 < self.density <= 1.0):
                raise CompositionError("bad_input", f"density must be in (0, 1], got {self.density!r}")
        elif self.density is not None:
            raise CompositionError(
                "bad_input", f"{spec.name} does not use density (only ties, dare_*, magnitude_prune do)"
            )
        if self.majority_sign_method not in ("total", "frequency"):
            raise CompositionError(
                "bad_input", f"majority_sign_method must be 'total' or 'frequency', got {self.majority_sign_method!r}"
            )
        if not (isinstance(self.energy, (int, float)) and 0.0 < self.energy <= 1.0):
            raise CompositionError("bad_input", f"energy must be in (0, 1], got {self.energy!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise CompositionError("bad_input", f"seed must be a non-negative integer, got {self.seed!r}")
        if self.dtype is not None and _DTYPE_ALIASES.get(self.dtype, self.dtype) not in DTYPES:
            raise CompositionError("bad_input", f"dtype must be one of fp16, bf16, fp32, got {self.dtype!r}")
        _ = self.torch_device  # raises bad_input for unknown or unavailable devices

    @property
    def spec(self) -> MergeMethod:
        return get_method(self.method)

    @property
    def effective_seed(self) -> int | None:
        """Element-wise methods draw random numbers (DARE masks, the low-rank SVD's probe); factored ones do not."""
        if self.spec.kind != "elementwise":
            return None
        return DEFAULT_SEED if self.seed is None else self.seed

    @property
    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError):
            raise CompositionError("bad_input", f"device must be auto, cpu or cuda[:N], got {self.device!r}") from None
        if device.type not in ("cpu", "cuda"):
            raise CompositionError("bad_input", f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise CompositionError("bad_input", "device 'cuda' was requested but no CUDA device is available")
        return device

    def output_dtype(self, inputs_dtype: torch.dtype) -> torch.dtype:
        if self.dtype is None:
            return inputs_dtype
        return DTYPES[_DTYPE_ALIASES.get(self.dtype, self.dtype)]

    def recorded(self, output_dtype: torch.dtype) -> dict[str, Any]:
        """Parameters as composition.json records them: only those the method reads."""
        spec = self.spec
        recorded: dict[str, Any] = {"dtype": DTYPE_NAMES[output_dtype]}
        if spec.uses_rank:
            recorded["rank"] = self.rank if self.rank is not None else "max_input_rank"
            if self.rank == "auto":
                recorded["energy"] = self.energy
        if spec.uses_density:
            recorded["density"] = self.density
        if spec.uses_sign_method:
            recorded["majority_sign_method"] = self.majority_sign_method
        if self.expression is not None:
            recorded["expression"] = self.expression
        return recorded


@dataclass(frozen=True)
class CompositionResult:
    """A composed adapter (ready for `save_lora`), its per-module report and its recipe."""

    adapter: LoraAdapter
    modules: tuple[ModuleReport, ...]
    recipe: dict[str, Any]

    @property
    def summary(self) -> dict[str, Any]:
        return summarize(self.modules)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the adapter folder with its composition.json; returns the folder."""
        return save_lora(self.adapter, path)


def compose(
    inputs: Sequence[InputItem],
    method: str = "linear",
    rank: RankSpec = None,
    *,
    density: float | None = None,
    seed: int | None = None,
    majority_sign_method: SignMethod = "total",
    energy: float = DEFAULT_ENERGY,
    dtype: str | None = None,
    device: str = "auto",
    progress: ProgressCallback | None = None,
    expression: str | None = None,
    base: BaseView | None = None,
    threads: int | None = None,
    out: str | os.PathLike[str] | None = None,
) -> CompositionResult | HybridResult:
    """Compose adapters into a new LoRA: LoRA inputs by their factors, every other method whose
    delta is computable (composer.families) by its delta, exact factors or dense.

    Steps:
        1. Validate the parameters and the inputs' compatibility, before any tensor math.
        2. For each module of the union, read each input's factors, fold in weight x scaling,
           merge with the method, and keep the result in the output dtype.
        3. Assemble a PEFT adapter (rank_pattern where ranks differ, use_rslora off, scaling 1)
           and the recipe.

    Args:
        inputs: (adapter or folder, weight) pairs; any real weights, negative ones negate.
        method: a name from `composer.registry.METHODS` (or the alias "cat").
        rank: output rank; None = the largest input rank at each module; "auto" = the smallest
            rank keeping `energy` of each module's delta. Not accepted by stack.
        density: fraction kept per task vector, required by ties, dare_* and magnitude_prune.
        seed: seed of the element-wise methods' randomness (default 0); results are a pure function of it.
        majority_sign_method: "total" or "frequency", for ties and dare_ties.
        energy: fraction of ||delta||_F^2 to keep when rank="auto".
        dtype: "fp16", "bf16" or "fp32" for the output tensors; default: the inputs'.
        device: "auto" (CUDA when available), "cpu" or "cuda[:N]"; all math runs in fp32 there.
        progress: called as progress(done_modules, total_modules) after each module.
        expression: the arithmetic expression the weights came from, recorded in the recipe.
        base: the base model (composer.base.BaseCheckpoint or ManifestBase), for inputs whose delta
            or layer shapes need it (IA3, DoRA; VeRA, FourierFT).
        threads: CPU threads for the math (composer.threads): None = COMPOSER_THREADS or one,
            0 = torch's current setting. Results are the same bytes whatever the count.
        out: a folder to write the result to (as `result.save` does). A LoRA result is written
            module by module as it is composed, so memory holds one module of each input and one
            of the output, never the whole result; `result.adapter` then reads from the file.

    Returns:
        A `CompositionResult` (a `HybridResult` when hybrid inputs keep a prompt); `result.save(folder)`
        writes it.
    """
    params = CompositionParams(
        method=method,
        rank=rank,
        density=density,
        seed=seed,
        majority_sign_method=majority_sign_method,
        energy=energy,
        dtype=dtype,
        device=device,
        expression=expression,
    )
    folder = Path(out) if out is not None else None
    with using_threads(threads):
        result = _compose(inputs, params, progress=progress, base=base, out=folder)
    if folder is not None:
        result.save(folder)  # the config and recipe (a streamed LoRA's weights are there already)
    return result


def _compose(
    inputs: Sequence[InputItem],
    params: CompositionParams,
    *,
    progress: ProgressCallback | None,
    base: BaseView | None,
    out: Path | None = None,
) -> CompositionResult | HybridResult:
    adapters, weights = _normalize_inputs(inputs, base)
    if any(isinstance(a, HybridInput) for a in adapters):
        return _compose_hybrids(adapters, weights, params, progress=progress, base=base)
    spec = params.spec
    if spec.single_input and len(adapters) != 1:
        raise CompositionError("bad_input", f"{spec.name} re-ranks exactly one adapter, got {len(adapters)} inputs")
    if all(is_prompt_tuning(a) for a in adapters):
        prompt, report, recipe = compose_prompts(
            [a for a in adapters if isinstance(a, LoraAdapter)], weights, spec.name, params
        )
        return CompositionResult(adapter=prompt, modules=(report,), recipe=recipe)
    families = {a.family if isinstance(a, FamilyAdapter) else "LORA" for a in adapters}
    if sums_ia3_vectors(families, spec.name, params.rank):
        return _compose_ia3(adapters, weights, params)
    if base is not None and len({frozenset(a.extra_keys) for a in adapters}) > 1:
        for adapter in adapters:
            _drop_base_copies(adapter, base)
    compat = check_compatible(adapters)
    device_ = params.torch_device
    out_dtype = params.output_dtype(compat.dtype)

    sink = _OutputTensors(out, _possible_keys(compat))
    try:
        reports = _merge_modules(compat, adapters, weights, params, device_, out_dtype, sink, progress)
    except BaseException:
        sink.abort()
        raise
    compat = sink.finish(compat, adapters, out_dtype)
    config = build_output_config(adapters, compat, {r.module: r.rank for r in reports})
    recipe = Recipe(
        library="composer",
        version=VERSION,
        method=spec.name,
        parameters=params.recorded(out_dtype),
        seed=params.effective_seed,
        inputs=tuple(
            RecipeInput(reference=a.reference, weight=w, sha256=a.sha256)
            for a, w in zip(adapters, weights, strict=True)
        ),
        base_model=compat.base_model,
        revision=compat.revision,
        environment=environment(device_),
    ).to_dict(reports)
    adapter = sink.adapter(config, reference=f"composition:{spec.name}", recipe=recipe)
    return CompositionResult(adapter=adapter, modules=tuple(reports), recipe=recipe)


def _merge_modules(
    compat: Compatibility,
    adapters: Sequence[Input],
    weights: Sequence[float],
    params: CompositionParams,
    device: torch.device,
    out_dtype: torch.dtype,
    sink: _OutputTensors,
    progress: ProgressCallback | None,
) -> list[ModuleReport]:
    """Merge module after module, handing each result to `sink` before the next one starts."""
    reports: list[ModuleReport] = []
    total = len(compat.modules)
    for done, (module, shape) in enumerate(compat.modules.items(), start=1):
        low, bias = _merge_module(module, shape, adapters, weights, params, device)
        input_ranks = tuple(_input_rank(a, module, shape) for a in adapters)
        reports.append(
            ModuleReport(
                module=module,
                rank=low.rank,
                input_ranks=input_ranks,
                retained_energy=low.retained_energy,
                relative_error=low.relative_error,
                truncated=low.truncated,
                exact_rank=min(sum(input_ranks), shape.d_out, shape.d_in),
            )
        )
        for key, value in _module_tensors(module, shape, low, bias, out_dtype).items():
            sink.add(key, value)
        del low, bias
        if progress is not None:
            progress(done, total)
    return reports


def _possible_keys(compat: Compatibility) -> list[str]:
    """Every key the output may hold: each module's factors and bias, the inputs' extra tensors."""
    keys = list(compat.extra_keys)
    for module, shape in compat.modules.items():
        prefix = f"{PEFT_PREFIX}{module}"
        if shape.kind == "embedding":
            keys += [f"{prefix}.lora_embedding_A", f"{prefix}.lora_embedding_B"]
        else:
            keys += [f"{prefix}.lora_A.weight", f"{prefix}.lora_B.weight", f"{prefix}.lora_B.bias"]
    return keys


class _OutputTensors:
    """Where the composed tensors go: a safetensors file written as they come (`out` given), or a
    dict in memory."""

    def __init__(self, out: Path | None, keys: list[str]) -> None:
        self.added: set[str] = set()
        self.tensors: dict[str, Tensor] = {}
        self.writer: SafetensorsWriter | None = None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            self.writer = SafetensorsWriter(out / WEIGHTS_FILE, keys)

    def add(self, key: str, value: Tensor) -> None:
        self.added.add(key)
        if self.writer is not None:
            self.writer.add(key, value)
        else:
            self.tensors[key] = value

    def finish(self, compat: Compatibility, adapters: Sequence[Input], out_dtype: torch.dtype) -> Compatibility:
        """Add the zero biases and extra tensors that complete the output; close the file."""
        biases = {f"{PEFT_PREFIX}{module}.lora_B.bias": shape for module, shape in compat.modules.items()}
        if compat.has_bias or not self.added.isdisjoint(biases):
            # PEFT gives every lora_B a bias once lora_bias=True; zeros keep modules without one exact.
            compat = replace(compat, has_bias=True)
            for key, shape in biases.items():
                if key not in self.added and shape.kind != "embedding":
                    self.add(key, torch.zeros(shape.d_out, dtype=out_dtype))
        for key in compat.extra_keys:
            self.add(key, adapters[0].tensor(key).contiguous())
        if self.writer is not None:
            self.writer.close()
        return compat

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()

    def adapter(self, config: dict[str, Any], *, reference: str, recipe: dict[str, Any]) -> LoraAdapter:
        if self.writer is None:
            return LoraAdapter.from_tensors(config, self.tensors, reference=reference, recipe=recipe)
        path = self.writer.path
        return LoraAdapter(config=config, source=SafetensorsSource(path), reference=reference, recipe=recipe)


def _compose_hybrids(
    adapters: Sequence[Any],
    weights: Sequence[float],
    params: CompositionParams,
    *,
    progress: ProgressCallback | None,
    base: BaseView | None,
) -> Any:
    """Hybrids (and plain adapters) under a weighted sum: every weight part merged into one LoRA as
    plain inputs are, the prompts combined into one prompt (prompt tuning, weighted; a single prompt is
    kept as it is); both together make a hybrid again, lora/ then prompt/."""
    if params.spec.name not in ("linear", "expr"):
        raise CompositionError(
            "unsupported_method",
            f"hybrids combine by linear or expr (weight parts into one LoRA, prompts into one prompt), not "
            f"{params.spec.name}",
        )
    weight_inputs: list[tuple[Any, float]] = []
    prompt_inputs: list[tuple[Any, float]] = []
    for adapter, weight in zip(adapters, weights, strict=True):
        for part in [p for _, p in adapter.parts] if isinstance(adapter, HybridInput) else [adapter]:
            (prompt_inputs if part.peft_type in PROMPT_TYPES else weight_inputs).append((part, weight))
    merged = None
    if weight_inputs:
        merged = compose(
            weight_inputs,
            method=params.method,
            rank=params.rank,
            energy=params.energy,
            dtype=params.dtype,
            device=params.device,
            progress=progress,
            base=base,
            threads=0,  # the policy is already applied
        )
    prompt: Any = None
    prompt_recipe: dict[str, Any] = {}
    if len(prompt_inputs) == 1:
        kept = prompt_inputs[0][0]  # one prompt among the inputs: carried as it is, byte for byte
        path = getattr(kept, "path", None)
        prompt = HybridPart(path, kept.reference, None, kept.peft_type) if path is not None else kept
        prompt_recipe = {"kept": kept.reference}
    elif prompt_inputs:
        if not all(is_prompt_tuning(p) for p, _ in prompt_inputs):
            raise CompositionError(
                "unsupported_adapter_type",
                "several prompt parts combine only when all are prompt tuning (p-tuning and prefix tuning do not)",
            )
        prompt, _, prompt_recipe = compose_prompts(
            [p for p, _ in prompt_inputs], [w for _, w in prompt_inputs], "linear", params
        )
    assert merged is None or isinstance(merged, CompositionResult)  # its inputs are no hybrids
    if prompt is None:
        assert merged is not None
        return merged
    if merged is None:
        return CompositionResult(adapter=prompt, modules=(), recipe=prompt_recipe)
    recipe = {
        "library": "composer",
        "version": VERSION,
        "method": params.spec.name,
        "inputs": [
            {"reference": a.reference, "weight": w, "sha256": a.sha256} for a, w in zip(adapters, weights, strict=True)
        ],
        "parts": {"lora": merged.recipe, "prompt": prompt_recipe},
        "environment": environment(params.torch_device),
    }
    return HybridResult(
        parts=[("lora", merged.adapter), ("prompt", prompt)],
        recipe=recipe,
        modules=merged.modules,
        summary=merged.summary,
    )


def _compose_ia3(adapters: Sequence[Input], weights: Sequence[float], params: CompositionParams) -> CompositionResult:
    """IA3 inputs under a weighted sum stay IA3, as PEFT's add_weighted_adapter mixes them: each
    module's scaling vector is the weighted sum of the inputs' vectors (inputs without the module add
    nothing). Exact by construction, so every module reports no error."""
    ia3 = [a for a in adapters if isinstance(a, FamilyAdapter)]
    first = ia3[0]
    check_same_base(ia3)
    summed: dict[str, Tensor] = {}
    for adapter, weight in zip(ia3, weights, strict=True):
        for module, vector in adapter.ia3_vectors().items():
            value = vector.to(torch.float32) * weight
            if module in summed and summed[module].shape != value.shape:
                raise CompositionError(
                    "config_mismatch",
                    f"module {module!r} scales {'inputs' if value.shape[0] == 1 else 'outputs'} in "
                    f"{adapter.reference} but not in another input (feedforward_modules differ)",
                )
            summed[module] = summed[module] + value if module in summed else value
    out_dtype = params.output_dtype(first.dtype)
    tensors = {f"{PEFT_PREFIX}{m}.ia3_l": v.to(out_dtype).contiguous() for m, v in sorted(summed.items())}
    config = dict(first.config)
    config["target_modules"] = sorted({str(t) for a in ia3 for t in (a.config.get("target_modules") or [])}) or list(
        summed
    )
    config["feedforward_modules"] = sorted({str(t) for a in ia3 for t in (a.config.get("feedforward_modules") or [])})
    config["inference_mode"] = True
    reports = tuple(
        ModuleReport(module=m, rank=0, input_ranks=(0,) * len(ia3), retained_energy=1.0, relative_error=0.0,
                     truncated=False)
        for m in sorted(summed)
    )  # fmt: skip
    recipe = Recipe(
        library="composer",
        version=VERSION,
        method=params.spec.name,
        parameters=params.recorded(out_dtype),
        seed=None,
        inputs=tuple(
            RecipeInput(reference=a.reference, weight=w, sha256=a.sha256) for a, w in zip(ia3, weights, strict=True)
        ),
        base_model=first.base_model,
        revision=first.revision,
        environment=environment(torch.device("cpu")),
    ).to_dict(reports)
    result = LoraAdapter.from_tensors(config, tensors, reference=f"composition:{params.spec.name}", recipe=recipe)
    return CompositionResult(adapter=result, modules=reports, recipe=recipe)


def compose_expression(expression: str, **params: Any) -> CompositionResult | HybridResult:
    """Compose the adapter folders named in `expression` with the weights it gives (method "expr").

    The hub resolves `ns/name[:version]` references itself: it calls `parse_expression`, loads
    the adapters, then `compose(inputs, method="expr", expression=expression)`.
    """
    inputs = [(load_lora(reference, reference=reference), weight) for reference, weight in parse_expression(expression)]
    return compose(inputs, method="expr", expression=expression, **params)


def _normalize_inputs(inputs: Sequence[InputItem], base: BaseView | None) -> tuple[list[Input], list[float]]:
    adapters: list[Input] = []
    weights: list[float] = []
    if isinstance(inputs, (str, bytes)) or not inputs:
        raise CompositionError("bad_input", "inputs must be a non-empty sequence of (adapter or folder, weight) pairs")
    for position, item in enumerate(inputs):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise CompositionError("bad_input", f"input {position} must be an (adapter or folder, weight) pair")
        source, weight = item
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise CompositionError("bad_input", f"weight of input {position} must be a finite number, got {weight!r}")
        adapters.append(as_adapter(source, base))
        weights.append(float(weight))
    return adapters, weights


def _drop_base_copies(adapter: Input, base: BaseView) -> None:
    """Forget an input's copies of base tensors that equal the base (PEFT saves e.g.
    `embed_tokens.base_layer.weight` beside an embedding LoRA): they change nothing, so they need
    not agree with the other inputs' extra tensors."""
    kept = []
    for key in adapter.extra_keys:
        stem, _, part = key.removeprefix(PEFT_PREFIX).rpartition(".")
        module = stem.removesuffix(".base_layer")
        try:
            weight, bias = base.weight(module, torch.device("cpu"))
        except CompositionError:
            kept.append(key)
            continue
        stored = adapter.tensor(key).to(torch.float32)
        same = weight if part == "weight" else bias
        if same is None or stored.shape != same.shape or not torch.equal(stored, same):
            kept.append(key)
    adapter.extra_keys = tuple(kept)


def _input_rank(adapter: Input, module: str, shape: ModuleShape) -> int:
    """The rank an input brings to a module: its factors', a dense delta's full rank, 0 when absent."""
    if isinstance(adapter, LoraAdapter):
        return adapter.modules[module].rank if module in adapter.modules else 0
    if module not in adapter.modules:
        return 0
    rank = adapter.nominal_rank(module)
    return rank if rank is not None else min(shape.d_out, shape.d_in)


def _exact_factors(dense: Tensor) -> tuple[Tensor, Tensor]:
    """B, A with B @ A == dense up to round-off: its SVD, cut where singular values vanish."""
    with single_threaded():
        u, s, vh = torch.linalg.svd(dense, full_matrices=False)
    keep = max(1, int((s > s[0] * 1e-7).sum())) if s.numel() and float(s[0]) > 0 else 1
    root = s[:keep].sqrt()
    return u[:, :keep] * root, root[:, None] * vh[:keep]


def _input_terms(
    module: str, adapters: Sequence[Input], weights: Sequence[float], device: torch.device
) -> tuple[list[ScaledFactors], list[tuple[float, Tensor, Tensor | None]]]:
    """Each present input's delta at `module`: LoRA factors and exact factors of other methods as
    ScaledFactors, dense deltas as (weight, delta, bias change)."""
    factors: list[ScaledFactors] = []
    dense: list[tuple[float, Tensor, Tensor | None]] = []
    for adapter, weight in zip(adapters, weights, strict=True):
        if module not in adapter.modules:
            continue
        if isinstance(adapter, LoraAdapter):
            b, a, bias = adapter.factors(module, device)
            scaling = adapter.scaling(module)
            factors.append(ScaledFactors(b=b, a=a, coefficient=weight * scaling, scaling=scaling, bias=bias))
            continue
        delta = adapter.delta(module, device)
        if delta.dense is not None:
            dense.append((weight, delta.dense, delta.bias))
        else:
            assert delta.b is not None and delta.a is not None
            factors.append(ScaledFactors(b=delta.b, a=delta.a, coefficient=weight, scaling=1.0, bias=delta.bias))
    return factors, dense


def _merge_module(
    module: str,
    shape: ModuleShape,
    adapters: Sequence[Input],
    weights: Sequence[float],
    params: CompositionParams,
    device: torch.device,
) -> tuple[LowRankDelta, Tensor | None]:
    """Merge one module; inputs without it contribute nothing (a zero delta)."""
    spec = params.spec
    factors, dense = _input_terms(module, adapters, weights, device)
    nominal = [f.a.shape[0] for f in factors]
    auto = params.rank == "auto" or (params.rank is None and not nominal)  # dense deltas only: keep `energy`
    asked = params.rank if isinstance(params.rank, int) else None
    target_rank = None if auto else (asked or max(nominal))
    energy = params.energy if auto else None
    # Element-wise methods draw with the request's seed; the SVD of a dense sum draws with the default one.
    seed = params.effective_seed if params.effective_seed is not None else DEFAULT_SEED

    if dense and spec.name in ("linear", "expr"):
        # A weighted sum with dense deltas: summed as matrices, then one low-rank SVD of the sum,
        # whose error against it is exact (no per-input factorisation of full-rank deltas).
        merged = torch.zeros(shape.d_out, shape.d_in, device=device)
        for f in factors:
            merged.addmm_(f.b * f.coefficient, f.a)
        for weight, matrix, _ in dense:
            merged.add_(matrix, alpha=weight)
        low = refactor_dense(
            merged,
            rank=target_rank,
            energy=energy,
            max_rank=min(shape.d_out, shape.d_in),
            generator=_generator(seed, module, "svd", device),
        )
        biases = [f.coefficient * f.bias for f in factors if f.bias is not None]
        biases += [weight * bias for weight, _, bias in dense if bias is not None]
        return low, torch.stack(biases).sum(dim=0) if biases else None
    for weight, matrix, bias in dense:  # other methods see every input as (exact) factors
        b, a = _exact_factors(matrix)
        factors.append(ScaledFactors(b=b, a=a, coefficient=weight, scaling=1.0, bias=bias))
    if not auto and params.rank is None:  # the largest input rank, dense inputs' exact factors included
        target_rank = max(f.a.shape[0] for f in factors)

    if spec.kind == "factored":
        low = spec.merge(factors, rank=target_rank, energy=energy) if spec.uses_rank else spec.merge(factors)
        return low, combined_bias(factors)

    kwargs: dict[str, Any] = {"density": params.density}
    if spec.uses_sign_method:
        kwargs["majority_sign_method"] = params.majority_sign_method
    weight_tensor = torch.tensor([f.coefficient / f.scaling for f in factors], dtype=torch.float32, device=device)

    d_out, d_in = factors[0].b.shape[0], factors[0].a.shape[1]
    deltas = torch.empty((len(factors), d_out, d_in), dtype=torch.float32, device=device)  # (n, d_out, d_in)
    for slot, f in zip(deltas, factors, strict=True):
        torch.mm(f.b * f.scaling, f.a, out=slot)  # the task vector dW_i; the method applies the weight
    if spec.uses_seed:
        kwargs["generator"] = _generator(seed, module, "mask", device)
    merged = spec.merge(deltas, weight_tensor, **kwargs)  # (d_out, d_in)
    del deltas
    low = refactor_dense(
        merged,
        rank=target_rank,
        energy=energy,
        max_rank=sum(f.a.shape[0] for f in factors),
        generator=_generator(seed, module, "svd", device),
    )
    del merged
    bias = None
    if any(f.bias is not None for f in factors):
        effective = torch.stack(
            [f.bias * f.scaling if f.bias is not None else torch.zeros(d_out, device=device) for f in factors]
        )  # (n, d_out): the effective bias each task adds
        if spec.uses_seed:
            kwargs["generator"] = _generator(seed, module, "bias_mask", device)
        bias = spec.merge(effective, weight_tensor, **kwargs)
    return low, bias


def _generator(seed: int, module: str, purpose: str, device: torch.device) -> torch.Generator:
    """A generator seeded from (seed, module, purpose): modules draw independently and reproducibly."""
    digest = hashlib.sha256(f"{seed}/{module}/{purpose}".encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "big") & ((1 << 63) - 1))


def _module_tensors(
    module: str, shape: ModuleShape, low: LowRankDelta, bias: Tensor | None, dtype: torch.dtype
) -> dict[str, Tensor]:
    """PEFT state-dict entries of one output module, in the output dtype, on the CPU."""
    t = low.rank
    b, a = low.b, low.a  # (d_out, t), (t, d_in)
    if shape.kind == "conv":
        kernel_ones = (1,) * (len(shape.in_shape) - 1)
        b = b.reshape(shape.d_out, t, *kernel_ones)
        a = a.reshape(t, *shape.in_shape)
    prefix = f"{PEFT_PREFIX}{module}"
    if shape.kind == "embedding":
        keys = {f"{prefix}.lora_embedding_A": a, f"{prefix}.lora_embedding_B": b}
    else:
        keys = {f"{prefix}.lora_A.weight": a, f"{prefix}.lora_B.weight": b}
        if bias is not None:
            keys[f"{prefix}.lora_B.bias"] = bias
    return {key: value.to(device="cpu", dtype=dtype).contiguous() for key, value in keys.items()}


# Config fields reset in the output: they describe how the inputs were trained or initialised,
# and PEFT would re-run some initialisations (LoftQ, EVA, ...) when loading.
_NEUTRAL_FIELDS: dict[str, Any] = {
    "use_rslora": False,
    "use_dora": False,
    "init_lora_weights": True,
    "inference_mode": True,
    "lora_dropout": 0.0,
    "layers_to_transform": None,
    "layers_pattern": None,
    "exclude_modules": None,
    "loftq_config": {},
    "eva_config": None,
    "corda_config": None,
    "lora_ga_config": None,
}


def build_output_config(adapters: Sequence[Input], compat: Compatibility, ranks: dict[str, int]) -> dict[str, Any]:
    """adapter_config.json of the composed adapter.

    Source scaling is folded into the factors, so every module runs at scaling 1: lora_alpha = r,
    and modules whose rank differs from the common one get matching rank_pattern and
    alpha_pattern entries keyed by their full module name.
    """
    loras = [a for a in adapters if isinstance(a, LoraAdapter)]
    # Another method's config says nothing a LoRA config needs (and holds fields LoraConfig rejects).
    config: dict[str, Any] = dict(loras[0].config) if loras else {"bias": "none", "modules_to_save": None}
    for field, value in _NEUTRAL_FIELDS.items():
        if field in config or field in ("use_rslora", "use_dora"):
            config[field] = value
    counts = Counter(ranks.values())
    default_rank = max(counts, key=lambda r: (counts[r], r))
    rank_pattern = {module: r for module, r in ranks.items() if r != default_rank}
    config.update(
        peft_type="LORA",
        r=default_rank,
        lora_alpha=default_rank,
        rank_pattern=rank_pattern,
        alpha_pattern=dict(rank_pattern),
        target_modules=_target_modules(adapters, compat),
        base_model_name_or_path=compat.base_model,
        revision=compat.revision,
        fan_in_fan_out=compat.fan_in_fan_out,
        task_type=compat.task_type,
    )
    if compat.has_bias or "lora_bias" in config:
        config["lora_bias"] = compat.has_bias
    if not compat.extra_keys:
        config["modules_to_save"] = None
        config["bias"] = "none"
    for module, rank in ranks.items():
        resolved = match_pattern(rank_pattern, module)
        # Full names could in principle be a dotted suffix of another module's name.
        assert (resolved if resolved is not None else default_rank) == rank, f"rank_pattern misresolves {module}"
    return config


def _target_modules(adapters: Sequence[Input], compat: Compatibility) -> list[str]:
    """Union of the inputs' target lists when that reaches exactly the written modules, else exact names."""
    simple = all(
        isinstance(a.config.get("target_modules"), list)
        and not a.config.get("layers_to_transform")
        and not a.config.get("exclude_modules")
        for a in adapters
    )
    if simple:
        union = sorted({str(name) for a in adapters for name in a.config["target_modules"]})
        if all(any(m == t or m.endswith("." + t) for t in union) for m in compat.modules):
            return union
    return list(compat.modules)

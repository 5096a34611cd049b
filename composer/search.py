"""Auto-composition: a gradient-free search over the weights of a LoRA combination, scored on examples.

LoraHub (Huang et al. 2023, https://arxiv.org/abs/2307.13269) searches the weights w of a combination of
LoRA adapters with a black-box optimiser, scoring each candidate on a few examples of the target task.
Here a candidate is exact: its delta is the weighted sum of the inputs' deltas, sum_i w_i s_i B_i A_i
(never an average of the A and B factors taken separately, whose cross terms LoraHub inherits from PEFT).

Optimiser: CMA-ES from `cmaes` (CyberAgent) — numpy only, an ask/tell loop the caller owns (so the budget is
exact), native box bounds and one seed for every random draw; nevergrad (LoraHub's NGOpt) brings a dozen
dependencies and its own budget accounting, optuna is a study framework around this same `cmaes`.

    search, held_out = split_examples(examples, 0.5, seed=0)      # the search never sees held_out
    with LoraCombination(loaded.model, [load_lora(p) for p in folders]) as combination:
        score = suite_scorer(loaded, combination, "exact_match", search)
        result = search_weights(len(folders), score, budget=40, seed=0)
    result.best.weights, result.best.score, result.trace

Steps of `search_weights`:
    1. Score the start point (default: uniform weights 1/n), so the best found is never worse on the
       scored examples than the uniform combination.
    2. Run CMA-ES from there (sigma a tenth of the bounds' width), scoring every candidate it asks for;
       a generation is told back only once all of its candidates are scored; the last, partial one is not.
    3. Stop after exactly `budget` calls of `score`; the best candidate is the first with the best score.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from cmaes import CMA  # type: ignore[import-untyped]
from torch import Tensor, nn

from composer.errors import CompositionError
from composer.evaluation import (
    EvaluationError,
    Kind,
    LoadedModel,
    _encode,
    _mergeable,
    _sequence_logprobs,
    score_examples,
)
from composer.io import LoraAdapter

Weights = tuple[float, ...]
Score = Callable[[Weights], float]
OnCandidate = Callable[[int, "Candidate"], None]
Objective = Literal["loss", "metric"]

DEFAULT_BOUNDS = (-1.5, 1.5)  # LoraHub's


@dataclass(frozen=True)
class Candidate:
    """One scored point of a search."""

    weights: Weights
    score: float


@dataclass(frozen=True)
class SearchResult:
    """The best candidate (the first of the best score) and every candidate in the order scored."""

    best: Candidate
    trace: tuple[Candidate, ...]
    higher_is_better: bool = True

    @property
    def weights(self) -> Weights:
        return self.best.weights

    @property
    def score(self) -> float:
        return self.best.score


def uniform_weights(n: int) -> Weights:
    """1/n each: the plain average of the inputs' deltas."""
    return tuple([1.0 / n] * n)


def search_weights(
    n: int,
    score: Score,
    *,
    budget: int,
    bounds: tuple[float, float] = DEFAULT_BOUNDS,
    seed: int = 0,
    higher_is_better: bool = True,
    start: Sequence[float] | None = None,
    sigma: float | None = None,
    on_candidate: OnCandidate | None = None,
) -> SearchResult:
    """Search the weights of an n-input combination that score best, with CMA-ES.

    Args:
        n: number of inputs (weights per candidate).
        score: score(weights) -> float, e.g. `suite_scorer(...)`; NaN counts as the worst score.
        budget: calls of `score`, exactly (the start point included).
        bounds: (low, high) for every weight; every candidate lies inside.
        seed: CMA-ES's seed; the same seed and scores give the same candidates.
        higher_is_better: False for losses such as perplexity.
        start: first candidate and CMA-ES's initial mean (default: 1/n each), clipped into the bounds.
        sigma: CMA-ES's initial step size (default: a tenth of the bounds' width, 0.3 for LoraHub's:
            +-3 sigma around the start covers most of the box; 0.5 did worse in bench/autocompose.py).
        on_candidate: called as on_candidate(index, candidate) after each score (progress, leases).

    Returns:
        A `SearchResult` with the best candidate and the trace of all `budget` candidates.

    See https://arxiv.org/abs/2307.13269 (LoraHub) and https://arxiv.org/abs/1604.00772 (CMA-ES).
    """
    low, high = bounds
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise CompositionError("bad_input", f"a search needs at least one input, got n={n!r}")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise CompositionError("bad_input", f"budget must be a positive number of evaluations, got {budget!r}")
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise CompositionError("bad_input", f"bounds must be finite with low < high, got {bounds!r}")
    first = np.array(uniform_weights(n) if start is None else list(start), dtype=np.float64)
    if first.shape != (n,) or not np.all(np.isfinite(first)):
        raise CompositionError("bad_input", f"start must be {n} finite weights, got {start!r}")
    first = np.clip(first, low, high)
    step = (high - low) / 10 if sigma is None else sigma
    if not (math.isfinite(step) and step > 0):
        raise CompositionError("bad_input", f"sigma must be positive, got {sigma!r}")

    trace: list[Candidate] = []
    sign = -1.0 if higher_is_better else 1.0  # CMA-ES minimises

    def evaluate(x: np.ndarray) -> float:
        weights = tuple(float(w) for w in np.clip(x, low, high))
        value = float(score(weights))
        trace.append(Candidate(weights, value))
        if on_candidate is not None:
            on_candidate(len(trace) - 1, trace[-1])
        return sign * value if math.isfinite(value) else math.inf

    evaluate(first)
    # Bounds repeated per weight, (n, 2); cmaes resamples a candidate outside them, then repairs it.
    box = np.array([[low, high]] * n)
    optimizer = CMA(mean=first, sigma=step, bounds=box, seed=seed)
    while len(trace) < budget:
        size = min(optimizer.population_size, budget - len(trace))
        asked = [optimizer.ask() for _ in range(size)]
        told = [(x, evaluate(x)) for x in asked]
        if size == optimizer.population_size:  # cmaes takes whole generations only
            optimizer.tell(told)
        if optimizer.should_stop():  # the distribution collapsed: restart around the best so far
            best = _best(trace, higher_is_better)
            optimizer = CMA(mean=np.array(best.weights), sigma=step, bounds=box, seed=seed + len(trace))
    return SearchResult(best=_best(trace, higher_is_better), trace=tuple(trace), higher_is_better=higher_is_better)


def _best(trace: Sequence[Candidate], higher_is_better: bool) -> Candidate:
    def key(candidate: Candidate) -> float:
        if not math.isfinite(candidate.score):
            return -math.inf
        return candidate.score if higher_is_better else -candidate.score

    return max(trace, key=key)  # max keeps the first of equals: the start point wins ties


# --- Applying a weighted combination to a loaded model ----------------------------------------------


@dataclass(frozen=True)
class _Module:
    name: str
    layer: nn.Linear
    original: Tensor  # the base weight, (d_out, d_in), as loaded
    b_cat: Tensor  # (d_out, R): every input's B scaled by its own alpha/r, side by side
    a_cat: Tensor  # (R, d_in): every input's A stacked
    owner: Tensor  # (R,): which input each of the R rank columns belongs to
    original_bias: Tensor | None
    biases: Tensor | None  # (n, d_out): each input's lora_B bias times its scaling, zero where it has none


class LoraCombination:
    """The inputs' LoRA factors read once, applied to a loaded base model with any weights.

    `applied(weights)` adds sum_i w_i s_i B_i A_i (and the weighted lora_B biases) into the base's
    Linear weights, yields the model, and restores the base weights bitwise from a copy taken once,
    so candidates cost one small matmul per module, neither a base reload nor a re-read of the inputs.
    Only inputs the evaluation workers merge (plain LoRA on Linear layers) are accepted.
    """

    def __init__(self, model: nn.Module, adapters: Sequence[LoraAdapter]) -> None:
        if not adapters:
            raise CompositionError("bad_input", "a combination needs at least one adapter")
        for adapter in adapters:
            if not _mergeable(adapter, model):
                raise EvaluationError(
                    "unsupported_for_eval",
                    f"{adapter.reference}: only plain LoRA adapters on Linear layers can be searched "
                    "(no DoRA, fan_in_fan_out, embeddings, convolutions or saved modules)",
                )
        self.model = model
        self.n = len(adapters)
        layers = dict(model.named_modules())
        self._modules: list[_Module] = []
        with torch.no_grad():
            for name in sorted({m for adapter in adapters for m in adapter.modules}):
                layer = layers[name]
                assert isinstance(layer, nn.Linear), f"{name} is not a Linear layer"
                device = layer.weight.device
                b_blocks, a_blocks, owners, biases = [], [], [], []
                has_bias = False
                for index, adapter in enumerate(adapters):
                    if name not in adapter.modules:
                        biases.append(torch.zeros(layer.out_features, device=device))
                        continue
                    b, a, bias = adapter.factors(name, device=device)  # (d_out, r), (r, d_in), (d_out,)
                    scaling = adapter.scaling(name)
                    if (b.shape[0], a.shape[1]) != tuple(layer.weight.shape):
                        raise EvaluationError(
                            "shape_mismatch",
                            f"{name}: {adapter.reference}'s delta is {(b.shape[0], a.shape[1])}, "
                            f"the weight {tuple(layer.weight.shape)}",
                        )
                    b_blocks.append(b * scaling)
                    a_blocks.append(a)
                    owners.append(torch.full((a.shape[0],), index, dtype=torch.long, device=device))
                    has_bias |= bias is not None
                    biases.append(bias * scaling if bias is not None else torch.zeros(b.shape[0], device=device))
                self._modules.append(
                    _Module(
                        name=name,
                        layer=layer,
                        original=layer.weight.detach().clone(),
                        b_cat=torch.cat(b_blocks, dim=1),
                        a_cat=torch.cat(a_blocks, dim=0),
                        owner=torch.cat(owners),
                        original_bias=layer.bias.detach().clone() if has_bias and layer.bias is not None else None,
                        biases=torch.stack(biases) if has_bias else None,
                    )
                )

    def __enter__(self) -> LoraCombination:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.restore()

    def deltas(self, weights: Sequence[float]) -> dict[str, Tensor]:
        """sum_i w_i s_i B_i A_i per module in fp32, (d_out, d_in) each (for tests and reports)."""
        w = self._weights(weights)
        return {m.name: (m.b_cat * w[m.owner]) @ m.a_cat for m in self._modules}

    @contextlib.contextmanager
    def applied(self, weights: Sequence[float]) -> Iterator[nn.Module]:
        """The model with the weighted combination merged in; the base weights are restored after."""
        w = self._weights(weights)
        try:
            with torch.no_grad():
                for m in self._modules:
                    delta = (m.b_cat * w[m.owner]) @ m.a_cat  # (d_out, R) @ (R, d_in): the exact weighted sum
                    # One pass: weight = original + delta, as merged_lora's weight.add_(delta) computes it.
                    torch.add(m.original, delta.to(m.original.dtype), out=m.layer.weight)
                    if m.biases is not None and m.original_bias is not None:
                        bias = w.to(m.biases.device) @ m.biases  # (n,) @ (n, d_out)
                        torch.add(m.original_bias, bias.to(m.original_bias.dtype), out=m.layer.bias)
            yield self.model
        finally:
            self.restore()

    def restore(self) -> None:
        """Put the base weights back exactly as they were loaded."""
        with torch.no_grad():
            for m in self._modules:
                m.layer.weight.copy_(m.original)
                if m.original_bias is not None:
                    m.layer.bias.copy_(m.original_bias)

    def _weights(self, weights: Sequence[float]) -> Tensor:
        if len(weights) != self.n:
            raise CompositionError("bad_input", f"{len(weights)} weights for {self.n} inputs")
        device = self._modules[0].b_cat.device if self._modules else torch.device("cpu")
        return torch.tensor([float(x) for x in weights], dtype=torch.float32, device=device)


# --- Scoring on a suite's examples ------------------------------------------------------------------


def suite_scorer(
    loaded: LoadedModel,
    combination: LoraCombination,
    kind: Kind,
    examples: Sequence[dict[str, Any]],
    *,
    objective: Objective = "loss",
    batch_size: int = 16,
    max_new_tokens: int = 16,
) -> Score:
    """score(weights) on `examples` with those weights applied; higher is better either way.

    objective="loss" (LoraHub's): minus the mean negative log-likelihood per token of what the suite
    expects (exact_match: the answer and end of text after the prompt; multiple_choice: the right
    choice; perplexity: the text), one forward pass per batch, smooth in the weights.
    objective="metric": the suite's own metric as composer.evaluation scores it (accuracy or exact
    match, a step function of the weights; perplexity negated).
    """
    if not examples:
        raise EvaluationError("bad_suite", "no examples to search on")
    if objective not in ("loss", "metric"):
        raise CompositionError("bad_input", f"objective must be 'loss' or 'metric', got {objective!r}")
    if kind == "classification":
        raise EvaluationError("unsuitable_suite", "classification suites need a head the search does not combine")
    targets = _loss_targets(loaded, kind, examples) if objective == "loss" else []

    def score(weights: Weights) -> float:
        with combination.applied(weights) as model:
            if objective == "loss":
                return -_mean_nll(loaded, model, targets, batch_size)
            value, _, _ = score_examples(
                loaded, model, kind, examples, batch_size=batch_size, max_new_tokens=max_new_tokens
            )
        return -value if kind == "perplexity" else value

    return score


def _loss_targets(loaded: LoadedModel, kind: Kind, examples: Sequence[dict[str, Any]]) -> list[tuple[list[int], int]]:
    """(tokens, index of the first scored token) per example: what the suite expects after its prompt."""
    tokenizer = loaded.tokenizer
    targets = []
    for ex in examples:
        if kind == "perplexity":
            targets.append((_encode(tokenizer, ex["text"], eos=True), 1))
            continue
        prompt = _encode(tokenizer, ex["prompt"], eos=False)
        expected = str(ex["answer"]) if kind == "exact_match" else ex["choices"][ex["answer"]]
        # An exact match needs the answer and then the end of text (generation stops there).
        answer = _encode(tokenizer, expected, eos=kind == "exact_match", bos=False)
        targets.append((prompt + answer, len(prompt)))
    return targets


def _mean_nll(loaded: LoadedModel, model: nn.Module, targets: list[tuple[list[int], int]], batch_size: int) -> float:
    order = sorted(range(len(targets)), key=lambda i: len(targets[i][0]))
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            sums, counts = _sequence_logprobs(
                model,
                loaded.device,
                [targets[i][0] for i in batch],
                [targets[i][1] for i in batch],
                loaded.tokenizer.pad_token_id,
            )
            total -= sum(sums)
            count += sum(counts)
    return total / max(count, 1)


# --- A search split that never moves ----------------------------------------------------------------


def split_examples(
    examples: Sequence[dict[str, Any]], search_fraction: float, seed: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(search, held_out): a split that depends on the examples' contents, not their order.

    Each distinct example (by its canonical JSON) is ranked by sha256(seed, JSON); the first
    round(search_fraction * distinct) go to the search split (at least one, and at least one left
    out when there are two or more). Duplicates of an example always fall on the same side, so a
    held-out example is never seen by the search; each side keeps the input order.
    """
    if not 0.0 < search_fraction < 1.0:
        raise CompositionError("bad_input", f"search_fraction must be in (0, 1), got {search_fraction!r}")
    keys = [json.dumps(ex, sort_keys=True, ensure_ascii=False, separators=(",", ":")) for ex in examples]
    distinct = sorted(set(keys), key=lambda k: hashlib.sha256(f"{seed}\n{k}".encode()).hexdigest())
    count = round(search_fraction * len(distinct))
    count = max(1, min(count, len(distinct) - 1)) if len(distinct) >= 2 else len(distinct)
    chosen = set(distinct[:count])
    search = [ex for ex, key in zip(examples, keys, strict=True) if key in chosen]
    held_out = [ex for ex, key in zip(examples, keys, strict=True) if key not in chosen]
    return search, held_out

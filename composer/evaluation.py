"""Scoring adapters on eval suites: perplexity, exact match and multiple choice (pure PyTorch).

The base model stays loaded across jobs (`BaseModelCache`); an adapter is applied by merging its
delta into the affected weights, which are restored afterwards, so one forward pass costs what
the base model costs. Adapters that cannot be merged that way (IA3, prompt tuning, DoRA, ...)
go through PEFT on a copy of the base model.
"""

from __future__ import annotations

import contextlib
import copy
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from composer.bitfit import PEFT_TYPE as BITFIT
from composer.bitfit import apply_bitfit
from composer.hybrid import HYBRID_FILE, apply_hybrid
from composer.io import load_lora

Kind = Literal["perplexity", "exact_match", "multiple_choice", "classification"]
KINDS: tuple[Kind, ...] = ("perplexity", "exact_match", "multiple_choice", "classification")
METRICS: dict[Kind, str] = {
    "perplexity": "perplexity",
    "exact_match": "exact_match",
    "multiple_choice": "accuracy",
    "classification": "accuracy",
}


class EvaluationError(ValueError):
    """An evaluation that cannot run: bad data, a missing base model, an unusable adapter.

    `code` is stable (bad_suite, base_model_unavailable, shape_mismatch) for the hub's API.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class EvalOutcome:
    metric: str
    value: float
    samples: int
    tokens: int
    seconds: float
    device: str
    # The base model's weights as evaluated: "fp32", "bf16" or "nf4" (4-bit); scores are compared
    # only at one precision.
    precision: str = "fp32"
    # Further metrics of the same run (classification: macro_f1).
    details: dict[str, float] = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass
class LoadedModel:
    model: Any  # a transformers PreTrainedModel
    tokenizer: Any
    device: torch.device
    precision: str = "fp32"


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


class BaseModelCache:
    """Loaded base models, least recently used evicted first, so workers load each model once."""

    def __init__(self, capacity: int = 2) -> None:
        self.capacity = capacity
        self.loads = 0
        self._models: OrderedDict[tuple[str, str, str], LoadedModel] = OrderedDict()

    def get(
        self, path: Path, device: torch.device, *, quantize: str | None = None, num_labels: int | None = None
    ) -> LoadedModel:
        key = (str(path), str(device), f"{quantize or ''}:{num_labels or ''}")
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        loaded = load_base_model(path, device, quantize=quantize, num_labels=num_labels)
        self.loads += 1
        self._models[key] = loaded
        while len(self._models) > self.capacity:
            _, evicted = self._models.popitem(last=False)
            del evicted
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        return loaded

    def __len__(self) -> int:
        return len(self._models)


def load_base_model(
    path: Path, device: torch.device, *, quantize: str | None = None, num_labels: int | None = None
) -> LoadedModel:
    """A causal LM and its tokenizer from a local folder (never from the network); with
    num_labels, the same base with a sequence-classification head of that many classes (the
    adapter's saved head replaces it when applied).

    quantize="4bit" loads the weights in 4-bit NF4 with bitsandbytes, as QLoRA adapters were
    trained; that needs CUDA and the optional bitsandbytes package, and without them the model
    loads unquantised. The precision used is recorded on the result either way.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    if not (path / "config.json").is_file():
        raise EvaluationError("base_model_unavailable", f"{path} has no config.json")
    # bf16 halves GPU memory; on CPU fp32 is both faster and exact.
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    precision = "bf16" if device.type == "cuda" else "fp32"
    options: dict[str, Any] = {"dtype": dtype, "local_files_only": True}
    if quantize == "4bit" and device.type == "cuda" and _has_bitsandbytes():
        from transformers import BitsAndBytesConfig

        options["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
        options["device_map"] = {"": device.index or 0}
        precision = "nf4"
    # Typed as a Module: transformers wraps PreTrainedModel.to with functools.wraps, which its
    # typing turns into an unbound function (the device would be taken for `self`).
    if num_labels is not None:
        pretrained: nn.Module = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=num_labels, **options
        )
    else:
        pretrained = AutoModelForCausalLM.from_pretrained(path, **options)
    model = (pretrained if precision == "nf4" else pretrained.to(device)).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model=model, tokenizer=tokenizer, device=device, precision=precision)


def _has_bitsandbytes() -> bool:
    import importlib.util

    return importlib.util.find_spec("bitsandbytes") is not None


# --- Applying an adapter ------------------------------------------------------------------------


def _mergeable(adapter: Any, model: nn.Module) -> bool:
    config = adapter.config
    if adapter.peft_type != "LORA" or config.get("use_dora") or config.get("fan_in_fan_out"):
        return False
    modules = dict(model.named_modules())
    for name, entry in adapter.modules.items():
        target = modules.get(name)
        if not isinstance(target, nn.Linear) or entry.shape.kind != "linear":
            return False
        if entry.bias_key is not None and target.bias is None:
            return False
    return not adapter.extra_keys


@contextlib.contextmanager
def merged_lora(model: nn.Module, adapter_dir: Path) -> Iterator[nn.Module]:
    """The model with the LoRA delta W += s·B·A merged in; the touched weights are restored after.

    Only the affected modules' weights are copied, so applying an adapter costs its own size in
    memory, not the model's.
    """
    adapter = load_lora(adapter_dir)
    modules = dict(model.named_modules())
    saved: list[tuple[Tensor, Tensor]] = []
    try:
        with torch.no_grad():
            for name in adapter.modules:
                layer = modules[name]
                b, a, bias = adapter.factors(name, device=layer.weight.device)
                delta = (b @ a) * adapter.scaling(name)  # (d_out, d_in)
                if delta.shape != layer.weight.shape:
                    raise EvaluationError(
                        "shape_mismatch",
                        f"{name}: the adapter's delta is {tuple(delta.shape)}, the weight {tuple(layer.weight.shape)}",
                    )
                saved.append((layer.weight, layer.weight.detach().clone()))
                layer.weight.add_(delta.to(layer.weight.dtype))
                if bias is not None:
                    saved.append((layer.bias, layer.bias.detach().clone()))
                    layer.bias.add_(bias.to(layer.bias.dtype))
        yield model
    finally:
        with torch.no_grad():
            for parameter, original in saved:
                parameter.copy_(original)
        adapter.close()


@contextlib.contextmanager
def applied_adapter(model: nn.Module, adapter_dir: Path | None) -> Iterator[nn.Module]:
    """The base model (adapter_dir None), with a merged LoRA, or a PEFT model on a copy."""
    if adapter_dir is None:
        yield model
        return
    if (adapter_dir / HYBRID_FILE).is_file():  # its parts in order, on a copy: the cached base stays clean
        yield apply_hybrid(copy.deepcopy(model), adapter_dir)
        return
    adapter = load_lora(adapter_dir)
    mergeable = _mergeable(adapter, model)
    bitfit = adapter.config.get("peft_type") == BITFIT
    adapter.close()
    if bitfit:  # the hub's own format: biases set on a copy, so the cached base stays clean
        yield apply_bitfit(copy.deepcopy(model), adapter_dir)
        return
    if mergeable:
        with merged_lora(model, adapter_dir) as merged:
            yield merged
        return
    from peft import PeftModel

    # PEFT injects its layers in place: work on a copy so the cached base stays clean.
    peft_model = PeftModel.from_pretrained(copy.deepcopy(model), adapter_dir, is_trainable=False).eval()
    try:
        yield peft_model
    finally:
        del peft_model


# --- Metrics --------------------------------------------------------------------------------------


# Told (items done, items in all) after each batch: a worker renews its job's lease with it, so a long
# evaluation is never taken for a dead one, and a hung one stops renewing.
OnBatch = Callable[[int, int], None]


def _batches(order: Sequence[int], size: int, on_batch: OnBatch | None = None) -> Iterator[list[int]]:
    for start in range(0, len(order), size):
        yield list(order[start : start + size])
        if on_batch is not None:  # runs once the caller has processed the batch
            on_batch(min(start + size, len(order)), len(order))


def _autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _sequence_logprobs(
    model: nn.Module, device: torch.device, sequences: list[list[int]], scored_from: list[int], pad_id: int
) -> tuple[list[float], list[int]]:
    """For each token sequence, the summed log-probability of its tokens from `scored_from[i]` on,
    and how many tokens that is. Right-padded batch, one forward pass."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    ids, mask = ids.to(device), mask.to(device)
    with _autocast(device):
        logits = model(input_ids=ids, attention_mask=mask).logits
    # Prompt and p-tuning put their virtual tokens in front: the last `width` positions are the input's.
    logits = logits[:, -width:]
    logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # (batch, width-1, vocab)
    token_logprobs = logprobs.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # (batch, width-1)
    totals, counts = [], []
    for row, seq in enumerate(sequences):
        start = max(scored_from[row], 1)
        # Position p of token_logprobs predicts token p+1.
        totals.append(float(token_logprobs[row, start - 1 : len(seq) - 1].sum()))
        counts.append(len(seq) - start)
    return totals, counts


def perplexity(
    loaded: LoadedModel,
    model: nn.Module,
    examples: Sequence[dict[str, Any]],
    batch_size: int,
    on_batch: OnBatch | None = None,
) -> tuple[float, int]:
    tokenizer = loaded.tokenizer
    encoded = [_encode(tokenizer, ex["text"], eos=True) for ex in examples]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    nll, count = 0.0, 0
    for batch in _batches(order, batch_size, on_batch):
        totals, counts = _sequence_logprobs(
            model, loaded.device, [encoded[i] for i in batch], [1] * len(batch), tokenizer.pad_token_id
        )
        nll -= sum(totals)
        count += sum(counts)
    if count == 0:
        raise EvaluationError("bad_suite", "the perplexity suite has no text with at least two tokens")
    return math.exp(nll / count), sum(len(e) for e in encoded)


def multiple_choice(
    loaded: LoadedModel,
    model: nn.Module,
    examples: Sequence[dict[str, Any]],
    batch_size: int,
    on_batch: OnBatch | None = None,
) -> tuple[float, int]:
    """Accuracy of picking the choice with the highest log-likelihood after the prompt."""
    tokenizer = loaded.tokenizer
    pairs: list[tuple[int, int, list[int], int]] = []  # (example, choice, tokens, prompt length)
    for index, ex in enumerate(examples):
        prompt = _encode(tokenizer, ex["prompt"], eos=False)
        for choice_index, choice in enumerate(ex["choices"]):
            pairs.append((index, choice_index, prompt + _encode(tokenizer, choice, eos=False, bos=False), len(prompt)))
    scores: dict[tuple[int, int], float] = {}
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][2]))
    for batch in _batches(order, batch_size, on_batch):
        totals, _ = _sequence_logprobs(
            model, loaded.device, [pairs[i][2] for i in batch], [pairs[i][3] for i in batch], tokenizer.pad_token_id
        )
        for i, total in zip(batch, totals, strict=True):
            scores[(pairs[i][0], pairs[i][1])] = total
    correct = 0
    for index, ex in enumerate(examples):
        best = max(range(len(ex["choices"])), key=lambda c: scores[(index, c)])
        correct += int(best == ex["answer"])
    return correct / len(examples), sum(len(p[2]) for p in pairs)


def exact_match(
    loaded: LoadedModel,
    model: nn.Module,
    examples: Sequence[dict[str, Any]],
    batch_size: int,
    max_new_tokens: int,
    on_batch: OnBatch | None = None,
) -> tuple[float, int]:
    """Greedy decoding, left-padded batches; an answer matches when equal after trimming spaces."""
    # The model is a causal LM or a PEFT model around one; nn.Module's typing knows no generate.
    generate: Callable[..., Tensor] = getattr(model, "generate")  # noqa: B009  (nn.Module declares no generate)
    tokenizer = loaded.tokenizer
    prompts = [_encode(tokenizer, ex["prompt"], eos=False) for ex in examples]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    correct, tokens = 0, 0
    for batch in _batches(order, batch_size, on_batch):
        width = max(len(prompts[i]) for i in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, width - len(prompts[i]) :] = torch.tensor(prompts[i])
            mask[row, width - len(prompts[i]) :] = 1
        with _autocast(loaded.device):
            generated = generate(
                input_ids=ids.to(loaded.device),
                attention_mask=mask.to(loaded.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        new_tokens = generated[:, width:]
        tokens += int(mask.sum()) + int((new_tokens != tokenizer.pad_token_id).sum())
        for row, i in enumerate(batch):
            text = tokenizer.decode(new_tokens[row], skip_special_tokens=True)
            correct += int(text.strip() == str(examples[i]["answer"]).strip())
    return correct / len(examples), tokens


def classification(
    loaded: LoadedModel,
    model: nn.Module,
    examples: Sequence[dict[str, Any]],
    batch_size: int,
    on_batch: OnBatch | None = None,
) -> tuple[float, int, dict[str, float]]:
    """Accuracy of a sequence-classification model's predicted class (and macro-F1 over the
    labels the suite uses), right-padded batches."""
    tokenizer = loaded.tokenizer
    encoded = [_encode(tokenizer, ex["text"], eos=True) for ex in examples]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    predicted: dict[int, int] = {}
    for batch in _batches(order, batch_size, on_batch):
        width = max(len(encoded[i]) for i in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
            mask[row, : len(encoded[i])] = 1
        with _autocast(loaded.device):
            logits = model(input_ids=ids.to(loaded.device), attention_mask=mask.to(loaded.device)).logits
        for row, i in enumerate(batch):
            predicted[i] = int(logits[row].argmax())
    labels = [int(ex["label"]) for ex in examples]
    guesses = [predicted[i] for i in range(len(examples))]
    accuracy = sum(g == t for g, t in zip(guesses, labels, strict=True)) / len(examples)
    return accuracy, sum(len(e) for e in encoded), {"macro_f1": _macro_f1(labels, guesses)}


def head_classes(adapter_dir: Path) -> int | None:
    """How many classes the sequence-classification head an adapter saved has (PEFT saves the head
    through modules_to_save: `classifier.out_proj`, `classifier` or `score`), or None."""
    from safetensors import safe_open

    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        return None
    with safe_open(str(weights), "pt") as f:
        for name in f.keys():  # noqa: SIM118  (safe_open is no dict)
            if re.search(r"(^|\.)(classifier(\.out_proj)?|score)\.weight$", name):
                return int(f.get_slice(name).get_shape()[0])
    return None


def _macro_f1(labels: Sequence[int], guesses: Sequence[int]) -> float:
    scores = []
    for label in sorted(set(labels)):
        tp = sum(t == label and g == label for t, g in zip(labels, guesses, strict=True))
        fp = sum(t != label and g == label for t, g in zip(labels, guesses, strict=True))
        fn = sum(t == label and g != label for t, g in zip(labels, guesses, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores)


def _encode(tokenizer: Any, text: str, *, eos: bool, bos: bool = True) -> list[int]:
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if bos and tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id, *ids]
    if eos and tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return ids


def score_examples(
    loaded: LoadedModel,
    model: nn.Module,
    kind: Kind,
    examples: Sequence[dict[str, Any]],
    *,
    batch_size: int = 16,
    max_new_tokens: int = 16,
    on_batch: OnBatch | None = None,
) -> tuple[float, int, dict[str, float]]:
    """(value, tokens, details) of `model` as it is (an adapter already applied) on a suite's examples;
    the scoring `evaluate` runs, for callers that apply weights themselves (composer.search)."""
    with torch.no_grad():
        if kind == "perplexity":
            value, tokens = perplexity(loaded, model, examples, batch_size, on_batch)
        elif kind == "multiple_choice":
            value, tokens = multiple_choice(loaded, model, examples, batch_size, on_batch)
        elif kind == "classification":
            return classification(loaded, model, examples, batch_size, on_batch)
        else:
            value, tokens = exact_match(loaded, model, examples, batch_size, max_new_tokens, on_batch)
    return value, tokens, {}


def evaluate(
    loaded: LoadedModel,
    adapter_dir: Path | None,
    kind: Kind,
    examples: Sequence[dict[str, Any]],
    *,
    batch_size: int = 16,
    max_new_tokens: int = 16,
    on_batch: OnBatch | None = None,
) -> EvalOutcome:
    """Score the base model with the adapter at `adapter_dir` (None: the base alone) on a suite;
    `on_batch(done, total)` is called after each batch."""
    if kind not in KINDS:
        raise EvaluationError("bad_suite", f"unknown suite kind {kind!r}; use one of {', '.join(KINDS)}")
    if not examples:
        raise EvaluationError("bad_suite", "the suite has no examples")
    started = time.perf_counter()
    with torch.no_grad(), applied_adapter(loaded.model, adapter_dir) as model:
        value, tokens, details = score_examples(
            loaded, model, kind, examples, batch_size=batch_size, max_new_tokens=max_new_tokens, on_batch=on_batch
        )
    if loaded.device.type == "cuda":
        torch.cuda.synchronize(loaded.device)
    return EvalOutcome(
        metric=METRICS[kind],
        value=value,
        samples=len(examples),
        tokens=tokens,
        seconds=time.perf_counter() - started,
        device=device_name(loaded.device),
        precision=loaded.precision,
        details=details,
    )


# --- Suite files ----------------------------------------------------------------------------------

MAX_TEXT_CHARS = 20_000


def parse_suite(raw: bytes, kind: str, *, max_examples: int = 100_000) -> list[dict[str, Any]]:
    """The examples of a JSONL suite file, checked line by line for the fields its kind needs.

    perplexity: {"text": str}; exact_match: {"prompt": str, "answer": str};
    classification: {"text": str, "label": class index};
    multiple_choice: {"prompt": str, "choices": [str, str, ...], "answer": index of the right choice}.
    """
    import json

    if kind not in KINDS:
        raise EvaluationError("bad_suite", f"unknown suite kind {kind!r}; use one of {', '.join(KINDS)}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EvaluationError("bad_suite", f"the suite file is not UTF-8 (byte {exc.start})") from None
    examples: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(examples) >= max_examples:
            raise EvaluationError("bad_suite", f"the suite has more than {max_examples} examples")
        try:
            example = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvaluationError("bad_suite", f"line {number} is not JSON: {exc.msg}") from None
        if not isinstance(example, dict):
            raise EvaluationError("bad_suite", f"line {number} must be a JSON object")
        _check_example(example, kind, number)
        examples.append(example)
    if not examples:
        raise EvaluationError("bad_suite", "the suite file has no examples")
    return examples


def _check_example(example: dict[str, Any], kind: str, line: int) -> None:
    def text_field(name: str) -> None:
        value = example.get(name)
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT_CHARS:
            raise EvaluationError(
                "bad_suite",
                f"line {line}: {kind} examples need a non-empty string {name!r} (at most {MAX_TEXT_CHARS} characters)",
            )

    if kind == "perplexity":
        text_field("text")
    elif kind == "classification":
        text_field("text")
        label = example.get("label")
        if isinstance(label, bool) or not isinstance(label, int) or label < 0:
            raise EvaluationError("bad_suite", f"line {line}: 'label' must be a class index (an integer >= 0)")
    elif kind == "exact_match":
        text_field("prompt")
        text_field("answer")
    else:
        text_field("prompt")
        choices = example.get("choices")
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
            raise EvaluationError("bad_suite", f"line {line}: 'choices' must list at least two non-empty strings")
        answer = example.get("answer")
        if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
            raise EvaluationError(
                "bad_suite", f"line {line}: 'answer' must be the index of the right choice (0 to {len(choices) - 1})"
            )

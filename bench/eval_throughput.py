"""Eval throughput: the hub's eval path against PEFT on the very same batches, and against the bare base.

Every side scores one LoRA adapter (r=16, alpha=32, on q_proj and v_proj, or --targets) on one random-text
perplexity suite, with one model (a Llama built from a config, random weights), one dtype (fp32
on CPU, bf16 weights plus bf16 autocast on CUDA), one thread count, and the same batches: all
sides go through composer.evaluation's own scoring (examples sorted by length, right-padded
batches of --batch-size, no grad, its autocast), so they differ only in how the adapter is applied:

    ours          composer.evaluation.evaluate as the hub runs it: the delta W += s*B*A merged into
                  the base weights, which are restored afterwards.
    peft          the honest peer: PeftModel.from_pretrained (adapter kept in the model's dtype),
                  scored unmerged on the same batches, then unload().
    peft-merged   PEFT's fastest inference: from_pretrained, then merge_and_unload(), same batches.
                  merge_and_unload destroys its base, so this side runs on a copy of the base made
                  before the clock starts (a server would reload the base per adapter: not charged).
    base          the bare base model, no adapter, same batches (evaluate with no adapter): the
                  physical limit of any merged adapter.
    naive         (only with --sides ...,naive) the old baseline: PEFT unmerged with batches of one
                  example. Batching, not adapter handling, is most of its gap; never the headline.

Each side's clock covers a whole job: applying the adapter (loading its file), tokenising,
scoring, and leaving the base clean; on CUDA it synchronises before starting and before stopping.
Every side is warmed up first (untimed, on the shortest and the longest batch), then measured in
--rounds interleaved rounds whose order rotates each round. Printed: tokens/s per side (median,
min, max over rounds; real tokens, padding not counted), perplexity (ours and PEFT must agree),
and paired per-round ratios min / median / max: ours/base (target >= 0.90) and ours/peft
(target >= 1.3x), plus ours/peft-merged and ours/naive where measured.

    python bench/eval_throughput.py                       # ~33M-parameter Llama, CPU: ~3-4 min on 2 idle cores
    python bench/eval_throughput.py --threads 1           # every side on one thread (busy machines)
    python bench/eval_throughput.py --examples 16 --rounds 2 --sides ours,peft,base   # smoke, ~40 s
    python bench/eval_throughput.py --size 1b --device cuda --examples 512            # ~1.1B (TinyLlama shape)

Nothing is downloaded: the tokenizer is a word-level one built in memory, the model comes from a
transformers config with random weights (throughput does not depend on the values).
"""

from __future__ import annotations

import argparse
import copy
import gc
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from composer.evaluation import LoadedModel, _mergeable, evaluate, perplexity, pick_device  # noqa: E402
from composer.io import load_lora  # noqa: E402

SIZES = {
    "small": dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8, vocab_size=8000),
    "1b": dict(
        hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32, vocab_size=32000
    ),
}
SIDES = ("ours", "peft", "peft-merged", "base", "naive")
LABELS = {
    "ours": "ours (merged in place, batched)",
    "peft": "PEFT unmerged, same batches",
    "peft-merged": "PEFT merge_and_unload, same batches",
    "base": "bare base, no adapter, same batches",
    "naive": "extra: naive PEFT, batch of 1",
}
TARGETS = {"base": 0.90, "peft": 1.3}

# A side, given the examples, does its untimed preparation and returns the timed job, which
# returns (perplexity, tokens).
Job = Callable[[], tuple[float, int]]
Side = Callable[[Sequence[dict[str, str]]], Job]


def word_tokenizer(vocab_size: int) -> object:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {token: i for i, token in enumerate([*specials, *(f"w{i}" for i in range(vocab_size - len(specials)))])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def build(size: str, device: torch.device, folder: Path, targets: list[str] | str) -> tuple[LoadedModel, Path, float]:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        **SIZES[size], num_key_value_heads=SIZES[size]["num_attention_heads"], max_position_embeddings=2048
    )
    torch.manual_seed(0)
    # As the hub loads base models (composer.evaluation.load_base_model): bf16 on CUDA, fp32 on CPU.
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    precision = "bf16" if device.type == "cuda" else "fp32"
    model = LlamaForCausalLM(config).to(dtype=dtype, device=device).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e9
    peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=targets, init_lora_weights=False))
    peft_model.save_pretrained(folder / "adapter")
    base = peft_model.unload()  # the pristine base, LoRA layers removed
    return (
        LoadedModel(model=base, tokenizer=word_tokenizer(config.vocab_size), device=device, precision=precision),
        folder / "adapter",
        params,
    )


def make_sides(loaded: LoadedModel, adapter: Path, batch_size: int, seen: dict[str, str]) -> dict[str, Side]:
    """The sides; each job runs on the shared base and leaves it as it found it."""
    from peft import PeftModel

    def ours(examples: Sequence[dict[str, str]]) -> Job:
        def job() -> tuple[float, int]:
            outcome = evaluate(loaded, adapter, "perplexity", examples, batch_size=batch_size)
            return outcome.value, outcome.tokens

        return job

    def base(examples: Sequence[dict[str, str]]) -> Job:
        def job() -> tuple[float, int]:
            outcome = evaluate(loaded, None, "perplexity", examples, batch_size=batch_size)
            return outcome.value, outcome.tokens

        return job

    def peft_unmerged(examples: Sequence[dict[str, str]], size: int) -> Job:
        def job() -> tuple[float, int]:
            # autocast_adapter_dtype=False: the LoRA weights stay in the model's dtype (PEFT's default
            # upcasts them to fp32 on a bf16 model), so every side computes in the same dtype.
            model = PeftModel.from_pretrained(loaded.model, adapter, autocast_adapter_dtype=False).eval()
            try:
                if "PEFT LoRA weights" not in seen:  # recorded once, in the untimed warm-up
                    lora = next(p.dtype for n, p in model.named_parameters() if "lora_" in n)
                    seen["PEFT LoRA weights"] = str(lora).removeprefix("torch.")
                with torch.no_grad():  # the very scoring function ours runs: same batches, same autocast
                    return perplexity(loaded, model, examples, size)
            finally:
                model.unload()  # takes the LoRA layers out of the shared base again

        return job

    def peft_merged(examples: Sequence[dict[str, str]]) -> Job:
        # merge_and_unload writes into its base for good: it gets a private copy, made off the clock.
        private_base = copy.deepcopy(loaded.model)

        def job() -> tuple[float, int]:
            model = PeftModel.from_pretrained(private_base, adapter, autocast_adapter_dtype=False).eval()
            merged = model.merge_and_unload()
            with torch.no_grad():
                return perplexity(loaded, merged, examples, batch_size)

        return job

    return {
        "ours": ours,
        "peft": lambda examples: peft_unmerged(examples, batch_size),
        "peft-merged": peft_merged,
        "base": base,
        "naive": lambda examples: peft_unmerged(examples, 1),
    }


def timed(side: Side, device: torch.device, examples: Sequence[dict[str, str]]) -> tuple[float, float, int]:
    """(seconds, perplexity, tokens) of one job; on CUDA, synchronised before either clock reading."""
    job = side(examples)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    value, tokens = job()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    del job
    gc.collect()
    return seconds, value, tokens


def spread(values: Sequence[float], fmt: str) -> str:
    return f"{format(min(values), fmt)} / {format(statistics.median(values), fmt)} / {format(max(values), fmt)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=list(SIZES), default="small")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--examples", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved measured rounds (order rotates)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads for every side")
    parser.add_argument(
        "--targets",
        default="q_proj,v_proj",
        help="the LoRA's target modules (comma-separated); all-linear = every projection, as QLoRA recipes do",
    )
    parser.add_argument(
        "--sides",
        default="ours,peft,peft-merged,base",
        help=f"comma-separated, from {', '.join(SIDES)} (ours is always measured)",
    )
    args = parser.parse_args()
    names = ["ours", *(s for s in dict.fromkeys(args.sides.split(",")) if s and s != "ours")]
    unknown = [s for s in names if s not in SIDES]
    if unknown:
        parser.error(f"unknown side(s) {', '.join(unknown)}; use {', '.join(SIDES)}")
    if args.rounds < 1 or args.examples < 1 or args.batch_size < 1:
        parser.error("--rounds, --examples and --batch-size must be at least 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    device = pick_device(args.device)
    seen: dict[str, str] = {}
    times: dict[str, list[float]] = {name: [] for name in names}
    values: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        targets = "all-linear" if args.targets == "all-linear" else args.targets.split(",")
        loaded, adapter, params = build(args.size, device, Path(tmp), targets)
        # ours must take the hub's merge path, not its PEFT fallback, or this measures PEFT twice.
        lora = load_lora(adapter)
        mergeable = _mergeable(lora, loaded.model)
        lora.close()
        if not mergeable:
            raise SystemExit("the adapter would not be merged by composer.evaluation: nothing to compare")
        rng = random.Random(0)
        vocab = loaded.tokenizer.vocab_size - 4
        examples = [
            {"text": " ".join(f"w{rng.randrange(vocab)}" for _ in range(rng.randint(32, 256)))}
            for _ in range(args.examples)
        ]
        # Warm-up on the shortest and the longest batch, so every shape range and code path
        # (imports, allocator, kernels) has been seen once before any clock runs.
        by_length = sorted(examples, key=lambda ex: len(ex["text"].split()))
        warmup = by_length[: args.batch_size] + by_length[args.batch_size :][-args.batch_size :]
        sides = make_sides(loaded, adapter, args.batch_size, seen)
        tokens = 0
        for name in names:
            timed(sides[name], device, warmup)
        for round_ in range(args.rounds):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                seconds, value, count = timed(sides[name], device, examples)
                if tokens and count != tokens:
                    raise SystemExit(f"{name} scored {count} tokens, the others {tokens}")
                tokens = count
                times[name].append(seconds)
                values[name] = value
            print(f"round {round_ + 1}/{args.rounds}: {' -> '.join(order)}", file=sys.stderr, flush=True)

    autocast = "bf16 autocast" if device.type == "cuda" else "no autocast"
    print(
        f"model: Llama {args.size} ({params:.2f} B parameters), {loaded.precision} weights, {autocast}, "
        f"device {device}, {torch.get_num_threads()} CPU threads; LoRA r=16 on {args.targets}"
    )
    print(
        f"suite: {len(examples)} examples, {tokens} tokens, batches of {args.batch_size} sorted by length; "
        f"{args.rounds} interleaved round{'s' if args.rounds > 1 else ''} after a warm-up"
        + (f"; {', '.join(f'{k} {v}' for k, v in seen.items())}" if seen else "")
    )
    tps = {name: [tokens / s for s in times[name]] for name in names}
    print(f"{'side':<13}{'what':<38}{'median s':>10}{'tokens/s min / median / max':>32}{'perplexity':>13}")
    for name in names:
        print(
            f"{name:<13}{LABELS[name]:<38}{statistics.median(times[name]):>10.2f}"
            f"{spread(tps[name], '.0f'):>32}{values[name]:>13.3f}"
        )
    print("paired per-round ratios of tokens/s, min / median / max:")
    for peer in names[1:]:
        ratios = [a / b for a, b in zip(tps["ours"], tps[peer], strict=True)]
        target = TARGETS.get(peer)
        verdict = ""
        if target is not None:
            verdict = (
                f"   target >= {target:.2f}: {'met' if statistics.median(ratios) >= target else 'NOT met'} (median)"
            )
        print(f"  ours / {peer:<12} {spread(ratios, '.3f')}{verdict}")
    for peer in ("peft", "peft-merged", "naive"):
        if peer in values:
            print(f"perplexity ours vs {peer}: {abs(values['ours'] - values[peer]) / values[peer]:.1e} relative")


if __name__ == "__main__":
    main()

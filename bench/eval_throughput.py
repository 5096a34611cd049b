"""Eval throughput: the hub's eval path against a naive per-example PEFT loop, side by side.

Both score the same LoRA adapter on the same random-text perplexity suite with the same model:
- ours: the adapter's delta merged into the weights, examples sorted by length and batched,
  no grad, bf16 autocast on CUDA (composer.evaluation.evaluate);
- naive: PeftModel.from_pretrained, then one forward pass per example.

    python bench/eval_throughput.py                  # a ~60M-parameter Llama, CPU-friendly
    python bench/eval_throughput.py --size 1b        # ~1.1B parameters (TinyLlama shape), for a GPU
    python bench/eval_throughput.py --device cuda --examples 512

Models are built from a config with random weights: throughput does not depend on the values.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from composer.evaluation import LoadedModel, evaluate, pick_device  # noqa: E402

SIZES = {
    "small": dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8, vocab_size=8000),
    "1b": dict(
        hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32, vocab_size=32000
    ),
}


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


def build(size: str, device: torch.device, folder: Path) -> tuple[LoadedModel, Path, float]:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        **SIZES[size], num_key_value_heads=SIZES[size]["num_attention_heads"], max_position_embeddings=2048
    )
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = LlamaForCausalLM(config).to(dtype=dtype, device=device).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e9
    peft_model = get_peft_model(
        model, LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    peft_model.save_pretrained(folder / "adapter")
    base = peft_model.unload()  # the pristine base, LoRA layers removed
    return (
        LoadedModel(model=base, tokenizer=word_tokenizer(config.vocab_size), device=device),
        folder / "adapter",
        params,
    )


def naive_peft_loop(loaded: LoadedModel, adapter: Path, examples: list[dict[str, str]]) -> tuple[float, int, float]:
    from peft import PeftModel

    model = PeftModel.from_pretrained(loaded.model, adapter).eval()
    tokenizer = loaded.tokenizer
    tokens, nll = 0, 0.0
    started = time.perf_counter()
    with torch.no_grad():
        for example in examples:
            ids = [
                tokenizer.bos_token_id,
                *tokenizer(example["text"], add_special_tokens=False)["input_ids"],
                tokenizer.eos_token_id,
            ]
            batch = torch.tensor([ids], device=loaded.device)
            loss = model(input_ids=batch, labels=batch).loss
            nll += float(loss) * (len(ids) - 1)
            tokens += len(ids)
    if loaded.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    model.unload()
    return seconds, tokens, float(torch.exp(torch.tensor(nll / (tokens - len(examples)))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=list(SIZES), default="small")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--examples", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    device = pick_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        loaded, adapter, params = build(args.size, device, Path(tmp))
        rng = random.Random(0)
        vocab = loaded.tokenizer.vocab_size - 4
        examples = [
            {"text": " ".join(f"w{rng.randrange(vocab)}" for _ in range(rng.randint(32, 256)))}
            for _ in range(args.examples)
        ]
        evaluate(loaded, adapter, "perplexity", examples[:4], batch_size=args.batch_size)  # warm-up
        ours = evaluate(loaded, adapter, "perplexity", examples, batch_size=args.batch_size)
        naive_seconds, naive_tokens, naive_ppl = naive_peft_loop(loaded, adapter, examples)

    naive_tps = naive_tokens / naive_seconds
    print(
        f"model: Llama {args.size} ({params:.2f} B parameters), device {ours.device}, {len(examples)} examples, LoRA r=16 on q,v"
    )
    print(f"{'path':<34}{'seconds':>10}{'tokens':>10}{'tokens/s':>12}{'perplexity':>14}")
    print(
        f"{'ours (merged, batched, sorted)':<34}{ours.seconds:>10.2f}{ours.tokens:>10}{ours.tokens_per_second:>12.0f}{ours.value:>14.2f}"
    )
    print(
        f"{'naive PEFT loop (per example)':<34}{naive_seconds:>10.2f}{naive_tokens:>10}{naive_tps:>12.0f}{naive_ppl:>14.2f}"
    )
    print(
        f"speed-up: {ours.tokens_per_second / naive_tps:.2f}x  (same perplexity within {abs(ours.value - naive_ppl) / naive_ppl:.1e} relative)"
    )


if __name__ == "__main__":
    main()

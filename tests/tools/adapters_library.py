"""Run with the `adapters` library's own interpreter (.venv-adapters, see the Makefile): AdapterHub's
library pins an older transformers than the hub's, so it cannot share the hub's environment.

  adapters_library.py save OUT NAME=KIND...   build the tiny bases, save one adapter per NAME
  adapters_library.py push OUT NAME=KIND...   push_adapter_to_hub OUT/NAME to HF_ENDPOINT as alice/NAME-p2h
  adapters_library.py load OUT REPO=KIND...   load each REPO from HF_ENDPOINT, save its logits

KIND is `llama-<config>` (double_seq_bn, seq_bn, par_bn, seq_bn_inv, lora), `gpt2-<config>` or
`roberta-head` (a bottleneck adapter with a classification head). `save` writes OUT/bases/<family>/
(the base model each adapter is trained on, saved with save_pretrained), OUT/<NAME>/ (as
`save_adapter(..., use_safetensors=True)` writes it), OUT/<NAME>-pickle/ (as it writes it by default)
and OUT/<NAME>.logits.safetensors (the in-memory model's outputs on PROMPT). `push` loads the saved
adapter as a user would and pushes it with the library's own push_adapter_to_hub, which (adapters
1.3.0) always saves pickles: what the hub answered goes to OUT/<NAME>-p2h.answer.txt. `load` writes
OUT/<org>--<name>.loaded.safetensors.
"""

from __future__ import annotations

import sys
from pathlib import Path

import adapters
import torch
from adapters import AutoAdapterModel
from huggingface_hub.errors import HfHubHTTPError
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, RobertaConfig

PROMPT = torch.tensor([[1, 5, 9, 17, 33, 65, 2, 4]])
# The names the hub registers these bases under (tests/factories.py, tests/tools' callers).
BASE_NAMES = {"llama": "hub-test/tiny-llama", "gpt2": "hub-test/tiny-gpt2", "roberta": "hub-test/tiny-roberta"}


def build_base(family: str):
    """The tiny base model of `family`; the Llama one is tests.factories.tiny_llama's config."""
    torch.manual_seed(0)
    if family == "llama":
        config = LlamaConfig(
            vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=4, max_position_embeddings=64,
        )  # fmt: skip
        return LlamaForCausalLM(config)
    if family == "gpt2":
        return GPT2LMHeadModel(GPT2Config(vocab_size=128, n_embd=32, n_layer=2, n_head=2, n_positions=64))
    config = RobertaConfig(
        vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=40, pad_token_id=0, type_vocab_size=1,
    )  # fmt: skip
    return AutoAdapterModel.from_config(config)


def base_folder(out: Path, family: str) -> Path:
    """OUT/bases/<family>/, and the bare base's logits beside it (a head-less RoBERTa has none)."""
    folder = out / "bases" / family
    if not folder.exists():
        model = build_base(family).eval()
        model.save_pretrained(folder)
        if family != "roberta":
            save_file({"logits": outputs(model).contiguous()}, out / "bases" / f"{family}.logits.safetensors")
    return folder


def load_base(out: Path, family: str):
    folder = base_folder(out, family)
    if family == "roberta":
        model = AutoAdapterModel.from_pretrained(folder)
    else:
        model = (LlamaForCausalLM if family == "llama" else GPT2LMHeadModel).from_pretrained(folder)
        adapters.init(model)
    # What the library records as the adapter's model_name: the id the user loaded the base from.
    model.config.name_or_path = BASE_NAMES[family]
    return model.eval()


def outputs(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=PROMPT).logits


def save(out: Path, name: str, kind: str) -> None:
    family, config = kind.split("-", 1)
    model = load_base(out, family)
    if family == "roberta":
        model.add_adapter(name, config="seq_bn")
        model.add_classification_head(name, num_labels=3)
    else:
        model.add_adapter(name, config=config)
    model.train_adapter(name)
    torch.manual_seed(7)
    with torch.no_grad():  # trained weights: off their near-identity initialisation
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    model.set_active_adapters(name)
    model.eval()
    model.save_adapter(str(out / name), name, use_safetensors=True)
    model.save_adapter(str(out / f"{name}-pickle"), name)
    save_file({"logits": outputs(model).contiguous()}, out / f"{name}.logits.safetensors")


def push(out: Path, name: str, kind: str) -> None:
    model = load_base(out, kind.split("-", 1)[0])
    loaded = model.load_adapter(str(out / name), use_safetensors=True)
    try:
        model.push_adapter_to_hub(f"alice/{name}-p2h", loaded)
        answer = "pushed"
    except HfHubHTTPError as exc:
        answer = f"{exc.response.status_code} {exc.response.headers.get('X-Error-Code')}: {exc}"
    (out / f"{name}-p2h.answer.txt").write_text(answer)


def load(out: Path, repo: str, kind: str) -> None:
    model = load_base(out, kind.split("-", 1)[0])
    loaded = model.load_adapter(repo, source="hf", set_active=True, use_safetensors=True)
    model.set_active_adapters(loaded)
    model.eval()
    save_file({"logits": outputs(model).contiguous()}, out / f"{repo.replace('/', '--')}.loaded.safetensors")


def main() -> None:
    command, out, *pairs = sys.argv[1:]
    for pair in pairs:
        name, kind = pair.split("=", 1)
        {"save": save, "push": push, "load": load}[command](Path(out), name, kind)


if __name__ == "__main__":
    main()

"""Real PEFT adapters built from a tiny Llama, and byte-level helpers to corrupt them.

Everything is cached per test session and handed out as ``{filename: bytes}`` so each test can
mutate its own copy without touching disk.
"""

from __future__ import annotations

import functools
import io
import json
import os
import struct
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from adaptercheck import CONFIG_NAME, WEIGHTS_NAME
from demo.tiny_llama import tiny_llama_config

BASE_NAME = "tests/tiny-llama"


def tiny_config() -> Any:
    # Fewer key/value heads than attention heads so k_proj/v_proj (32x64) differ from q_proj (64x64).
    return tiny_llama_config(hidden_size=64, intermediate_size=128, num_key_value_heads=2, max_position_embeddings=2048)


@functools.cache
def base_model() -> Any:
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_config())


@functools.cache
def base_model_files() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        base_model().save_pretrained(tmp)
        return _read_dir(tmp)


def _read_dir(folder: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as handle:
            out[name] = handle.read()
    return out


def _peft_config(kind: str) -> Any:
    import peft

    if kind == "lora":
        return peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    if kind == "rank_pattern":
        return peft.LoraConfig(
            r=4,
            lora_alpha=8,
            target_modules=["q_proj", "v_proj", "down_proj"],
            rank_pattern={"layers.1.self_attn.q_proj": 2, "down_proj": 6},
            alpha_pattern={"down_proj": 12},
            init_lora_weights=False,
        )
    if kind == "rslora":
        return peft.LoraConfig(
            r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], use_rslora=True, init_lora_weights=False
        )
    if kind == "dora":
        return peft.LoraConfig(
            r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], use_dora=True, init_lora_weights=False
        )
    if kind == "embedding":
        return peft.LoraConfig(r=4, lora_alpha=8, target_modules=["embed_tokens", "q_proj"], lora_bias=False)
    if kind == "lora_bias":
        return peft.LoraConfig(r=4, lora_alpha=8, target_modules=["o_proj"], lora_bias=True, init_lora_weights=False)
    if kind == "regex":
        return peft.LoraConfig(
            r=4, lora_alpha=8, target_modules=r".*\.layers\.1\.self_attn\.(k|o)_proj", init_lora_weights=False
        )
    if kind == "modules_to_save":
        return peft.LoraConfig(
            r=4,
            lora_alpha=8,
            target_modules=["q_proj"],
            modules_to_save=["lm_head"],
            trainable_token_indices=[1, 2],
            init_lora_weights=False,
        )
    if kind == "layers":
        return peft.LoraConfig(
            r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], layers_to_transform=[1], exclude_modules=["v_proj"]
        )
    if kind == "ia3":
        return peft.IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"])
    if kind == "prompt_tuning":
        return peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5)
    if kind == "prefix_tuning":
        return peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5)
    if kind == "p_tuning":
        return peft.PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, encoder_hidden_size=32)
    if kind == "loha":
        return peft.LoHaConfig(r=4, alpha=8, target_modules=["q_proj", "v_proj"])
    if kind == "lokr":
        # r=2 is small enough that peft stores lokr_w2 as the decomposed pair lokr_w2_a / lokr_w2_b.
        return peft.LoKrConfig(r=2, alpha=4, target_modules=["q_proj", "down_proj"])
    if kind == "adalora":
        return peft.AdaLoraConfig(
            r=4, init_r=6, target_r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], total_step=10
        )
    if kind == "oft":
        return peft.OFTConfig(r=0, oft_block_size=16, target_modules=["q_proj", "down_proj"])
    if kind == "boft":
        return peft.BOFTConfig(boft_block_size=8, target_modules=["k_proj", "up_proj", "down_proj"])
    if kind == "vera":
        return peft.VeraConfig(r=8, target_modules=["k_proj", "up_proj", "down_proj"], save_projection=True)
    if kind == "fourierft":
        return peft.FourierFTConfig(n_frequency=40, target_modules=["q_proj", "up_proj"])
    if kind == "ln_tuning":
        return peft.LNTuningConfig(target_modules=["input_layernorm", "post_attention_layernorm"])
    if kind == "llama_adapter":
        return peft.AdaptionPromptConfig(task_type="CAUSAL_LM", adapter_len=4, adapter_layers=1)
    raise KeyError(kind)


# The methods that change Linear layers without low-rank factors, and those of whole small layers.
OTHER_PEFT_KINDS = ("oft", "boft", "vera", "fourierft", "ln_tuning", "llama_adapter")


@functools.cache
def _adapter(kind: str) -> tuple[tuple[str, bytes], ...]:
    import peft
    from transformers import LlamaForCausalLM

    torch.manual_seed(1)
    model = LlamaForCausalLM(tiny_config())
    peft_model = peft.get_peft_model(model, _peft_config(kind))
    with tempfile.TemporaryDirectory() as tmp:
        peft_model.save_pretrained(tmp)
        return tuple(_read_dir(tmp).items())


@functools.cache
def _gpt2() -> tuple[tuple[tuple[str, bytes], ...], tuple[tuple[str, bytes], ...]]:
    import peft
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(2)
    model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=64, n_positions=16))
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        base = tuple(_read_dir(tmp).items())
    # GPT-2 uses Conv1D, whose weight is stored (in, out): peft needs fan_in_fan_out=True.
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True, init_lora_weights=False)
    peft_model = peft.get_peft_model(model, config)
    with tempfile.TemporaryDirectory() as tmp:
        peft_model.save_pretrained(tmp)
        return base, tuple(_read_dir(tmp).items())


def gpt2_files() -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(base model checkpoint files, fan_in_fan_out LoRA adapter files) for a tiny GPT-2."""
    base, lora = _gpt2()
    return dict(base), dict(lora)


def adapter(kind: str) -> dict[str, bytes]:
    """A fresh, mutable copy of a real adapter folder saved by peft."""
    return dict(_adapter(kind))


def as_files(contents: Mapping[str, bytes]) -> dict[str, tuple[io.BytesIO, int]]:
    return {name: (io.BytesIO(data), len(data)) for name, data in contents.items()}


def edit_config(contents: dict[str, bytes], change: Callable[[dict[str, Any]], None]) -> dict[str, bytes]:
    config = json.loads(contents[CONFIG_NAME])
    change(config)
    contents[CONFIG_NAME] = json.dumps(config).encode()
    return contents


def edit_weights(contents: dict[str, bytes], change: Callable[[dict[str, torch.Tensor]], None]) -> dict[str, bytes]:
    tensors = dict(st_load(contents[WEIGHTS_NAME]))
    change(tensors)
    contents[WEIGHTS_NAME] = st_save(tensors)
    return contents


def raw_safetensors(header: Any, data: bytes = b"", *, header_bytes: bytes | None = None) -> bytes:
    """A safetensors file with an arbitrary (possibly invalid) header."""
    encoded = header_bytes if header_bytes is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data


def with_weights(raw: bytes, kind: str = "lora") -> dict[str, bytes]:
    contents = adapter(kind)
    contents[WEIGHTS_NAME] = raw
    return contents


def safetensors_header_of(data: bytes) -> dict[str, Any]:
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length])

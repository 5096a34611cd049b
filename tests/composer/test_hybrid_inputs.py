"""Hybrids as inputs of a weighted sum: their weight parts merge into one LoRA (exactly, with the rank
for it), their prompts into one prompt; the result is a hybrid again, valid as the hub checks it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch

from adaptercheck import validate_adapter
from composer import compose
from composer.errors import CompositionError
from composer.hybrid import HybridResult
from tests.composer.test_prompts import prompt_adapter
from tests.factories import make_lora_adapter, tiny_llama


def lora_delta(folder: Path) -> dict[str, torch.Tensor]:
    from peft import PeftModel

    base = tiny_llama().state_dict()
    merged = PeftModel.from_pretrained(tiny_llama(), folder).merge_and_unload().state_dict()
    return {k: merged[k] - base[k] for k in base if not torch.equal(merged[k], base[k])}


def hybrid(folder: Path, seed: int) -> torch.Tensor:
    make_lora_adapter(folder / "lora", seed=seed, readme=None)
    prompt = prompt_adapter(folder / "prompt", seed=seed)
    (folder / "hybrid.json").write_text(json.dumps({"parts": [{"path": "lora"}, {"path": "prompt"}]}))
    return prompt


def test_two_hybrids_sum_part_by_part_into_a_hybrid(tmp_path: Path) -> None:
    first = hybrid(tmp_path / "a", seed=1)
    second = hybrid(tmp_path / "b", seed=2)

    result = compose([(tmp_path / "a", 0.5), (tmp_path / "b", 0.5)], method="linear", rank=8)
    out = result.save(tmp_path / "out")

    assert isinstance(result, HybridResult) and [name for name, _ in result.parts] == ["lora", "prompt"]
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert validate_adapter({n: (io.BytesIO(b), len(b)) for n, b in files.items()}).method == "hybrid"
    expected = {k: 0.5 * v for k, v in lora_delta(tmp_path / "a" / "lora").items()}
    for key, value in lora_delta(tmp_path / "b" / "lora").items():
        expected[key] = expected.get(key, 0) + 0.5 * value
    merged = lora_delta(out / "lora")
    assert merged.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(merged[key], value, rtol=1e-4, atol=1e-6)
    saved = result.parts[1][1].tensor("prompt_embeddings")
    torch.testing.assert_close(saved, 0.5 * first + 0.5 * second)


def test_a_hybrid_and_a_lora_keep_the_one_prompt_as_it_is(tmp_path: Path) -> None:
    prompt = hybrid(tmp_path / "a", seed=1)
    make_lora_adapter(tmp_path / "b", seed=3, readme=None)

    result = compose([(tmp_path / "a", 0.7), (tmp_path / "b", 0.3)], method="expr", rank=8)

    assert isinstance(result, HybridResult)
    out = result.save(tmp_path / "out")
    kept = (out / "prompt" / "adapter_model.safetensors").read_bytes()
    assert kept == (tmp_path / "a" / "prompt" / "adapter_model.safetensors").read_bytes()
    assert prompt.shape[0] == 4
    with pytest.raises(CompositionError) as caught:
        compose([(tmp_path / "a", 0.7), (tmp_path / "b", 0.3)], method="ties", density=0.5)
    assert caught.value.code == "unsupported_method"

"""Reading PEFT adapters lazily and writing standard ones."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

import composer
from composer.io import LoraAdapter
from tests.composer.conftest import MakeAdapter


def test_it_indexes_modules_without_reading_tensors(make_adapter: MakeAdapter) -> None:
    folder = make_adapter("a", 1, r=4, target_modules=["q_proj", "down_proj"])
    adapter = composer.load_lora(folder)
    reads: list[str] = []
    original_get = adapter.source.get
    adapter.source.get = lambda key: reads.append(key) or original_get(key)  # type: ignore[method-assign]
    assert sorted(adapter.modules) == [
        "model.layers.0.mlp.down_proj",
        "model.layers.0.self_attn.q_proj",
        "model.layers.1.mlp.down_proj",
        "model.layers.1.self_attn.q_proj",
    ]
    entry = adapter.modules["model.layers.0.mlp.down_proj"]
    assert (entry.rank, entry.shape.d_out, entry.shape.d_in, entry.shape.kind) == (4, 64, 128, "linear")
    assert reads == []
    b, a, bias = adapter.factors("model.layers.0.mlp.down_proj")
    assert b.shape == (64, 4) and a.shape == (4, 128) and bias is None and b.dtype == torch.float32
    assert len(reads) == 2


def test_it_reads_keys_that_still_carry_the_adapter_name(make_adapter: MakeAdapter) -> None:
    saved = composer.load_lora(make_adapter("a", 1))
    renamed = {
        key.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight"): t
        for key, t in saved.tensors().items()
    }
    adapter = LoraAdapter.from_tensors(saved.config, renamed)
    assert adapter.adapter_names == {"default"}
    assert sorted(adapter.modules) == sorted(saved.modules)


def test_scaling_follows_rank_and_alpha_patterns_and_rslora(make_adapter: MakeAdapter) -> None:
    folder = make_adapter(
        "a", 1, r=8, lora_alpha=16, rank_pattern={"layers.1.self_attn.q_proj": 2}, alpha_pattern={"v_proj": 3}
    )
    adapter = composer.load_lora(folder)
    assert adapter.scaling("model.layers.0.self_attn.q_proj") == 2.0
    assert adapter.scaling("model.layers.1.self_attn.q_proj") == 8.0
    assert adapter.scaling("model.layers.0.self_attn.v_proj") == 3 / 8
    assert adapter.modules["model.layers.1.self_attn.q_proj"].rank == 2
    rs = composer.load_lora(make_adapter("rs", 2, r=16, lora_alpha=8, use_rslora=True))
    assert rs.scaling("model.layers.0.self_attn.q_proj") == pytest.approx(8 / math.sqrt(16))


def test_save_then_load_round_trips_a_result(make_adapter: MakeAdapter, tmp_path: Path) -> None:
    result = composer.compose([(make_adapter("a", 1), 1.0)], method="linear")
    folder = result.save(tmp_path / "out")
    assert sorted(p.name for p in folder.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "composition.json",
    ]
    loaded = composer.load_lora(folder)
    for key, tensor in result.adapter.tensors().items():
        assert torch.equal(loaded.tensor(key), tensor)
    assert json.loads((folder / "composition.json").read_text()) == json.loads(json.dumps(result.recipe))


def test_sha256_is_the_digest_of_the_tensor_file(make_adapter: MakeAdapter) -> None:
    folder = make_adapter("a", 1)
    expected = hashlib.sha256((folder / "adapter_model.safetensors").read_bytes()).hexdigest()
    assert composer.load_lora(folder).sha256 == expected
    assert composer.load_lora(folder, sha256="ab" * 32).sha256 == "ab" * 32


def test_a_safetensors_path_is_accepted_as_well_as_its_folder(make_adapter: MakeAdapter) -> None:
    folder = make_adapter("a", 1)
    assert (
        composer.load_lora(folder / "adapter_model.safetensors").modules.keys()
        == composer.load_lora(folder).modules.keys()
    )

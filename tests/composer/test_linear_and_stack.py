"""stack and linear against real PEFT: load the composed adapter and compare effective deltas and logits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import composer
from tests.composer.conftest import MakeAdapter
from tests.composer.helpers import (
    BASE_NAME,
    effective_deltas,
    exact_sum,
    logits_of_adapter,
    logits_with_deltas,
    relative,
)


@pytest.fixture
def mixed_pair(make_adapter: MakeAdapter) -> tuple[Path, Path]:
    """Different ranks, alphas, target modules, and rsLoRA on one side."""
    first = make_adapter("first", 1, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    second = make_adapter(
        "second", 2, r=8, lora_alpha=4, target_modules=["q_proj", "k_proj", "down_proj"], use_rslora=True
    )
    return first, second


@pytest.mark.parametrize("method", ["stack", "cat"])
def test_stack_loads_in_peft_with_exactly_the_weighted_sum(
    method: str, mixed_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    first, second = mixed_pair
    weights = [0.7, -0.5]
    result = composer.compose([(first, weights[0]), (second, weights[1])], method=method)
    result.save(tmp_path / "out")

    expected = exact_sum([(effective_deltas(first), weights[0]), (effective_deltas(second), weights[1])])
    actual = effective_deltas(tmp_path / "out")
    assert sorted(actual) == sorted(expected)
    for module, (delta, _) in expected.items():
        assert relative(actual[module][0], delta) < 1e-5, module
    torch.testing.assert_close(logits_of_adapter(tmp_path / "out"), logits_with_deltas(expected), rtol=1e-4, atol=1e-5)
    assert {r.module: r.rank for r in result.modules}["model.layers.0.self_attn.q_proj"] == 12


def test_linear_is_exact_when_the_rank_suffices(mixed_pair: tuple[Path, Path], tmp_path: Path) -> None:
    first, second = mixed_pair
    result = composer.compose([(first, 1.5), (second, -0.25)], method="linear", rank=12)
    result.save(tmp_path / "out")

    expected = exact_sum([(effective_deltas(first), 1.5), (effective_deltas(second), -0.25)])
    actual = effective_deltas(tmp_path / "out")
    for module, (delta, _) in expected.items():
        assert relative(actual[module][0], delta) < 1e-5, module
    torch.testing.assert_close(logits_of_adapter(tmp_path / "out"), logits_with_deltas(expected), rtol=1e-4, atol=1e-5)
    assert all(not r.truncated and r.relative_error < 1e-6 for r in result.modules)


def test_linear_truncation_is_the_svd_optimum_and_reports_its_error(
    mixed_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    first, second = mixed_pair
    result = composer.compose([(first, 0.7), (second, 0.5)], method="linear", rank=3)
    result.save(tmp_path / "out")

    expected = exact_sum([(effective_deltas(first), 0.7), (effective_deltas(second), 0.5)])
    actual = effective_deltas(tmp_path / "out")
    reports = {r.module: r for r in result.modules}
    for module, (delta, _) in expected.items():
        u, s, vh = torch.linalg.svd(delta.double())
        optimum = (u[:, :3] * s[:3]) @ vh[:3]
        assert relative(actual[module][0].double(), optimum) < 1e-5, module
        optimal_error = float(s[3:].norm() / s.norm())
        assert reports[module].relative_error == pytest.approx(optimal_error, rel=1e-4)
        assert relative(actual[module][0], delta) == pytest.approx(optimal_error, rel=1e-4)
        assert reports[module].rank == 3 and reports[module].truncated


def test_linear_defaults_to_the_largest_input_rank_per_module(mixed_pair: tuple[Path, Path]) -> None:
    first, second = mixed_pair
    result = composer.compose([(first, 1.0), (second, 1.0)], method="linear")
    ranks = {r.module: r.rank for r in result.modules}
    assert ranks["model.layers.0.self_attn.q_proj"] == 8  # max(4, 8), truncated from 12
    assert ranks["model.layers.0.self_attn.v_proj"] == 4  # only the rank-4 adapter has it
    assert ranks["model.layers.1.mlp.down_proj"] == 8


def test_auto_rank_keeps_the_requested_energy(mixed_pair: tuple[Path, Path]) -> None:
    first, second = mixed_pair
    result = composer.compose([(first, 1.0), (second, 1.0)], method="linear", rank="auto", energy=0.9)
    for report in result.modules:
        assert report.retained_energy >= 0.9 - 1e-9
    assert result.recipe["parameters"]["energy"] == 0.9
    full = composer.compose([(first, 1.0), (second, 1.0)], method="linear", rank="auto", energy=1.0)
    assert all(r.rank == sum(r.input_ranks) for r in full.modules)


def test_a_minus_a_is_zero(make_adapter: MakeAdapter, tmp_path: Path) -> None:
    adapter = make_adapter("a", 1)
    original = effective_deltas(adapter)
    for method in ("stack", "linear"):
        result = composer.compose([(adapter, 1.0), (adapter, -1.0)], method=method)
        result.save(tmp_path / method)
        for module, (delta, _) in effective_deltas(tmp_path / method).items():
            assert float(delta.norm()) < 1e-6 * float(original[module][0].norm()), (method, module)


def test_negative_weight_alone_negates_the_adapter(make_adapter: MakeAdapter, tmp_path: Path) -> None:
    adapter = make_adapter("a", 3, use_rslora=True, r=8, lora_alpha=16)
    result = composer.compose([(adapter, -1.0)], method="linear")
    result.save(tmp_path / "out")
    original = effective_deltas(adapter)
    for module, (delta, _) in effective_deltas(tmp_path / "out").items():
        assert relative(delta, -original[module][0]) < 1e-5


def test_rslora_identity_reproduces_the_logits(make_adapter: MakeAdapter, tmp_path: Path) -> None:
    # PEFT 0.21.2 inherits use_rslora and over-scales by sqrt(r) here (composition-notes.md 1.4).
    adapter = make_adapter("a", 4, use_rslora=True, r=8, lora_alpha=16)
    result = composer.compose([(adapter, 1.0)], method="linear")
    result.save(tmp_path / "out")
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert config["use_rslora"] is False
    torch.testing.assert_close(logits_of_adapter(tmp_path / "out"), logits_of_adapter(adapter), rtol=1e-4, atol=1e-5)


def test_output_config_records_base_ranks_and_union_of_targets(mixed_pair: tuple[Path, Path], tmp_path: Path) -> None:
    first, second = mixed_pair
    result = composer.compose([(first, 1.0), (second, 1.0)], method="stack")
    result.save(tmp_path / "out")
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == BASE_NAME
    assert config["use_rslora"] is False and config["use_dora"] is False
    assert config["target_modules"] == ["down_proj", "k_proj", "q_proj", "v_proj"]
    assert config["r"] == config["lora_alpha"]
    assert config["rank_pattern"] == config["alpha_pattern"]
    ranks = {r.module: r.rank for r in result.modules}
    for module, rank in ranks.items():
        expected = config["rank_pattern"].get(module, config["r"])
        assert expected == rank


def test_svd_compresses_one_adapter_optimally(make_adapter: MakeAdapter, tmp_path: Path) -> None:
    adapter = make_adapter("a", 5, r=8, lora_alpha=16)
    result = composer.compose([(adapter, 1.0)], method="svd", rank=2)
    result.save(tmp_path / "out")
    original = effective_deltas(adapter)
    for module, (delta, _) in effective_deltas(tmp_path / "out").items():
        s = torch.linalg.svdvals(original[module][0].double())
        assert relative(delta, original[module][0]) == pytest.approx(float(s[2:].norm() / s.norm()), rel=1e-4)
        assert delta.shape == original[module][0].shape


def test_bf16_inputs_stay_bf16_and_are_summed_in_fp32(make_adapter: MakeAdapter, tmp_path: Path) -> None:
    first = make_adapter("a", 1, dtype=torch.bfloat16)
    second = make_adapter("b", 2, dtype=torch.bfloat16)
    result = composer.compose([(first, 0.5), (second, 0.5)], method="stack")
    result.save(tmp_path / "out")
    loaded = composer.load_lora(tmp_path / "out")
    assert loaded.dtype == torch.bfloat16
    as_fp32 = composer.compose([(first, 0.5), (second, 0.5)], method="stack", dtype="fp32")
    assert as_fp32.adapter.dtype == torch.float32
    # The only loss is the final rounding to bf16 (8 bits of mantissa).
    a_bf16 = {m: loaded.factors(m) for m in loaded.modules}
    a_fp32 = {m: as_fp32.adapter.factors(m) for m in as_fp32.adapter.modules}
    for module in a_bf16:
        b16, a16, _ = a_bf16[module]
        b32, a32, _ = a_fp32[module]
        assert relative(b16 @ a16, b32 @ a32) < 1e-2


def test_lora_biases_are_folded_exactly(make_adapter: MakeAdapter, tmp_path: Path) -> None:
    # PEFT 0.21.2 drops lora_B biases when combining (composition-notes.md 1.4).
    with_bias = make_adapter("bias", 1, lora_bias=True)
    without = make_adapter("plain", 2, target_modules=["q_proj", "k_proj"])
    result = composer.compose([(with_bias, 0.7), (without, -0.4)], method="linear", rank=8)
    result.save(tmp_path / "out")
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert config["lora_bias"] is True

    expected = exact_sum([(effective_deltas(with_bias), 0.7), (effective_deltas(without), -0.4)])
    actual = effective_deltas(tmp_path / "out")
    for module, (delta, bias) in expected.items():
        assert relative(actual[module][0], delta) < 1e-5
        out_bias = actual[module][1]
        assert out_bias is not None
        if bias is None:
            assert float(out_bias.abs().max()) == 0.0
        else:
            assert relative(out_bias, bias) < 1e-6


def test_identical_modules_to_save_are_carried_over(make_adapter: MakeAdapter, tmp_path: Path) -> None:
    first = make_adapter("a", 1, modules_to_save=["lm_head"])
    second = make_adapter("b", 2, modules_to_save=["lm_head"])
    result = composer.compose([(first, 1.0), (second, 1.0)], method="stack")
    result.save(tmp_path / "out")
    original = composer.load_lora(first)
    composed = composer.load_lora(tmp_path / "out")
    assert composed.extra_keys == original.extra_keys == ("base_model.model.lm_head.weight",)
    torch.testing.assert_close(composed.tensor(composed.extra_keys[0]), original.tensor(original.extra_keys[0]))
    assert composed.config["modules_to_save"] == ["lm_head"]


def test_progress_is_reported_per_module(mixed_pair: tuple[Path, Path]) -> None:
    calls: list[tuple[int, int]] = []
    result = composer.compose(
        [(p, 1.0) for p in mixed_pair], method="linear", progress=lambda d, t: calls.append((d, t))
    )
    total = len(result.modules)
    assert calls == [(done, total) for done in range(1, total + 1)]


def test_recipe_records_inputs_with_digests(mixed_pair: tuple[Path, Path], tmp_path: Path) -> None:
    first, second = mixed_pair
    adapter = composer.load_lora(first, reference="ns/first:3")
    result = composer.compose([(adapter, 0.7), (second, 0.5)], method="linear", rank=4)
    result.save(tmp_path / "out")
    recipe = json.loads((tmp_path / "out" / "composition.json").read_text())
    assert recipe["library"] == {"name": "composer", "version": composer.__version__}
    assert recipe["method"] == "linear"
    assert recipe["parameters"]["rank"] == 4
    assert recipe["seed"] is None
    assert [i["reference"] for i in recipe["inputs"]] == ["ns/first:3", str(second)]
    assert [i["weight"] for i in recipe["inputs"]] == [0.7, 0.5]
    import hashlib

    digest = hashlib.sha256((first / "adapter_model.safetensors").read_bytes()).hexdigest()
    assert recipe["inputs"][0]["sha256"] == digest
    assert recipe["report"]["summary"]["modules"] == len(result.modules)
    assert recipe["base_model"]["name_or_path"] == BASE_NAME

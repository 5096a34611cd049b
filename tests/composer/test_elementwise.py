"""ties, dare_linear, dare_ties and magnitude_prune: paper definitions, determinism, re-factoring error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import PeftModel
from peft.utils import merge_utils

import composer
from composer.methods.dare import dare_linear, dare_ties
from composer.methods.magnitude_prune import magnitude_prune
from composer.methods.ties import ties
from composer.sparsify import kth_largest_magnitude, magnitude_trim_
from tests.composer.conftest import MakeAdapter
from tests.composer.helpers import effective_deltas, exact_sum, relative, tiny_llama


def task_vectors(n: int = 3, shape: tuple[int, int] = (8, 4), seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape), generator=generator)  # (n, out, in)


@pytest.mark.parametrize("sign_method", ["total", "frequency"])
def test_ties_equals_peft_dense_ties_for_equal_weights(sign_method: str) -> None:
    deltas = task_vectors(3, (32, 16))
    weights = torch.full((3,), 0.7)
    expected = merge_utils.ties(list(deltas.clone()), weights, density=0.4, majority_sign_method=sign_method)
    actual = ties(deltas.clone(), weights, density=0.4, majority_sign_method=sign_method)  # type: ignore[arg-type]
    torch.testing.assert_close(actual, expected)


def test_magnitude_prune_equals_peft_dense_magnitude_prune() -> None:
    deltas = task_vectors(2, (32, 16))
    weights = torch.tensor([0.7, -0.2])
    expected = merge_utils.magnitude_prune(list(deltas.clone()), weights, density=0.3)
    torch.testing.assert_close(magnitude_prune(deltas.clone(), weights, density=0.3), expected)


def test_ties_lets_a_negated_task_vote_with_its_flipped_sign() -> None:
    task = torch.tensor([[1.0, -2.0, 3.0]])
    deltas = torch.stack([task, task])  # (2, 1, 3)
    merged = ties(deltas, torch.tensor([1.0, -2.0]), density=1.0)
    # The negated copy has the larger mass everywhere, so it wins every election alone.
    torch.testing.assert_close(merged, -2.0 * task)


def test_density_one_is_the_identity_for_trimming_and_dropping() -> None:
    deltas = task_vectors(2)
    weights = torch.tensor([0.5, 1.5])
    generator = torch.Generator().manual_seed(0)
    torch.testing.assert_close(
        dare_linear(deltas.clone(), weights, density=1.0, generator=generator), (weights[:, None, None] * deltas).sum(0)
    )
    torch.testing.assert_close(magnitude_trim_(deltas.clone(), 1.0), deltas)
    single = deltas[:1].clone()
    torch.testing.assert_close(ties(single.clone(), torch.ones(1), density=1.0), single[0])
    torch.testing.assert_close(dare_ties(single.clone(), torch.ones(1), density=1.0, generator=generator), single[0])


def test_dare_rescales_survivors_so_the_expectation_is_kept() -> None:
    deltas = torch.ones((1, 400, 400))
    dropped = dare_linear(deltas, torch.ones(1), density=0.25, generator=torch.Generator().manual_seed(3))
    kept = dropped != 0
    assert float(kept.float().mean()) == pytest.approx(0.25, abs=0.01)
    assert torch.all(dropped[kept] == 4.0)
    assert float(dropped.mean()) == pytest.approx(1.0, abs=0.05)


def test_exact_threshold_selection_on_large_tensors_matches_kthvalue() -> None:
    values = torch.randn(1_200_000, generator=torch.Generator().manual_seed(1))  # above the bracket threshold
    magnitudes = values.abs()
    for k in (1, 1000, 600_000, 1_199_999, 1_200_000):
        assert kth_largest_magnitude(values, k) == float(torch.kthvalue(magnitudes, values.numel() - k + 1).values)


def test_dare_density_one_composes_to_the_exact_weighted_sum(make_adapter: MakeAdapter, tmp_path: Path) -> None:
    first = make_adapter("a", 1)
    second = make_adapter("b", 2, target_modules=["q_proj", "k_proj"])
    result = composer.compose([(first, 0.7), (second, -0.5)], method="dare_linear", density=1.0, rank=8)
    result.save(tmp_path / "out")
    expected = exact_sum([(effective_deltas(first), 0.7), (effective_deltas(second), -0.5)])
    actual = effective_deltas(tmp_path / "out")
    for module, (delta, _) in expected.items():
        assert relative(actual[module][0], delta) < 1e-5, module


@pytest.mark.parametrize("method", ["ties", "dare_linear", "dare_ties", "magnitude_prune"])
def test_results_are_a_pure_function_of_the_seed(make_adapter: MakeAdapter, method: str) -> None:
    first, second = make_adapter("a", 1), make_adapter("b", 2)

    def run(seed: int) -> dict[str, torch.Tensor]:
        result = composer.compose([(first, 0.6), (second, 0.6)], method=method, density=0.5, seed=seed, rank=4)
        return result.adapter.tensors()

    once, again, other = run(7), run(7), run(8)
    assert all(torch.equal(once[k], again[k]) for k in once)
    if method.startswith("dare"):
        assert any(not torch.equal(once[k], other[k]) for k in once)


def test_ties_with_full_rank_reproduces_peft_ties_svd(make_adapter: MakeAdapter, tmp_path: Path) -> None:
    first, second = make_adapter("a", 1), make_adapter("b", 2)
    result = composer.compose([(first, 0.8), (second, 0.8)], method="ties", density=0.3, rank=64)
    result.save(tmp_path / "ours")

    peft_model = PeftModel.from_pretrained(tiny_llama(), str(first), adapter_name="a")
    peft_model.load_adapter(str(second), adapter_name="b")
    peft_model.add_weighted_adapter(
        ["a", "b"], [0.8, 0.8], "merged", combination_type="ties_svd", density=0.3, svd_rank=64
    )
    ours = effective_deltas(tmp_path / "ours")
    for name, module in peft_model.named_modules():
        if hasattr(module, "lora_A") and "merged" in module.lora_A:
            theirs = module.get_delta_weight("merged").detach()
            assert relative(ours[name.removeprefix("base_model.model.")][0], theirs) < 1e-4, name


def test_low_rank_refactoring_is_within_two_percent_of_the_full_svd(make_adapter: MakeAdapter) -> None:
    first = make_adapter("a", 1, target_modules=["gate_proj", "down_proj"], r=8, lora_alpha=16)
    second = make_adapter("b", 2, target_modules=["gate_proj", "down_proj"], r=8, lora_alpha=16)
    inputs = [(first, 1.0), (second, 1.0)]
    result = composer.compose(inputs, method="ties", density=0.5, rank=8, seed=3)
    reports = {r.module: r for r in result.modules}
    adapters = [composer.load_lora(first), composer.load_lora(second)]
    for module, report in reports.items():
        # Rebuild the dense TIES matrix the same way and compare against its own optimum.
        deltas = torch.stack([a.scaling(module) * a.factors(module)[0] @ a.factors(module)[1] for a in adapters])
        dense = ties(deltas, torch.ones(2), density=0.5)
        singular = torch.linalg.svdvals(dense.double())
        optimum = float(singular[8:].norm() / singular.norm())
        b, a, _ = result.adapter.factors(module)
        actual = relative(b @ a, dense)
        assert actual == pytest.approx(report.relative_error, rel=1e-3, abs=1e-4)
        assert actual <= optimum * 1.02, module


def test_elementwise_methods_merge_lora_biases_instead_of_dropping_them(make_adapter: MakeAdapter) -> None:
    first = make_adapter("a", 1, lora_bias=True)
    second = make_adapter("b", 2, lora_bias=True)
    result = composer.compose([(first, 1.0), (second, 1.0)], method="ties", density=1.0)
    adapters = [composer.load_lora(first), composer.load_lora(second)]
    for module in result.adapter.modules:
        biases = torch.stack([a.scaling(module) * a.factors(module)[2] for a in adapters])  # type: ignore[operator]
        expected = ties(biases, torch.ones(2), density=1.0)
        _, _, bias = result.adapter.factors(module)
        assert bias is not None
        torch.testing.assert_close(bias, expected)

"""composer.search: the CMA-ES weight search, the exact weighted combination on a loaded model, the split."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch

import composer.search as search_module
from composer.evaluation import LoadedModel
from composer.io import load_lora
from composer.search import (
    LoraCombination,
    search_weights,
    split_examples,
    suite_scorer,
    uniform_weights,
)
from tests.composer.conftest import MakeAdapter
from tests.composer.helpers import effective_deltas, exact_sum, relative, tiny_llama


def bowl(target: tuple[float, ...]) -> search_module.Score:
    """A smooth score with its maximum (0) at `target`."""
    return lambda w: -sum((a - b) ** 2 for a, b in zip(w, target, strict=True))


# --- The search ----------------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_candidates_and_another_seed_others() -> None:
    first = search_weights(3, bowl((0.3, -0.7, 1.2)), budget=25, seed=7)
    again = search_weights(3, bowl((0.3, -0.7, 1.2)), budget=25, seed=7)
    other = search_weights(3, bowl((0.3, -0.7, 1.2)), budget=25, seed=8)
    assert first.trace == again.trace
    assert first.best == again.best
    assert [c.weights for c in other.trace[1:]] != [c.weights for c in first.trace[1:]]


@pytest.mark.parametrize("budget", [1, 2, 7, 8, 40, 41])
def test_it_calls_score_exactly_budget_times_never_more(budget: int) -> None:
    calls = []

    def score(weights: tuple[float, ...]) -> float:
        calls.append(weights)
        return bowl((0.5, 0.5, 0.5, 0.5))(weights)

    result = search_weights(4, score, budget=budget, seed=0)
    assert len(calls) == budget
    assert [c.weights for c in result.trace] == calls


def test_every_candidate_lies_within_the_bounds_even_with_the_optimum_outside() -> None:
    result = search_weights(2, bowl((5.0, -5.0)), budget=60, bounds=(-1.5, 1.5), seed=3, sigma=2.0)
    assert all(-1.5 <= w <= 1.5 for c in result.trace for w in c.weights)
    assert result.weights[0] > 1.2 and result.weights[1] < -1.2  # pushed against the walls, not past them


def test_the_uniform_point_comes_first_and_the_best_is_never_worse() -> None:
    result = search_weights(4, bowl((1.0, 1.0, 0.0, 0.0)), budget=20, seed=0)
    assert result.trace[0].weights == uniform_weights(4) == (0.25, 0.25, 0.25, 0.25)
    assert result.score >= result.trace[0].score
    assert result.best in result.trace


def test_a_loss_is_minimised_and_nan_counts_as_the_worst() -> None:
    def loss(weights: tuple[float, ...]) -> float:
        return float("nan") if weights[0] > 1.0 else (weights[0] - 0.8) ** 2 + (weights[1] + 0.4) ** 2

    result = search_weights(2, loss, budget=80, seed=1, higher_is_better=False)
    assert result.score == min(c.score for c in result.trace if c.score == c.score)
    assert abs(result.weights[0] - 0.8) < 0.1 and abs(result.weights[1] + 0.4) < 0.1


def test_on_candidate_sees_every_candidate_in_order() -> None:
    seen: list[tuple[int, search_module.Candidate]] = []
    result = search_weights(2, bowl((0.0, 0.0)), budget=9, on_candidate=lambda i, c: seen.append((i, c)))
    assert seen == list(enumerate(result.trace))


# --- The combination on a loaded model --------------------------------------------------------------


@pytest.fixture
def three_adapters(make_adapter: MakeAdapter) -> list[Path]:
    """Different ranks, modules and scalings (rsLoRA), as real PEFT files on the tiny test Llama."""
    return [
        make_adapter("a", 1),
        make_adapter("b", 2, r=2, lora_alpha=8, target_modules=["q_proj", "k_proj", "down_proj"], use_rslora=True),
        make_adapter("c", 3, r=8, lora_alpha=4, target_modules=["v_proj", "o_proj"]),
    ]


def test_the_candidate_delta_is_the_exact_weighted_sum_of_the_inputs_deltas(three_adapters: list[Path]) -> None:
    model = tiny_llama()
    originals = {name: p.detach().clone() for name, p in model.named_parameters()}
    weights = (0.7, -1.3, 0.45)
    # The oracle: each adapter's delta as PEFT itself computes it, summed densely with the weights.
    expected = exact_sum([(effective_deltas(f), w) for f, w in zip(three_adapters, weights, strict=True)])
    combination = LoraCombination(model, [load_lora(f) for f in three_adapters])
    deltas = combination.deltas(weights)
    assert set(deltas) == set(expected)
    with combination.applied(weights) as applied:
        assert applied is model
        for module, (delta, _) in expected.items():
            torch.testing.assert_close(deltas[module], delta, atol=1e-6, rtol=1e-5)
            merged = dict(model.named_parameters())[f"{module}.weight"]
            torch.testing.assert_close(merged - originals[f"{module}.weight"], delta, atol=1e-6, rtol=1e-5)
            # Not the average of A and B taken separately (PEFT's linear): that would be far off.
            assert relative(merged - originals[f"{module}.weight"], delta) < 1e-5


def test_applying_weights_restores_the_base_weights_bitwise(three_adapters: list[Path]) -> None:
    model = tiny_llama()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    combination = LoraCombination(model, [load_lora(f) for f in three_adapters])
    for weights in [(1.0, 1.0, 1.0), (-1.5, 0.3, 1.49), (1e-3, 1e3, -7.0)]:
        with combination.applied(weights):
            assert not torch.equal(dict(model.named_parameters())["model.layers.0.self_attn.q_proj.weight"],
                                   before["model.layers.0.self_attn.q_proj.weight"])  # fmt: skip
        for name, parameter in model.named_parameters():
            assert torch.equal(parameter, before[name]), name
    with pytest.raises(RuntimeError, match="scoring failed"), combination.applied((0.5, 0.5, 0.5)):
        raise RuntimeError("scoring failed")
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, before[name]), name


def test_weight_one_on_one_adapter_merges_as_the_eval_workers_do(make_adapter: MakeAdapter) -> None:
    from composer.evaluation import merged_lora

    folder = make_adapter("solo", 4)
    reference = tiny_llama()
    with merged_lora(reference, folder):
        expected = {name: p.detach().clone() for name, p in reference.named_parameters()}
    model = tiny_llama()
    with LoraCombination(model, [load_lora(folder)]).applied((1.0,)):
        for name, parameter in model.named_parameters():
            torch.testing.assert_close(parameter, expected[name], atol=1e-6, rtol=0)


# --- The split ------------------------------------------------------------------------------------------


def examples(count: int) -> list[dict[str, Any]]:
    return [{"prompt": f"capital q{i}=", "answer": f"a{i % 7}"} for i in range(count)]


def test_the_split_is_deterministic_disjoint_complete_and_independent_of_order() -> None:
    lines = examples(40)
    search, held_out = split_examples(lines, 0.25, seed=5)
    assert (search, held_out) == split_examples(lines, 0.25, seed=5)
    assert len(search) == 10 and len(held_out) == 30
    keys = lambda xs: {x["prompt"] for x in xs}  # noqa: E731
    assert not keys(search) & keys(held_out)
    assert keys(search) | keys(held_out) == keys(lines)
    shuffled = lines[:]
    random.Random(0).shuffle(shuffled)
    # Key order inside an example does not matter either: the key is canonical JSON.
    reordered = [dict(reversed(list(x.items()))) for x in shuffled]
    again, _ = split_examples(reordered, 0.25, seed=5)
    assert keys(again) == keys(search)
    assert keys(split_examples(lines, 0.25, seed=6)[0]) != keys(search)


def test_duplicates_fall_on_one_side_and_both_sides_are_never_empty() -> None:
    lines = examples(6) * 3
    search, held_out = split_examples(lines, 0.5, seed=0)
    assert not {str(x) for x in search} & {str(x) for x in held_out}
    assert len(search) == 9 and len(held_out) == 9
    tiny_search, tiny_held = split_examples(examples(2), 0.01, seed=0)
    assert len(tiny_search) == 1 and len(tiny_held) == 1


# --- Scoring on examples: the search sees the search split only --------------------------------------


@pytest.fixture
def word_model() -> LoadedModel:
    from demo.skills import build_tokenizer

    return LoadedModel(model=tiny_llama(), tokenizer=build_tokenizer(), device=torch.device("cpu"))


@pytest.mark.parametrize("objective", ["loss", "metric"])
def test_the_search_only_ever_scores_search_split_examples(
    objective: str, word_model: LoadedModel, make_adapter: MakeAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    from demo.skills import ALL_SKILLS

    lines = [line for skill in ALL_SKILLS for line in skill.exact_match_lines()[:3]]
    search, held_out = split_examples(lines, 0.5, seed=0)
    seen: list[dict[str, Any]] = []
    real_score, real_targets = search_module.score_examples, search_module._loss_targets

    def recording_score(loaded: Any, model: Any, kind: Any, examples: Any, **options: Any) -> Any:
        seen.extend(examples)
        return real_score(loaded, model, kind, examples, **options)

    def recording_targets(loaded: Any, kind: Any, examples: Any) -> Any:
        seen.extend(examples)
        return real_targets(loaded, kind, examples)

    monkeypatch.setattr(search_module, "score_examples", recording_score)
    monkeypatch.setattr(search_module, "_loss_targets", recording_targets)
    folders = [make_adapter("x", 1), make_adapter("y", 2)]
    with LoraCombination(word_model.model, [load_lora(f) for f in folders]) as combination:
        score = suite_scorer(word_model, combination, "exact_match", search, objective=objective)  # type: ignore[arg-type]
        result = search_weights(2, score, budget=6, seed=0)
    assert len(result.trace) == 6
    assert seen and all(example in search for example in seen)
    assert not any(example in held_out for example in seen)


# --- On a real skill ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def capital_skill(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The demo base model (trained briefly) and the capital skill's LoRA, trained for real (~15 s)."""
    from demo.skills import SKILLS, build_base_model, train_lora

    root = tmp_path_factory.mktemp("skill")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matmuls: a second thread costs more than it brings on a shared machine
    try:
        base = build_base_model(root / "base", pretrain_steps=250)
        return base, train_lora(base, SKILLS[0], root / "capital", steps=120)
    finally:
        torch.set_num_threads(threads)


def test_a_search_over_one_adapter_on_its_own_skill_finds_weight_about_one(capital_skill: tuple[Path, Path]) -> None:
    """From 0.2, where the adapter answers nothing, the loss search climbs to ~1 within 20 scores.

    The tolerance, 0.25: a trained adapter's loss is flat around its own weight (the training
    stopped at a minimum along every direction, this one included; on the demo skills the loss per
    token changes by under 0.01 nats between 0.9 and 1.25, and the optimum sits at 1.0-1.1), so
    CMA-ES's answer wanders inside that flat band but never leaves it.
    """
    from composer.evaluation import load_base_model
    from demo.skills import SKILLS

    base, folder = capital_skill
    loaded = load_base_model(base, torch.device("cpu"))
    lines = SKILLS[0].exact_match_lines()
    with LoraCombination(loaded.model, [load_lora(folder)]) as combination:
        score = suite_scorer(loaded, combination, "exact_match", lines)
        result = search_weights(1, score, budget=20, seed=0, start=(0.2,))
        metric = suite_scorer(loaded, combination, "exact_match", lines, objective="metric")
        assert metric(result.trace[0].weights) == 0.0  # the start answers nothing
        assert metric(result.weights) == 1.0
    assert abs(result.weights[0] - 1.0) <= 0.25, result.weights

"""The public surface the hub relies on: registry entries, result object, expression composition."""

from __future__ import annotations

from pathlib import Path

import pytest

import composer
from composer.errors import ERROR_CODES, CompositionError
from tests.composer.conftest import MakeAdapter
from tests.composer.helpers import effective_deltas, exact_sum, relative


def test_every_method_cites_its_paper_and_aliases_resolve() -> None:
    assert set(composer.METHODS) == {
        "stack",
        "linear",
        "expr",
        "svd",
        "ties",
        "dare_linear",
        "dare_ties",
        "magnitude_prune",
    }
    for method in composer.METHODS.values():
        assert method.reference_url.startswith("https://")
        assert method.merge.__doc__
    assert composer.get_method("cat") is composer.METHODS["stack"]


def test_error_codes_are_a_closed_set() -> None:
    assert {
        "base_model_mismatch",
        "shape_mismatch",
        "unsupported_method",
        "unsupported_variant",
        "missing_parameter",
        "bad_expression",
        "bad_input",
    } <= ERROR_CODES
    with pytest.raises(AssertionError):
        CompositionError("typo_code", "x")  # type: ignore[arg-type]
    assert isinstance(CompositionError("bad_input", "x"), ValueError)


def test_a_result_carries_tensors_report_and_recipe(make_adapter: MakeAdapter) -> None:
    adapters = [composer.load_lora(make_adapter("a", 1), reference="ns/a:1"), composer.load_lora(make_adapter("b", 2))]
    result = composer.compose([(adapters[0], 1.0), (adapters[1], 0.5)], method="ties", density=0.5)
    assert isinstance(result.adapter, composer.LoraAdapter)
    assert set(result.adapter.tensors()) == {
        f"base_model.model.model.layers.{i}.self_attn.{m}.lora_{p}.weight"
        for i in (0, 1)
        for m in ("q_proj", "v_proj")
        for p in ("A", "B")
    }
    assert all(isinstance(r, composer.ModuleReport) for r in result.modules)
    assert result.recipe["seed"] == 0 and result.recipe["parameters"]["density"] == 0.5
    assert result.summary == result.recipe["report"]["summary"]
    assert result.adapter.recipe == result.recipe


def test_compose_expression_composes_folders_named_in_the_expression(make_adapter: MakeAdapter, tmp_path: Path) -> None:
    first, second = make_adapter("a", 1), make_adapter("b", 2)
    result = composer.compose_expression(f"0.5*{first} - 2*{second}", rank=8)
    assert result.recipe["method"] == "expr"
    assert [i["reference"] for i in result.recipe["inputs"]] == [str(first), str(second)]
    result.save(tmp_path / "out")
    expected = exact_sum([(effective_deltas(first), 0.5), (effective_deltas(second), -2.0)])
    actual = effective_deltas(tmp_path / "out")
    for module, (delta, _) in expected.items():
        assert relative(actual[module][0], delta) < 1e-5

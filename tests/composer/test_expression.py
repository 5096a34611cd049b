"""parse_expression: references the hub resolves itself, weights, and precise errors."""

from __future__ import annotations

import pytest

from composer import CompositionError, parse_expression


@pytest.mark.parametrize(
    "expression,expected",
    [
        ("0.7*a + 0.5*b - 0.3*c", [("a", 0.7), ("b", 0.5), ("c", -0.3)]),
        ("0.7*ns/a:3 - ns/b", [("ns/a:3", 0.7), ("ns/b", -1.0)]),
        ("ns/name:v1.2*2", [("ns/name:v1.2", 2.0)]),
        ("-my-lora + ./adapters/x + /abs/path", [("my-lora", -1.0), ("./adapters/x", 1.0), ("/abs/path", 1.0)]),
        ("0.5*(a - 0.6*c) + 1e-2*b", [("a", 0.5), ("c", -0.3), ("b", 0.01)]),
        ("a - a", [("a", 0.0)]),
        ("2 * -a", [("a", -2.0)]),
        ("org/2024-model", [("org/2024-model", 1.0)]),
    ],
)
def test_it_parses_weights_and_references(expression: str, expected: list[tuple[str, float]]) -> None:
    assert parse_expression(expression) == expected


@pytest.mark.parametrize(
    "expression,fragment",
    [
        ("", "empty"),
        ("a * b", "multiplied"),
        ("1 + a", "constant"),
        ("0.7 a", "character 5"),
        ("(a + b", "ends too early"),
        ("a +", "ends too early"),
        ("a, b", "','"),
        ("__import__('os')", "'('"),
        ("3 * 4", "constant"),
        ("0 * 4", "names no adapter"),
    ],
)
def test_it_refuses_what_is_not_a_linear_combination(expression: str, fragment: str) -> None:
    with pytest.raises(CompositionError) as caught:
        parse_expression(expression)
    assert caught.value.code == "bad_expression"
    assert fragment in str(caught.value)


def test_it_refuses_non_strings_and_huge_expressions() -> None:
    for expression in (None, "a + " * 5000):
        with pytest.raises(CompositionError) as caught:
            parse_expression(expression)  # type: ignore[arg-type]
        assert caught.value.code == "bad_expression"

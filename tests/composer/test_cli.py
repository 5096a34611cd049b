"""python -m composer, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from composer.cli import main
from tests.composer.conftest import MakeAdapter
from tests.composer.helpers import effective_deltas, exact_sum, relative

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_python_dash_m_composer_writes_a_loadable_adapter(make_adapter: MakeAdapter, tmp_path: Path) -> None:
    first, second = make_adapter("a", 1), make_adapter("b", 2, r=8, target_modules=["q_proj", "k_proj"])
    command = [
        sys.executable,
        "-m",
        "composer",
        "linear",
        "--input",
        f"{first}:0.7",
        "--input",
        f"{second}:-0.3",
        "--rank",
        "12",
        "--out",
        str(tmp_path / "out"),
        "--device",
        "cpu",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    completed = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "wrote" in completed.stdout

    expected = exact_sum([(effective_deltas(first), 0.7), (effective_deltas(second), -0.3)])
    actual = effective_deltas(tmp_path / "out")
    for module, (delta, _) in expected.items():
        assert relative(actual[module][0], delta) < 1e-5


def test_expr_subcommand_reads_weights_from_the_expression(make_adapter: MakeAdapter, tmp_path: Path) -> None:
    first, second, third = make_adapter("a", 1), make_adapter("b", 2), make_adapter("c", 3)
    expression = f"0.7*{first} + 0.5*{second} - 0.3*{third}"
    assert main(["expr", expression, "--out", str(tmp_path / "out"), "--rank", "12", "--quiet"]) == 0

    recipe = json.loads((tmp_path / "out" / "composition.json").read_text())
    assert recipe["method"] == "expr" and recipe["parameters"]["expression"] == expression
    assert [i["weight"] for i in recipe["inputs"]] == [0.7, 0.5, -0.3]
    expected = exact_sum([(effective_deltas(p), w) for p, w in [(first, 0.7), (second, 0.5), (third, -0.3)]])
    actual = effective_deltas(tmp_path / "out")
    for module, (delta, _) in expected.items():
        assert relative(actual[module][0], delta) < 1e-5


def test_element_wise_methods_take_density_seed_and_dtype(make_adapter: MakeAdapter, tmp_path: Path) -> None:
    first, second = make_adapter("a", 1), make_adapter("b", 2)
    args = [
        "dare_ties",
        "--input",
        f"{first}:1",
        "--input",
        f"{second}:1",
        "--density",
        "0.5",
        "--seed",
        "4",
        "--dtype",
        "fp16",
        "--rank",
        "auto",
        "--quiet",
    ]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "--out", str(tmp_path / "two")]) == 0
    one = (tmp_path / "one" / "adapter_model.safetensors").read_bytes()
    assert one == (tmp_path / "two" / "adapter_model.safetensors").read_bytes()
    recipe = json.loads((tmp_path / "one" / "composition.json").read_text())
    assert (recipe["seed"], recipe["parameters"]["dtype"], recipe["parameters"]["density"]) == (4, "fp16", 0.5)


def test_refusals_exit_with_code_two_and_name_the_problem(
    make_adapter: MakeAdapter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = make_adapter("a", 1)
    second = make_adapter("b", 2, base="some/other-model")
    status = main(["stack", "--input", f"{first}:1", "--input", f"{second}:1", "--out", str(tmp_path / "out")])
    assert status == 2
    assert "error [base_model_mismatch]" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["expr", "0.5*a*b", "--out", str(tmp_path / "out")]) == 2
    assert "error [bad_expression]" in capsys.readouterr().err
    assert main(["ties", "--input", f"{first}:1", "--out", str(tmp_path / "out")]) == 2
    assert "error [missing_parameter]" in capsys.readouterr().err


def test_usage_errors_are_reported_by_argparse(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["linear", "--out", str(tmp_path)])
    assert caught.value.code == 2
    with pytest.raises(SystemExit):
        main(["nonsense", "--input", "x:1", "--out", str(tmp_path)])

"""AdapterHub's `adapters` library as the oracle for bottleneck adapters: it runs in .venv-adapters
(`make install` builds it; it pins an older transformers than the hub's) through
tests/tools/adapters_library.py, which saves real adapters and loads them back from a hub."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ADAPTERS_PYTHON = REPO / ".venv-adapters" / "bin" / "python"
SCRIPT = REPO / "tests" / "tools" / "adapters_library.py"
# What each saved adapter is, by name (see the script's docstring for the kinds).
LIBRARY_KINDS = {
    "houlsby": "llama-double_seq_bn",
    "pfeiffer": "llama-seq_bn",
    "parallel": "llama-par_bn",
    "pfeiffer-inv": "llama-seq_bn_inv",
    "gpt2-houlsby": "gpt2-double_seq_bn",
    "roberta-head": "roberta-head",
    "library-lora": "llama-lora",
}


def run_adapters_library(
    command: str, out: Path, pairs: Mapping[str, str], env: Mapping[str, str] | None = None
) -> None:
    """`save` or `load` the NAME=KIND pairs with the adapters library; fails the test with its output."""
    if not ADAPTERS_PYTHON.exists():
        pytest.fail(f"{ADAPTERS_PYTHON} is missing: run `make install`, which builds the adapters library's venv")
    done = subprocess.run(
        [str(ADAPTERS_PYTHON), str(SCRIPT), command, str(out), *(f"{n}={k}" for n, k in pairs.items())],
        env=dict(env) if env is not None else {k: v for k, v in os.environ.items() if not k.startswith("HF_")},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"adapters_library.py {command} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="session")
def library_adapters(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of adapters saved by the adapters library (LIBRARY_KINDS), each beside its pickled
    twin (`<name>-pickle`), its logits, and the tiny bases under bases/."""
    out = tmp_path_factory.mktemp("adapters-library")
    run_adapters_library("save", out, LIBRARY_KINDS)
    return out

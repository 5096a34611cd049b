"""Helpers for client tests: request counting, fault injection, adapters of a chosen size."""

from __future__ import annotations

import json
import os
import shutil
import struct
import threading
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
import requests


class CountingSession(requests.Session):
    """A requests session that records (method, host:port, path) of everything sent, and can be
    told to fail (as a killed process would) once it has sent `fail_after` part uploads."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str, str]] = []
        self.ranges: list[str] = []
        self.fail_after: int | None = None
        self.part_puts = 0
        self._lock = threading.Lock()  # parts are sent from several threads

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        method, url = str(method), str(url)
        parts = urlsplit(url)
        with self._lock:
            if method == "PUT":
                if self.fail_after is not None and self.part_puts >= self.fail_after:
                    raise KeyboardInterrupt("simulated interruption of the push")
                self.part_puts += 1
            self.sent.append((method, parts.netloc, parts.path))
            if "Range" in (kwargs.get("headers") or {}):
                self.ranges.append(kwargs["headers"]["Range"])
        return super().request(method, url, *args, **kwargs)

    def count(self, method: str, *, host: str | None = None, path_contains: str = "") -> int:
        return sum(1 for m, h, p in self.sent if m == method and (host is None or h == host) and path_contains in p)

    def hosts(self, method: str) -> Counter[str]:
        return Counter(h for m, h, _ in self.sent if m == method)


def write_lora(
    folder: Path,
    *,
    layers: int,
    dim: int,
    r: int,
    modules: tuple[str, ...] = ("q_proj", "v_proj"),
    base_model: str | None = None,
    seed: int = 0,
    readme: str | None = "# A large test adapter\n",
) -> Path:
    """A valid PEFT LoRA folder whose weights (F32) are written tensor by tensor, never whole in
    memory: layers * len(modules) * 2 * r * dim * 4 bytes of finite random values.

    Its base model (by default `hub-test/square-<dim>`, square projections of size dim) is
    registered with the matching manifest, as an operator registers a hub's base models.
    """
    from registry.services import register_base_model

    base_model = base_model or f"hub-test/square-{dim}"
    register_base_model(
        name=base_model,
        manifest={
            f"model.layers.{layer}.self_attn.{module}": [dim, dim] for layer in range(layers) for module in modules
        },
    )
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": r,
        "lora_alpha": 2 * r,
        "lora_dropout": 0.0,
        "target_modules": list(modules),
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
    }
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))
    names: list[tuple[str, tuple[int, int]]] = []
    for layer in range(layers):
        for module in modules:
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            names.append((f"{prefix}.lora_A.weight", (r, dim)))
            names.append((f"{prefix}.lora_B.weight", (dim, r)))
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in names:
        size = shape[0] * shape[1] * 4
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(seed)
    with open(folder / "adapter_model.safetensors", "wb") as out:
        out.write(struct.pack("<Q", len(raw)))
        out.write(raw)
        for _, shape in names:
            remaining = shape[0] * shape[1]
            while remaining:
                n = min(remaining, 4 * 1024 * 1024)
                # Random bits with the top exponent bit cleared: finite floats of magnitude < 2.
                bits = rng.integers(0, 2**32, size=n, dtype=np.uint32) & np.uint32(0xBFFFFFFF)
                out.write(bits.tobytes())
                remaining -= n
    if readme is not None:
        (folder / "README.md").write_text(readme)
    return folder


def copy_folder(source: Path, target: Path, replace: dict[str, bytes] | None = None) -> Path:
    """A copy of an adapter folder with some files' bytes replaced (or added)."""
    shutil.copytree(source, target)
    for name, data in (replace or {}).items():
        (target / name).write_bytes(data)
    return target


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def file_size(path: Path) -> int:
    return os.stat(path).st_size


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`ahub --quiet ARGV` in-process: (exit status, stdout, stderr)."""
    from client.cli import main

    code = main(["--quiet", *argv])
    out, err = capsys.readouterr()
    return code, out, err

"""A 1 GB adapter file pushed and pulled through a live hub on SeaweedFS, with the memory of the
client (its own process) and of the hub (this process: live_server runs in a thread) measured."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from registry.models import AdapterVersion
from tests.client.helpers import write_lora

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
MB = 1024 * 1024


class ServerMemory:
    """Peak RSS growth of this process (sampled every 10 ms) and peak Python allocations
    (tracemalloc) while a transfer runs: the hub serves it from threads of this process."""

    def __init__(self) -> None:
        self.rss_growth = 0
        self.traced_peak = 0

    @classmethod
    @contextmanager
    def watch(cls) -> Iterator[ServerMemory]:
        measured = cls()
        process = psutil.Process()
        baseline = process.memory_info().rss
        peak = baseline
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.wait(0.01):
                peak = max(peak, process.memory_info().rss)

        sampler = threading.Thread(target=sample, daemon=True)
        tracemalloc.start()
        sampler.start()
        try:
            yield measured
        finally:
            stop.set()
            sampler.join()
            measured.traced_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            measured.rss_growth = peak - baseline


def run_client(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "client_process.py"), *args],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MB):
            digest.update(chunk)
    return digest.hexdigest()


def test_a_one_gigabyte_file_round_trips_with_bounded_memory(
    s3_settings: None, live_server: Any, alice: Any, token_for: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 32 layers x 2 modules x (256x8192 + 8192x256) F32 values = exactly 1 GiB of weights.
    folder = write_lora(tmp_path / "big", layers=32, dim=8192, r=256)
    weights = folder / "adapter_model.safetensors"
    assert weights.stat().st_size > 1024**3
    token = token_for(alice)

    with ServerMemory.watch() as push_server:
        pushed = run_client("push", live_server.url, token, str(tmp_path / "push-cache"), str(folder), "alice/big")
    with ServerMemory.watch() as pull_server:
        pulled = run_client("pull", live_server.url, token, str(tmp_path / "pull-cache"), "alice/big")

    assert pushed["created"] and pushed["bytes"] >= weights.stat().st_size
    stored = AdapterVersion.objects.get().files.get(path=weights.name).sha256
    assert stored == sha256_of(weights) == sha256_of(Path(pulled["path"]) / weights.name)
    report = {
        side: {
            "seconds": round(client["seconds"], 1),
            "client_peak_rss_mb": client["peak_rss"] // MB,
            "client_baseline_rss_mb": client["baseline_rss"] // MB,
            "server_rss_growth_mb": server.rss_growth // MB,
            "server_traced_peak_mb": server.traced_peak // MB,
        }
        for side, client, server in (("push", pushed, push_server), ("pull", pulled, pull_server))
    }
    report["push"]["phases"] = {k: round(v, 1) for k, v in pushed["timings"].items()}
    with capsys.disabled():
        print(f"\n1 GB round trip ({weights.stat().st_size} bytes):", json.dumps(report))
    # Flat, whatever the file size: parts stream from disk, downloads stream to it, and the hub
    # reads back in 8 MiB chunks (a buffered file would show up as ~1 GB here).
    for side in ("push", "pull"):
        assert report[side]["client_peak_rss_mb"] < 200, report
        assert report[side]["server_rss_growth_mb"] < 200 and report[side]["server_traced_peak_mb"] < 100, report

"""Benchmark: `python -m composer` on 7B-shaped inputs against the I/O floor, by thread count, with
and without a concurrent CPU load; the measurement behind the composer's thread policy.

    python bench/compose_cli.py                      # linear, 32 layers, 5 rounds, idle and loaded: ~6 min
    python bench/compose_cli.py --method ties --density 0.5 --rounds 3
    python bench/compose_cli.py --layers 4 --rounds 2   # a quick look

Inputs: two LoRA adapters at Llama-2-7B shapes, 32 layers x all seven projections (q, k, v, o
4096x4096; gate, up 11008x4096; down 4096x11008), r=16, fp16, random factors (A ~ N(0, 1/d_in),
B ~ N(0, 0.02^2)), written as PEFT folders. Nothing is downloaded.

Sides, each a fresh process, as a user runs it (page cache warm for all: every side reads the same
files, and a warm-up run of each precedes the rounds):
    floor        the I/O floor of a torch command line: a process that imports torch and
                 safetensors (what the CLI must import), reads both input files whole and writes
                 as many bytes as the composed output has. Nothing can do the job in less.
    cli t=1      python -m composer METHOD --input A --input B --out DIR --threads 1 (the default)
    cli t=N      the same with --threads 0: torch's default, one thread per core (N = cores)
Load: `--load K` busy-loop processes (default 1, i.e. one of this machine's two cores busy, as on a
shared host) run during the "loaded" rounds; `--conditions` picks idle, loaded or both.
Rounds are interleaved: within each round the order of the sides rotates. Printed: each side's
median wall time, and per-round paired ratios side / floor as min / median / max. The outputs of
the two thread counts are compared byte for byte.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECTIONS = {  # name: (d_out, d_in) at Llama-2-7B
    "self_attn.q_proj": (4096, 4096),
    "self_attn.k_proj": (4096, 4096),
    "self_attn.v_proj": (4096, 4096),
    "self_attn.o_proj": (4096, 4096),
    "mlp.gate_proj": (11008, 4096),
    "mlp.up_proj": (11008, 4096),
    "mlp.down_proj": (4096, 11008),
}

FLOOR = """
import sys, torch, safetensors.torch  # what the command line imports
size = int(sys.argv[3])
for path in sys.argv[1:3]:
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass
with open(sys.argv[4], "wb") as out:
    block = bytes(1 << 24)
    while size > 0:
        out.write(block[: min(size, len(block))])
        size -= len(block)
"""


def make_adapter(
    folder: Path, seed: int, layers: int, rank: int, *, base_model: str = "meta-llama/Llama-2-7b-hf"
) -> Path:
    """A PEFT LoRA folder at Llama-2-7B shapes: all seven projections, fp16 random factors."""
    import json

    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(layers):
        for name, (d_out, d_in) in PROJECTIONS.items():
            prefix = f"base_model.model.model.layers.{layer}.{name}"
            a = torch.randn(rank, d_in, generator=generator) / d_in**0.5
            b = torch.randn(d_out, rank, generator=generator) * 0.02
            tensors[f"{prefix}.lora_A.weight"] = a.half()
            tensors[f"{prefix}.lora_B.weight"] = b.half()
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": rank,
        "lora_alpha": 2 * rank,
        "target_modules": sorted(n.split(".")[-1] for n in PROJECTIONS),
        "bias": "none",
        "fan_in_fan_out": False,
    }
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


@contextmanager
def cpu_load(processes: int) -> Iterator[None]:
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        time.sleep(0.5)
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    completed = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{completed.stderr}")
    return elapsed


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def spread(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--method", default="linear")
    parser.add_argument("--density", type=float, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--load", type=int, default=1, help="busy-loop processes in the loaded condition")
    parser.add_argument("--conditions", default="idle,loaded")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="compose-cli-", dir=args.workdir))
    try:
        a, b = work / "a", work / "b"
        make_adapter(a, 1, args.layers, args.rank)
        make_adapter(b, 2, args.layers, args.rank)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("COMPOSER_THREADS", None)
        extra = ["--density", str(args.density)] if args.density is not None else []

        def cli(threads: int, out: Path) -> list[str]:
            return [
                sys.executable, "-m", "composer", args.method, "--input", f"{a}:0.7", "--input", f"{b}:0.5",
                "--out", str(out), "--device", "cpu", "--threads", str(threads), "--quiet", *extra,
            ]  # fmt: skip

        # Warm-up: page cache, and the output's size for the floor.
        timed(cli(1, work / "out-1"), env)
        timed(cli(0, work / "out-0"), env)
        output = work / "out-1" / "adapter_model.safetensors"
        same = sha256(output) == sha256(work / "out-0" / "adapter_model.safetensors")
        out_size = output.stat().st_size
        floor = [
            sys.executable, "-c", FLOOR, str(a / "adapter_model.safetensors"), str(b / "adapter_model.safetensors"),
            str(out_size), str(work / "floor.bin"),
        ]  # fmt: skip
        timed(floor, env)
        sides = {"floor": floor, "cli t=1": cli(1, work / "out-1"), f"cli t={os.cpu_count()}": cli(0, work / "out-0")}
        in_bytes = sum((p / "adapter_model.safetensors").stat().st_size for p in (a, b))
        print(
            f"{args.method}: 2 inputs of {args.layers} layers x 7 projections, r={args.rank}, fp16 "
            f"({in_bytes / 1e6:.0f} MB in, {out_size / 1e6:.0f} MB out); outputs of t=1 and t={os.cpu_count()} "
            f"{'byte-identical' if same else 'DIFFER'}; {args.rounds} interleaved rounds per condition"
        )
        for condition in args.conditions.split(","):
            times: dict[str, list[float]] = {name: [] for name in sides}
            with cpu_load(args.load if condition == "loaded" else 0):
                for round_ in range(args.rounds):
                    names = list(sides)
                    shift = round_ % len(names)
                    for name in names[shift:] + names[:shift]:
                        times[name].append(timed(sides[name], env))
            load = f"{args.load} busy process(es)" if condition == "loaded" else "no other load"
            print(f"\n{condition} ({load}):")
            print(f"  {'side':<10} {'median s':>9}   ratio to floor, paired: min / median / max")
            for name, values in times.items():
                ratios = [v / f for v, f in zip(values, times["floor"], strict=True)]
                print(f"  {name:<10} {statistics.median(values):>9.2f}   {spread(ratios)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

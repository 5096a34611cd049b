"""Benchmark: composer against PEFT's `add_weighted_adapter`, same adapters, one run, side by side.

    python bench/compose_vs_peft.py                        # full: ~4-5 min on 2 idle CPU cores
    python bench/compose_vs_peft.py --quick                # small shapes, ~30 s
    python bench/compose_vs_peft.py --cases model-n2,7b-4096x4096
    python bench/compose_vs_peft.py --threads 1            # both sides on one thread (busy machines)
    python bench/compose_vs_peft.py --device cuda
    python bench/compose_vs_peft.py --families [--quick]   # IA3 + IA3, and LoHa turned into a LoRA

Cases:
    model-n2, model-n3   a randomly initialised Llama (hidden 1024, intermediate 2816, 4 layers), two
                         and three rank-16 adapters on q/k/v/o/gate/up/down (28 LoRA modules).
    7b-4096x4096, 7b-11008x4096
                         one Linear at Llama-2-7B shapes with two rank-16 adapters; PEFT's own
                         `add_weighted_adapter` runs on a one-layer model.

Families (--families), on the same model, rounds interleaved (the side that goes first alternates),
both sides warm on the same threads, paired ratios min/median/max:
    ia3-n2       two IA3 adapters (k, v, down as feed-forward) summed 0.7/0.5: ours (composer keeps
                 IA3 as IA3) against PEFT's add_weighted_adapter; error = max |ours - PEFT| over vectors.
    loha-lora    one rank-8 LoHa (exact rank 64) turned into a LoRA at rank 64 (exact) and rank 8:
                 PEFT has no conversion, so the peer is its cheapest way to the delta, get_delta_weight
                 on every module (dense); error = ||LoRA - PEFT delta||_F / ||PEFT delta||_F, mean.

Adapters follow composition-notes.md: A ~ N(0, 1/d_in), B ~ N(0, 0.02^2), r=16, alpha=32, weights
0.7, 0.5 (, 0.3), density 0.5, target rank 16. Both sides read the very same tensors: PEFT from
the model the adapters were created in, composer from the folders PEFT saved them to.

Measures:
    time         wall clock of the merge alone, adapters already loaded on both sides (ours: opened
                 with load_lora and warmed up once, which also hashes them for the recipe); nothing
                 is written to disk. Fast calls: min of 3 runs. PEFT's SVD-based calls: one run.
    peak memory  CPU: growth of the process's resident set (VmRSS) over the call, sampled every
                 2 ms by a thread. The script re-executes itself with MALLOC_MMAP_THRESHOLD_ set so
                 glibc returns every large block on free, making each call's growth measurable.
                 CUDA: torch.cuda.max_memory_allocated growth.
    error        ||result - sum_i w_i dW_i||_F / ||sum_i w_i dW_i||_F per module, mean over modules.
                 For TIES/DARE that deviation is intended (they are not the plain sum); their
                 re-factoring quality is the last column: our low-rank error against our own
                 dense merge, divided by the full-SVD optimum for that same matrix.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
    # Must be set before the process starts: glibc reads it once.
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "131072"
    os.execv(sys.executable, [sys.executable, *sys.argv])

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from torch import nn  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

import composer  # noqa: E402
from composer.compose import _generator  # noqa: E402  # the same per-module seeds compose() uses
from composer.registry import get_method  # noqa: E402

warnings.filterwarnings("ignore")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RANK = 16
DENSITY = 0.5
WEIGHTS = [0.7, 0.5, 0.3]
SLOW_PEFT = {"svd", "ties_svd", "dare_ties_svd"}
# (our method, PEFT combination_type) pairs, in table order.
PAIRS = [
    ("linear", "linear"),
    ("linear", "svd"),
    ("stack", "cat"),
    ("ties", "ties_svd"),
    ("dare_ties", "dare_ties_svd"),
]


# -- measurement ---------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMeter:
    """Peak memory growth during a block: VmRSS sampled by a thread, or CUDA's allocator stats."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_growth = 0

    @contextmanager
    def measure(self) -> Iterator[PeakMeter]:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            baseline = torch.cuda.memory_allocated()
            yield self
            torch.cuda.synchronize()
            self.peak_growth = torch.cuda.max_memory_allocated() - baseline
            return
        baseline = _rss_bytes()
        peak = baseline
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, _rss_bytes())
                stop.wait(0.002)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            yield self
        finally:
            stop.set()
            sampler.join()
            peak = max(peak, _rss_bytes())
            self.peak_growth = peak - baseline


def timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        gc.collect()
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, result


@dataclass
class Row:
    case: str
    ours: str
    peft: str
    ours_time: float = float("nan")
    peft_time: float = float("nan")
    ours_peak: int = 0
    peft_peak: int = 0
    ours_rank: str = ""
    peft_rank: str = ""
    ours_error: float = float("nan")
    peft_error: float = float("nan")
    refactor_ratio: float | None = None  # ours refactor error / full-SVD optimum, element-wise only
    notes: list[str] = field(default_factory=list)


# -- adapters --------------------------------------------------------------------------------


class OneLinear(nn.Module):
    """A model with a single Linear, to run PEFT's own merge at 7B layer shapes."""

    def __init__(self, d_out: int, d_in: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d_in, d_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def add_random_adapters(model: nn.Module, targets: list[str], n: int, folder: Path) -> tuple[PeftModel, list[Path]]:
    """n rank-16 adapters a0..a(n-1), initialised as in composition-notes.md, saved by PEFT itself."""
    config = LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=targets, init_lora_weights=False)
    peft_model = get_peft_model(model, config, adapter_name="a0")
    for index in range(1, n):
        peft_model.add_adapter(f"a{index}", config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if ".lora_A." in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) / parameter.shape[1] ** 0.5)
            elif ".lora_B." in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)
    peft_model.save_pretrained(str(folder), selected_adapters=[f"a{i}" for i in range(n)])
    # PEFT saves adapters other than "default" in sub-folders named after them.
    return peft_model, [folder / f"a{i}" for i in range(n)]


def lora_layers(peft_model: PeftModel, adapter: str) -> Iterator[tuple[str, nn.Module]]:
    for name, module in peft_model.named_modules():
        lora_a = getattr(module, "lora_A", None)
        if isinstance(lora_a, nn.ModuleDict) and adapter in lora_a:
            yield name.removeprefix("base_model.model."), module


def exact_targets(peft_model: PeftModel, weights: list[float]) -> dict[str, torch.Tensor]:
    """sum_i w_i dW_i per module, dense, fp32, straight from PEFT's own layers."""
    targets: dict[str, torch.Tensor] = {}
    for name, module in lora_layers(peft_model, "a0"):
        targets[name] = sum(w * module.get_delta_weight(f"a{i}").detach().float() for i, w in enumerate(weights))  # type: ignore[assignment]
    return targets


def relative(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).norm() / expected.norm())


# -- one case --------------------------------------------------------------------------------


def run_case(
    case: str,
    peft_model: PeftModel,
    folders: list[Path],
    device: torch.device,
    optimum_check: bool,
    log: Callable[[str], None],
) -> list[Row]:
    n = len(folders)
    weights = WEIGHTS[:n]
    names = [f"a{i}" for i in range(n)]
    targets = exact_targets(peft_model, weights)
    meter = PeakMeter(device)
    rows: list[Row] = []
    ours_cache: dict[str, tuple[float, int, Any]] = {}

    for ours_method, peft_type in PAIRS:
        row = Row(case=case, ours=ours_method, peft=peft_type)
        log(f"  {case}: PEFT {peft_type} ...")
        params: dict[str, Any] = {"svd_rank": RANK}
        if peft_type in ("ties_svd", "dare_ties_svd"):
            params["density"] = DENSITY

        def run_peft() -> None:
            peft_model.add_weighted_adapter(names, weights, "merged", combination_type=peft_type, **params)

        if peft_type in SLOW_PEFT:
            with meter.measure():
                start = time.perf_counter()
                run_peft()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                row.peft_time = time.perf_counter() - start
            row.peft_peak = meter.peak_growth
        else:
            row.peft_time = timed(lambda: (run_peft(), peft_model.delete_adapter("merged")), device, 3)[0]
            with meter.measure():
                run_peft()
            row.peft_peak = meter.peak_growth
        errors, ranks = [], set()
        for name, module in lora_layers(peft_model, "merged"):
            errors.append(relative(module.get_delta_weight("merged").detach().float(), targets[name]))
            ranks.add(module.lora_A["merged"].weight.shape[0])
        peft_model.delete_adapter("merged")
        row.peft_error = sum(errors) / len(errors)
        row.peft_rank = "/".join(str(r) for r in sorted(ranks))

        if ours_method not in ours_cache:
            log(f"  {case}: composer {ours_method} ...")
            kwargs: dict[str, Any] = {"device": device.type}
            if ours_method != "stack":
                kwargs["rank"] = RANK
            if get_method(ours_method).uses_density:
                kwargs["density"] = DENSITY
            # Like PEFT's adapters, ours are opened beforehand; the warm-up run maps their pages
            # and hashes their files for the recipe, so neither is counted below.
            inputs = [(composer.load_lora(folder), w) for folder, w in zip(folders, weights, strict=True)]
            composer.compose(inputs, method=ours_method, **kwargs)
            seconds, result = timed(lambda: composer.compose(inputs, method=ours_method, **kwargs), device, 3)
            with meter.measure():
                composer.compose(inputs, method=ours_method, **kwargs)
            ours_cache[ours_method] = (seconds, meter.peak_growth, result)
        seconds, peak, result = ours_cache[ours_method]
        row.ours_time, row.ours_peak = seconds, peak
        errors = []
        for report in result.modules:
            b, a, _ = result.adapter.factors(report.module, device)
            errors.append(relative(b @ a, targets[report.module].to(device)))
        row.ours_error = sum(errors) / len(errors)
        row.ours_rank = "/".join(str(r) for r in sorted({r.rank for r in result.modules}))
        if get_method(ours_method).kind == "elementwise" and optimum_check:
            row.refactor_ratio = refactor_over_optimum(ours_method, result, folders, weights, device)
        rows.append(row)
    return rows


def refactor_over_optimum(
    method: str, result: composer.CompositionResult, folders: list[Path], weights: list[float], device: torch.device
) -> float:
    """Mean over modules of (our low-rank error) / (full-SVD optimum) on the same dense merge."""
    spec = get_method(method)
    adapters = [composer.load_lora(folder) for folder in folders]
    ratios = []
    for report in result.modules:
        module = report.module
        deltas = torch.stack([a.scaling(module) * (lambda f: f[0] @ f[1])(a.factors(module, device)) for a in adapters])
        kwargs: dict[str, Any] = {"density": DENSITY}
        if spec.uses_seed:
            kwargs["generator"] = _generator(0, module, "mask", device)
        dense = spec.merge(deltas, torch.tensor(weights, device=device), **kwargs)
        singular = torch.linalg.svdvals(dense)
        optimum = float(singular[RANK:].norm() / singular.norm())
        ratios.append(report.relative_error / optimum)
    return sum(ratios) / len(ratios)


# -- report ----------------------------------------------------------------------------------


def print_header(device: torch.device) -> None:
    memory = "peak RSS growth" if device.type == "cpu" else "peak CUDA alloc growth"
    print(
        f"composer {composer.__version__} vs peft add_weighted_adapter, device={device}, "
        f"torch threads={torch.get_num_threads()}, {os.cpu_count()} CPUs"
    )
    print(f"memory = {memory}; err = mean over modules of ||R - sum w dW||_F / ||sum w dW||_F")
    print(HEADER)
    print("-" * len(HEADER), flush=True)


HEADER = (
    f"{'case':<15} {'ours':<10} {'PEFT':<14} {'PEFT s':>8} {'ours s':>8} {'speedup':>8} "
    f"{'PEFT MB':>8} {'ours MB':>8} {'rank P/o':>9} {'err PEFT':>9} {'err ours':>9} {'ours/opt':>8}"
)


def print_rows(rows: list[Row]) -> None:
    for r in rows:
        ratio = "" if r.refactor_ratio is None else f"{r.refactor_ratio:.4f}"
        print(
            f"{r.case:<15} {r.ours:<10} {r.peft:<14} {r.peft_time:>8.3f} {r.ours_time:>8.3f} "
            f"{r.peft_time / r.ours_time:>7.0f}x {r.peft_peak / 2**20:>8.1f} {r.ours_peak / 2**20:>8.1f} "
            f"{r.peft_rank + '/' + r.ours_rank:>9} {r.peft_error:>9.4f} {r.ours_error:>9.4f} {ratio:>8}"
        )
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"  (load average after this case: {load})", flush=True)


def print_footer() -> None:
    print()
    print("speedup = PEFT time / ours. ours/opt = our randomized low-rank error / the full-SVD optimum on our own")
    print("dense TIES/DARE merge (1.0 = optimal). PEFT linear's error is its cross-terms; ties/dare errors are")
    print("deviations from the plain weighted sum, intended by those methods.")


# -- other families ----------------------------------------------------------------------------


def paired(ours: Callable[[], Any], theirs: Callable[[], Any], rounds: int, device: torch.device) -> list[float]:
    """Per round (order alternating), theirs' time / ours'; both already warm."""
    ratios = []
    for index in range(rounds):
        order = [ours, theirs] if index % 2 == 0 else [theirs, ours]
        seconds = {}
        for fn in order:
            seconds[fn] = timed(fn, device, 1)[0]
        ratios.append(seconds[theirs] / seconds[ours])
    return ratios


def _spread(values: list[float]) -> str:
    ordered = sorted(values)
    return f"{ordered[0]:.2f} / {ordered[len(ordered) // 2]:.2f} / {ordered[-1]:.2f}"


def run_family_cases(model_factory: Callable[[], nn.Module], scratch: Path, device: torch.device, rounds: int) -> None:
    """ia3-n2 and loha-lora (see the module docstring)."""
    from peft import IA3Config, LoHaConfig

    from composer import compose
    from composer.compat import load_adapter

    print()
    print(f"{'case':<16} {'peer':<26} {'peer s':>8} {'ours s':>8} {'speedup min/med/max':>22} {'error':>10}")
    generator = torch.Generator().manual_seed(0)

    config = IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"])
    peft_model = get_peft_model(model_factory(), config, adapter_name="a0")
    peft_model.add_adapter("a1", config)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "ia3_l" in name:
                parameter.copy_(1 + 0.1 * torch.randn(parameter.shape, generator=generator))
    peft_model.save_pretrained(str(scratch / "ia3"), selected_adapters=["a0", "a1"])
    peft_model.to(device)
    inputs = [(load_adapter(scratch / "ia3" / "a0"), 0.7), (load_adapter(scratch / "ia3" / "a1"), 0.5)]

    def ours_ia3() -> Any:
        return compose(inputs, method="linear", device=str(device))

    def peft_ia3() -> None:
        if "mix" in peft_model.peft_config:
            peft_model.delete_adapter("mix")
        peft_model.add_weighted_adapter(["a0", "a1"], [0.7, 0.5], adapter_name="mix")

    result, _ = ours_ia3(), peft_ia3()  # warm
    theirs = {k.replace(".mix", ""): v for k, v in peft_model.state_dict().items() if "ia3_l.mix" in k}
    mine = result.adapter.tensors()
    error = max(float((mine[k].to(v) - v).abs().max()) for k, v in theirs.items())
    ratios = paired(ours_ia3, peft_ia3, rounds, device)
    peer_s, ours_s = timed(peft_ia3, device, 3)[0], timed(ours_ia3, device, 3)[0]
    print(
        f"{'ia3-n2':<16} {'add_weighted_adapter':<26} {peer_s:>8.4f} {ours_s:>8.4f} {_spread(ratios):>22} {error:>10.2e}"
    )

    loha = get_peft_model(model_factory(), LoHaConfig(r=8, alpha=8, target_modules=TARGETS), adapter_name="default")
    with torch.no_grad():
        for name, parameter in loha.named_parameters():
            if "hada_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    loha.save_pretrained(str(scratch / "loha"))
    loha.to(device)
    layers = [(n.removeprefix("base_model.model."), m) for n, m in loha.named_modules() if hasattr(m, "hada_w1_a")]
    layers = [(n, m) for n, m in layers if isinstance(m.hada_w1_a, nn.ParameterDict)]

    def peft_deltas() -> dict[str, torch.Tensor]:
        return {n: m.get_delta_weight("default").detach().float() for n, m in layers}

    truth = peft_deltas()
    adapter = load_adapter(scratch / "loha")
    for rank in (64, 8):

        def ours_loha(rank: int = rank) -> Any:
            return compose([(adapter, 1.0)], method="linear", rank=rank, device=str(device))

        result = ours_loha()
        errors = []
        for module, delta in truth.items():
            b, a, _ = result.adapter.factors(module, device)
            errors.append(relative(b @ a * result.adapter.scaling(module), delta))
        ratios = paired(ours_loha, peft_deltas, rounds, device)
        peer_s, ours_s = timed(peft_deltas, device, 3)[0], timed(ours_loha, device, 3)[0]
        print(
            f"{f'loha-lora r{rank}':<16} {'get_delta_weight (dense)':<26} {peer_s:>8.4f} {ours_s:>8.4f} "
            f"{_spread(ratios):>22} {sum(errors) / len(errors):>10.2e}"
        )
    print("speedup = peer time / ours per round (min/median/max); ia3 error is absolute, loha error relative.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="small shapes (hidden 256, 2 layers; 1024/2816 single modules)"
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads for both sides (default: torch's choice); 1 is robust on a busy machine",
    )
    parser.add_argument("--cases", default="", help="comma-separated subset, e.g. model-n2,7b-4096x4096")
    parser.add_argument("--families", action="store_true", help="only IA3 + IA3 and LoHa -> LoRA")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds of the family cases")
    args = parser.parse_args()
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    hidden, intermediate, layers, heads = (256, 704, 2, 4) if args.quick else (1024, 2816, 4, 16)

    def llama() -> nn.Module:
        torch.manual_seed(0)
        config = LlamaConfig(
            hidden_size=hidden,
            intermediate_size=intermediate,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            vocab_size=1000,
        )
        return LlamaForCausalLM(config)

    if args.families:
        print(f"families: hidden {hidden}, {layers} layers, device={device}, torch threads={torch.get_num_threads()}")
        with tempfile.TemporaryDirectory() as scratch:
            run_family_cases(llama, Path(scratch), device, args.rounds)
        log("done")
        return
    single_shapes = [(1024, 1024), (2816, 1024)] if args.quick else [(4096, 4096), (11008, 4096)]
    cases = {f"model-n{n}": ("model", n) for n in (2, 3)}
    cases |= {(f"one-{o}x{i}" if args.quick else f"7b-{o}x{i}"): ("single", (o, i)) for o, i in single_shapes}
    selected = args.cases.split(",") if args.cases else list(cases)
    unknown = set(selected) - set(cases)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; choose from {', '.join(cases)}")
    print_header(device)
    with tempfile.TemporaryDirectory() as scratch:
        for case in selected:
            kind, spec = cases[case]
            log(f"building {case}")
            if kind == "model":
                peft_model, folders = add_random_adapters(llama(), TARGETS, int(spec), Path(scratch) / case)  # type: ignore[arg-type]
                check = spec == 2
            else:
                d_out, d_in = spec  # type: ignore[misc]
                peft_model, folders = add_random_adapters(OneLinear(d_out, d_in), ["proj"], 2, Path(scratch) / case)
                check = d_out * d_in <= 4096 * 4096
            peft_model.to(device)
            print_rows(run_case(case, peft_model, folders, device, optimum_check=check, log=log))
            del peft_model
    print_footer()
    log("done")


if __name__ == "__main__":
    main()

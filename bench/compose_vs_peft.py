"""Benchmark: composer against PEFT's `add_weighted_adapter`, same adapters, one run, side by side.

    python bench/compose_vs_peft.py                        # full: see "Run time" below
    python bench/compose_vs_peft.py --quick                # small shapes, every pair
    python bench/compose_vs_peft.py --cases 7b-4096x4096,7b-11008x4096 --pairs ties_svd,dare_ties_svd
                                                           # the 7B target alone
    python bench/compose_vs_peft.py --rounds 5             # paired rounds per measure (default 3, at least 3)
    python bench/compose_vs_peft.py --pairs ties_svd       # only some pairs, named by PEFT's combination_type
    python bench/compose_vs_peft.py --threads 1            # both sides on one thread (busy machines)
    python bench/compose_vs_peft.py --device cuda
    python bench/compose_vs_peft.py --families [--quick]   # IA3 + IA3, and LoHa turned into a LoRA

Cases:
    model-n2, model-n3   a randomly initialised Llama (hidden 1024, intermediate 2816, 4 layers), two
                         and three rank-16 adapters on q/k/v/o/gate/up/down (28 LoRA modules).
    7b-4096x4096, 7b-11008x4096
                         one Linear at Llama-2-7B shapes with two rank-16 adapters; PEFT's own
                         `add_weighted_adapter` runs on a one-layer model.
    --quick: hidden 256, intermediate 704, 2 layers; single Linears one-1024x1024 and one-2816x1024.
Pairs (ours vs PEFT combination_type; --pairs picks by the PEFT name): linear vs linear, linear vs svd,
stack vs cat, ties vs ties_svd, dare_ties vs dare_ties_svd.

Families (--families), on the same model, rounds interleaved (the side that goes first alternates),
both sides warm on the same threads, --rounds rounds (default 7 here); peer s / ours s are each
side's median, the speedup the paired ratio per round, min/median/max:
    ia3-n2       two IA3 adapters (k, v, down as feed-forward) summed 0.7/0.5: ours (composer keeps
                 IA3 as IA3) against PEFT's add_weighted_adapter (deleting its result is not timed);
                 error = max |ours - PEFT| over vectors.
    loha-lora    one rank-8 LoHa (exact rank 64) turned into a LoRA at rank 64 (exact) and rank 8:
                 PEFT has no conversion, so the peer is its cheapest way to the delta, get_delta_weight
                 on every module (dense); error = ||LoRA - PEFT delta||_F / ||PEFT delta||_F, mean.

PEFT runs in its fastest honest configuration:
    SVD-based types (svd, ties_svd, dare_ties_svd) with svd_full_matrices=False: the thin SVD. U and Vh
    are cut to rank 16 right after, so the result is the full SVD's; on rectangular layers it is
    faster (same speed on square ones). svd_driver: None on CPU, where torch accepts no other; on CUDA
    the fastest of None/gesvd/gesvdj/gesvda whose rank-16 truncation of the case's TIES merge (thin,
    fp32) is within 0.1% of the optimum (float64 singular values), chosen per case and printed.
    End to end it loads with low_cpu_mem_usage=True (the adapter weights are not initialised only to
    be overwritten) onto the device (torch_device), and saves the merged adapter only
    (selected_adapters=["merged"], save_embedding_layers=False).
Both sides run in this one process: the same torch threads (--threads), the same device, fp32 (the
inputs' dtype; PEFT merges in its adapters' dtype, ours computes in fp32 and writes with dtype="fp32").

Adapters follow composition-notes.md: A ~ N(0, 1/d_in), B ~ N(0, 0.02^2), r=16, alpha=32, weights
0.7, 0.5 (, 0.3), density 0.5, target rank 16. Both sides read the very same tensors: PEFT from
the model the adapters were created in (merge only) or from the folders PEFT saved them to (end to
end), composer from those folders.

Measures:
    merge        wall clock of the merge alone, adapters already loaded on both sides; nothing is
                 written to disk. Ours: compose on adapters opened with load_lora (warm: hashed for the
                 recipe). PEFT: add_weighted_adapter on the model holding the adapters; deleting its
                 merged adapter afterwards is not counted.
    end to end   load + compose + save, from the saved input folders to a new folder. Ours: load_lora
                 of each input, compose, result.save. PEFT: PeftModel.from_pretrained(base, a0),
                 load_adapter(a1, ...), add_weighted_adapter, save_pretrained. PEFT needs the base model
                 (ours does not, for LoRA inputs): it is built beforehand and each call gets a fresh
                 copy outside the timer. Outputs are removed after each call, untimed.
    rounds       per pair: each side once end to end (warm-up, untimed); each side's merge once for
                 peak memory (ours after one more untimed merge on its held inputs, which maps and
                 hashes them); then --rounds merge rounds, then --rounds end-to-end rounds. In a round
                 each side runs once, the side going first alternating (ours first in even rounds).
                 Reported: each side's median time, and the per-round ratio PEFT / ours as
                 min/median/max.
    peak memory  of the merge. CPU: growth of the process's resident set (VmRSS) over the call,
                 sampled every 2 ms by a thread. The script re-executes itself with
                 MALLOC_MMAP_THRESHOLD_ set so glibc returns every large block on free, making each
                 call's growth measurable. CUDA: torch.cuda.max_memory_allocated growth.
    error        ||result - sum_i w_i dW_i||_F / ||sum_i w_i dW_i||_F per module, mean over modules.
                 For TIES/DARE that deviation is intended (they are not the plain sum); their
                 re-factoring quality is the ours/opt column: our low-rank error against our own dense
                 merge, divided by the optimum (full SVD truncation of that same matrix), mean over
                 modules; measured on model-n2 and the single-Linear cases.
Target, printed at the end for the single-Linear cases: 7B ties / dare_ties >= 20x PEFT's ties_svd /
dare_ties_svd (thin SVD) end to end, judged on the median paired ratio; ours/opt <= 1.005 is "within
0.5% of the optimal truncation error".

Run time on 2 CPU cores. PEFT's SVDs dominate: each svd / ties_svd / dare_ties_svd pair runs PEFT's
SVD of every module 2 + 2 x rounds times (8 at the default 3 rounds). --quick: about 3-4 min idle
(6.8 min measured with a load average of 2-3.7). Full run at --rounds 3, extrapolated from --quick
(SVD cost ~ m n^2; PEFT's ties_svd took 0.67 s at 1024x1024 and 1.6 s at 2816x1024 on one thread):
about 45-60 min on 2 idle cores (7b-11008x4096 ~20-30 min, 7b-4096x4096 ~8-12, model-n2 and model-n3
~8 each; the 7B target alone, second command above, ~20-30 min), about 1.25 h with --threads 1. On a
busy machine two threads make PEFT's SVD times swing several-fold between rounds; --threads 1 keeps
the paired ratios steady.
Nothing is downloaded (HF_HUB_OFFLINE=1; models come from transformers configs, random weights).
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
    # Must be set before the process starts: glibc reads it once.
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "131072"
    os.execv(sys.executable, [sys.executable, *sys.argv])
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs the network

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from safetensors import safe_open  # noqa: E402
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
SVD_TYPES = {"svd", "ties_svd", "dare_ties_svd"}
SVD_DRIVERS: list[str | None] = [None, "gesvd", "gesvdj", "gesvda"]  # torch.linalg.svd's cuSOLVER choices
# (our method, PEFT combination_type) pairs, in table order.
PAIRS = [
    ("linear", "linear"),
    ("linear", "svd"),
    ("stack", "cat"),
    ("ties", "ties_svd"),
    ("dare_ties", "dare_ties_svd"),
]
TARGET_SPEEDUP = 20.0
TARGET_OPTIMUM = 1.005


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@dataclass
class Side:
    """One side of a paired timing. Only `run` is timed: `setup`'s value is handed to it, and
    `cleanup` gets that value and run's result (so freeing the result is not timed either)."""

    run: Callable[[Any], Any]
    setup: Callable[[], Any] = lambda: None
    cleanup: Callable[[Any, Any], None] = lambda state, result: None


def call(
    side: Side,
    device: torch.device,
    meter: PeakMeter | None = None,
    inspect: Callable[[Any], None] | None = None,
) -> float:
    """One call of a side; returns the seconds of its `run`. `inspect` sees the result before cleanup."""
    state = side.setup()
    gc.collect()
    _sync(device)
    measuring: AbstractContextManager[Any] = meter.measure() if meter is not None else nullcontext()
    with measuring:
        start = time.perf_counter()
        result = side.run(state)
        _sync(device)
        seconds = time.perf_counter() - start
    if inspect is not None:
        inspect(result)
    side.cleanup(state, result)
    return seconds


@dataclass
class Paired:
    """Times of interleaved rounds; ratios[i] = peft[i] / ours[i], the same round."""

    ours: list[float]
    peft: list[float]

    @property
    def ratios(self) -> list[float]:
        return [p / o for p, o in zip(self.peft, self.ours, strict=True)]


def paired_rounds(ours: Side, peft: Side, rounds: int, device: torch.device) -> Paired:
    """`rounds` rounds of one call per side, ours first in even rounds and PEFT first in odd ones.
    Both sides must already be warm."""
    times = Paired([], [])
    for index in range(rounds):
        order = [(ours, times.ours), (peft, times.peft)]
        for side, sink in order if index % 2 == 0 else reversed(order):
            sink.append(call(side, device))
    return times


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def spread(values: list[float]) -> str:
    """min/median/max."""
    return "/".join(_number(v) for v in (min(values), statistics.median(values), max(values)))


@dataclass
class Row:
    case: str
    ours: str
    peft: str
    merge: Paired | None = None
    e2e: Paired | None = None
    ours_peak: int = 0
    peft_peak: int = 0
    ours_rank: str = ""
    peft_rank: str = ""
    ours_error: float = float("nan")
    peft_error: float = float("nan")
    refactor_ratio: float | None = None  # ours refactor error / full-SVD optimum, element-wise only


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


def lora_layers(peft_model: PeftModel, adapter: str) -> Iterator[tuple[str, Any]]:
    """(module name without PEFT's prefix, PEFT LoRA layer) for every layer holding `adapter`."""
    for name, module in peft_model.named_modules():
        lora_a = getattr(module, "lora_A", None)
        if isinstance(lora_a, nn.ModuleDict) and adapter in lora_a:
            yield name.removeprefix("base_model.model."), module


def exact_targets(peft_model: PeftModel, weights: list[float]) -> dict[str, torch.Tensor]:
    """sum_i w_i dW_i per module, dense, fp32, straight from PEFT's own layers."""
    targets: dict[str, torch.Tensor] = {}
    for name, module in lora_layers(peft_model, "a0"):
        targets[name] = sum(w * module.get_delta_weight(f"a{i}").detach().float() for i, w in enumerate(weights))
    return targets


def relative(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).norm() / expected.norm())


def check_saved(weights_file: Path, modules: int, rank: str) -> None:
    """An end-to-end output holds one LoRA A of the expected rank(s) per module."""
    with safe_open(str(weights_file), framework="pt") as handle:
        ranks = {handle.get_slice(k).get_shape()[0] for k in handle.keys() if ".lora_A." in k}
        count = sum(1 for k in handle.keys() if ".lora_A." in k)
    found = "/".join(str(r) for r in sorted(ranks))
    if count != modules or found != rank:
        raise RuntimeError(f"{weights_file}: {count} LoRA A of rank {found}, expected {modules} of rank {rank}")


def choose_svd_driver(
    peft_model: PeftModel, weights: list[float], device: torch.device, log: Callable[[str], None]
) -> str | None:
    """PEFT's svd_driver for this case on CUDA (see the module docstring); on CPU only None passes."""
    from peft.utils.merge_utils import ties

    matrices: dict[tuple[int, int], torch.Tensor] = {}
    for _, module in lora_layers(peft_model, "a0"):
        shape = (module.out_features, module.in_features)
        if shape not in matrices:
            deltas = [module.get_delta_weight(f"a{i}").detach().float() for i in range(len(weights))]
            matrices[shape] = ties(deltas, torch.tensor(weights, device=device), DENSITY, "total")
    timings: list[tuple[float, str | None]] = []
    for driver in SVD_DRIVERS:
        total = 0.0
        try:
            for dense in matrices.values():
                torch.linalg.svd(dense, full_matrices=False, driver=driver)  # warm-up
                _sync(device)
                start = time.perf_counter()
                u, s, vh = torch.linalg.svd(dense, full_matrices=False, driver=driver)
                _sync(device)
                total += time.perf_counter() - start
                error = relative((u[:, :RANK] * s[:RANK]) @ vh[:RANK], dense)
                singular = torch.linalg.svdvals(dense.double())
                optimum = float(singular[RANK:].norm() / singular.norm())
                if not error <= optimum * 1.001:
                    raise ValueError(f"rank-{RANK} error {error:.6f} against the optimum {optimum:.6f}")
        except (RuntimeError, ValueError) as exc:
            log(f"  svd_driver={driver}: rejected ({str(exc).splitlines()[0]})")
            continue
        log(f"  svd_driver={driver}: {total:.4f} s")
        timings.append((total, driver))
    return min(timings, key=lambda pair: pair[0])[1] if timings else None


# -- one case --------------------------------------------------------------------------------


def run_case(
    case: str,
    peft_model: PeftModel,
    base: nn.Module,
    folders: list[Path],
    device: torch.device,
    optimum_check: bool,
    rounds: int,
    pairs: list[tuple[str, str]],
    scratch: Path,
    log: Callable[[str], None],
) -> list[Row]:
    n = len(folders)
    weights = WEIGHTS[:n]
    names = [f"a{i}" for i in range(n)]
    targets = exact_targets(peft_model, weights)
    meter = PeakMeter(device)
    rows: list[Row] = []
    optimum_cache: dict[str, float] = {}
    driver = None  # torch takes no other on CPU
    if device.type == "cuda" and any(p in SVD_TYPES for _, p in pairs):
        driver = choose_svd_driver(peft_model, weights, device, log)
    print(f"  ({case}: PEFT SVD types with svd_full_matrices=False, svd_driver={driver})", flush=True)

    for ours_method, peft_type in pairs:
        row = Row(case=case, ours=ours_method, peft=peft_type)
        params: dict[str, Any] = {"svd_rank": RANK}
        if peft_type in SVD_TYPES:
            params |= {"svd_full_matrices": False, "svd_driver": driver}
        if peft_type in ("ties_svd", "dare_ties_svd"):
            params["density"] = DENSITY
        kwargs: dict[str, Any] = {"device": device.type, "dtype": "fp32"}
        if ours_method != "stack":
            kwargs["rank"] = RANK
        if get_method(ours_method).uses_density:
            kwargs["density"] = DENSITY
        peft_rank = str(n * RANK) if peft_type == "cat" else str(RANK)
        ours_rank = str(n * RANK) if ours_method == "stack" else str(RANK)

        # -- end to end: load the saved folders, merge, save the merged adapter to a new folder.
        def new_folder() -> Path:
            return Path(tempfile.mkdtemp(dir=scratch))

        def ours_e2e(out: Path) -> tuple[Path, Any, Any]:
            inputs = [(composer.load_lora(folder), w) for folder, w in zip(folders, weights, strict=True)]
            result = composer.compose(inputs, method=ours_method, **kwargs)
            result.save(out)
            return out, result, inputs  # freed in cleanup, untimed, as PEFT's model is

        def peft_e2e(state: tuple[nn.Module, Path]) -> tuple[Path, Any]:
            model, out = state
            loaded = PeftModel.from_pretrained(
                model, str(folders[0]), adapter_name=names[0], low_cpu_mem_usage=True, torch_device=device.type
            )
            for folder, name in zip(folders[1:], names[1:], strict=True):
                loaded.load_adapter(str(folder), name, low_cpu_mem_usage=True, torch_device=device.type)
            loaded.add_weighted_adapter(names, weights, "merged", combination_type=peft_type, **params)
            loaded.save_pretrained(str(out), selected_adapters=["merged"], save_embedding_layers=False)
            return out, loaded

        ours_e2e_side = Side(run=ours_e2e, setup=new_folder, cleanup=lambda out, result: shutil.rmtree(out))
        peft_e2e_side = Side(
            run=peft_e2e,
            setup=lambda: (copy.deepcopy(base), new_folder()),
            cleanup=lambda state, result: shutil.rmtree(state[1]),
        )

        # -- merge only: adapters already loaded on both sides.
        inputs = [(composer.load_lora(folder), w) for folder, w in zip(folders, weights, strict=True)]
        ours_merge_side = Side(run=lambda _: composer.compose(inputs, method=ours_method, **kwargs))
        peft_merge_side = Side(
            run=lambda _: peft_model.add_weighted_adapter(
                names, weights, "merged", combination_type=peft_type, **params
            ),
            cleanup=lambda state, result: peft_model.delete_adapter("merged"),
        )

        def peft_errors(row: Row) -> None:
            errors, ranks = [], set()
            for name, module in lora_layers(peft_model, "merged"):
                errors.append(relative(module.get_delta_weight("merged").detach().float(), targets[name]))
                ranks.add(module.lora_A["merged"].weight.shape[0])
            row.peft_error = sum(errors) / len(errors)
            row.peft_rank = "/".join(str(r) for r in sorted(ranks))

        log(f"  {case}: {ours_method} vs {peft_type}: warm-up end to end")
        call(
            ours_e2e_side,
            device,
            inspect=lambda r: check_saved(r[0] / "adapter_model.safetensors", len(targets), ours_rank),
        )
        call(
            peft_e2e_side,
            device,
            inspect=lambda r: check_saved(r[0] / "merged" / "adapter_model.safetensors", len(targets), peft_rank),
        )

        log(f"  {case}: {ours_method} vs {peft_type}: merge peak memory and errors")
        composition: list[Any] = []
        call(ours_merge_side, device)  # maps and hashes the held inputs, once
        call(ours_merge_side, device, meter=meter, inspect=composition.append)
        row.ours_peak = meter.peak_growth
        call(peft_merge_side, device, meter=meter, inspect=lambda _: peft_errors(row))
        row.peft_peak = meter.peak_growth

        result = composition[0]
        errors = []
        for report in result.modules:
            b, a, _ = result.adapter.factors(report.module, device)
            errors.append(relative(b @ a, targets[report.module].to(device)))
        row.ours_error = sum(errors) / len(errors)
        row.ours_rank = "/".join(str(r) for r in sorted({r.rank for r in result.modules}))
        if get_method(ours_method).kind == "elementwise" and optimum_check:
            if ours_method not in optimum_cache:
                log(f"  {case}: {ours_method}: full-SVD optimum of our dense merge")
                optimum_cache[ours_method] = refactor_over_optimum(ours_method, result, folders, weights, device)
            row.refactor_ratio = optimum_cache[ours_method]
        del result, composition

        log(f"  {case}: {ours_method} vs {peft_type}: {rounds} merge rounds")
        row.merge = paired_rounds(ours_merge_side, peft_merge_side, rounds, device)
        log(f"  {case}: {ours_method} vs {peft_type}: {rounds} end-to-end rounds")
        row.e2e = paired_rounds(ours_e2e_side, peft_e2e_side, rounds, device)
        rows.append(row)
        print_rows([row])
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


def print_header(device: torch.device, rounds: int) -> None:
    memory = "peak RSS growth" if device.type == "cpu" else "peak CUDA alloc growth"
    print(
        f"composer {composer.__version__} vs peft add_weighted_adapter, device={device}, "
        f"torch threads={torch.get_num_threads()} (both sides), fp32 (both sides), {os.cpu_count()} CPUs, "
        f"{rounds} paired rounds per measure"
    )
    print(f"memory = {memory} of the merge; err = mean over modules of ||R - sum w dW||_F / ||sum w dW||_F")
    print(f"{'':<40} {' merge only ':-^33} {' end to end (load+merge+save) ':-^33}")
    print(HEADER)
    print("-" * len(HEADER), flush=True)


HEADER = (
    f"{'case':<15} {'ours':<9} {'PEFT':<14} "
    f"{'PEFT s':>8} {'ours s':>8} {'P/o min/med/max':>15} "
    f"{'PEFT s':>8} {'ours s':>8} {'P/o min/med/max':>15} "
    f"{'PEFT MB':>8} {'ours MB':>8} {'rank P/o':>9} {'err PEFT':>9} {'err ours':>9} {'ours/opt':>8}"
)


def _timing(paired: Paired | None) -> str:
    if paired is None:
        return f"{'':>8} {'':>8} {'':>15}"
    peft, ours = statistics.median(paired.peft), statistics.median(paired.ours)
    return f"{peft:>8.3f} {ours:>8.3f} {spread(paired.ratios):>15}"


def print_rows(rows: list[Row]) -> None:
    for r in rows:
        ratio = "" if r.refactor_ratio is None else f"{r.refactor_ratio:.4f}"
        print(
            f"{r.case:<15} {r.ours:<9} {r.peft:<14} {_timing(r.merge)} {_timing(r.e2e)} "
            f"{r.peft_peak / 2**20:>8.1f} {r.ours_peak / 2**20:>8.1f} "
            f"{r.peft_rank + '/' + r.ours_rank:>9} {r.peft_error:>9.4f} {r.ours_error:>9.4f} {ratio:>8}",
            flush=True,
        )


def print_load() -> None:
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"  (load average after this case: {load})", flush=True)


def print_footer(rows: list[Row], quick: bool) -> None:
    print()
    print("PEFT s / ours s = median seconds; P/o = PEFT time / ours, paired per round, min/median/max.")
    print("ours/opt = our randomized low-rank error / the full-SVD optimum on our own dense TIES/DARE merge")
    print("(1.0 = optimal). PEFT linear's error is its cross-terms; ties/dare errors are deviations from the")
    print("plain weighted sum, intended by those methods.")
    targets = [r for r in rows if r.case.startswith(("7b-", "one-")) and r.ours in ("ties", "dare_ties")]
    if not targets:
        return
    print()
    print(
        f"TARGET: 7B ties / dare_ties >= {TARGET_SPEEDUP:.0f}x PEFT's ties_svd / dare_ties_svd (thin SVD) "
        "end to end (median paired ratio)"
    )
    if quick:
        print("  (--quick shapes, not 7B: indicative only; run the full cases for the target)")
    for r in targets:
        assert r.e2e is not None and r.merge is not None
        median = statistics.median(r.e2e.ratios)
        verdict = "met" if median >= TARGET_SPEEDUP else "NOT met"
        line = (
            f"  {r.case:<15} {r.ours:<9} vs {r.peft:<14} end to end {median:6.1f}x ({verdict}; min/med/max "
            f"{spread(r.e2e.ratios)}), merge only {statistics.median(r.merge.ratios):.1f}x"
        )
        if r.refactor_ratio is not None:
            within = "within" if r.refactor_ratio <= TARGET_OPTIMUM else "NOT within"
            line += f"; ours/opt {r.refactor_ratio:.4f} ({within} 0.5% of the optimal truncation error)"
        print(line, flush=True)


# -- other families ----------------------------------------------------------------------------


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

    def ours_ia3(_: Any = None) -> Any:
        return compose(inputs, method="linear", device=str(device))

    def peft_ia3(_: Any = None) -> None:
        peft_model.add_weighted_adapter(["a0", "a1"], [0.7, 0.5], adapter_name="mix")

    result = ours_ia3()  # warm, both
    peft_ia3()
    theirs = {k.replace(".mix", ""): v for k, v in peft_model.state_dict().items() if "ia3_l.mix" in k}
    peft_model.delete_adapter("mix")
    mine = result.adapter.tensors()
    error = max(float((mine[k].to(v) - v).abs().max()) for k, v in theirs.items())
    times = paired_rounds(
        Side(run=ours_ia3), Side(run=peft_ia3, cleanup=lambda s, r: peft_model.delete_adapter("mix")), rounds, device
    )
    print(
        f"{'ia3-n2':<16} {'add_weighted_adapter':<26} {statistics.median(times.peft):>8.4f} "
        f"{statistics.median(times.ours):>8.4f} {spread(times.ratios):>22} {error:>10.2e}"
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

    def peft_deltas(_: Any = None) -> dict[str, torch.Tensor]:
        return {n: m.get_delta_weight("default").detach().float() for n, m in layers}

    truth = peft_deltas()
    adapter = load_adapter(scratch / "loha")
    for rank in (64, 8):

        def ours_loha(_: Any = None, rank: int = rank) -> Any:
            return compose([(adapter, 1.0)], method="linear", rank=rank, device=str(device))

        result = ours_loha()
        errors = []
        for module, delta in truth.items():
            b, a, _ = result.adapter.factors(module, device)
            errors.append(relative(b @ a * result.adapter.scaling(module), delta))
        times = paired_rounds(Side(run=ours_loha), Side(run=peft_deltas), rounds, device)
        print(
            f"{f'loha-lora r{rank}':<16} {'get_delta_weight (dense)':<26} {statistics.median(times.peft):>8.4f} "
            f"{statistics.median(times.ours):>8.4f} {spread(times.ratios):>22} {sum(errors) / len(errors):>10.2e}"
        )
    print("peer s / ours s = median seconds; speedup = peer time / ours per round (min/median/max);")
    print("ia3 error is absolute, loha error relative.")


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
    parser.add_argument(
        "--pairs", default="", help="comma-separated PEFT combination types, e.g. ties_svd,dare_ties_svd (default all)"
    )
    parser.add_argument("--families", action="store_true", help="only IA3 + IA3 and LoHa -> LoRA")
    parser.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="interleaved paired rounds per measure, at least 3 (default 3; 7 with --families)",
    )
    args = parser.parse_args()
    rounds = args.rounds or (7 if args.families else 3)
    if rounds < 3:
        parser.error("--rounds must be at least 3")
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
            run_family_cases(llama, Path(scratch), device, rounds)
        log("done")
        return
    single_shapes = [(1024, 1024), (2816, 1024)] if args.quick else [(4096, 4096), (11008, 4096)]
    # name: (kind, inputs or d_out, d_in)
    cases: dict[str, tuple[str, int, int]] = {f"model-n{n}": ("model", n, 0) for n in (2, 3)}
    cases |= {(f"one-{o}x{i}" if args.quick else f"7b-{o}x{i}"): ("single", o, i) for o, i in single_shapes}
    selected = args.cases.split(",") if args.cases else list(cases)
    unknown = set(selected) - set(cases)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; choose from {', '.join(cases)}")
    known_pairs = [peft for _, peft in PAIRS]
    chosen = args.pairs.split(",") if args.pairs else known_pairs
    if set(chosen) - set(known_pairs):
        parser.error(f"unknown pairs {sorted(set(chosen) - set(known_pairs))}; choose from {', '.join(known_pairs)}")
    pairs = [pair for pair in PAIRS if pair[1] in chosen]
    print_header(device, rounds)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as scratch:
        for case in selected:
            kind, first, second = cases[case]
            log(f"building {case}")
            if kind == "model":
                base = llama()
                peft_model, folders = add_random_adapters(copy.deepcopy(base), TARGETS, first, Path(scratch) / case)
                check = first == 2
            else:
                base = OneLinear(first, second)
                peft_model, folders = add_random_adapters(copy.deepcopy(base), ["proj"], 2, Path(scratch) / case)
                check = True
            peft_model.to(device)
            base.to(device)
            rows += run_case(case, peft_model, base, folders, device, check, rounds, pairs, Path(scratch), log)
            print_load()
            del peft_model, base
    print_footer(rows, args.quick)
    log("done")


if __name__ == "__main__":
    main()

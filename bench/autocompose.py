"""Auto-composition: a weight search (composer.search, CMA-ES) against fixed merges, scored on held-out examples.

Everything is real and local: the demo's tiny base model (demo/skills.py, trained in ~15 s), one LoRA per
skill of demo.skills.ALL_SKILLS (capital, opposite, mirror, ladder; a few seconds each, retrained for every
seed), and the target suites of demo.skills.TARGET_SUITES, each mixing two skills' exact-match questions,
so a single adapter answers about half. Every suite is split by composer.search.split_examples (the
seed's split); the search sees only the search split, every row below is scored on the held-out split.

For each seed and suite, over the pool of every skill's adapter (the LoraHub setting: the search has to
find which adapters matter; --pool relevant gives it the suite's own two only):

    single <skill>      one parent alone; best single: the one best on the search split
    uniform             the uniform-weight merge, 1/n each (composer `stack`: the exact sum)
    linear / ties / dare_ties   the composer's methods at the hub's defaults (weight 1 each, rank = the
                        largest input rank, density 0.5, seed 0)
    best default        the best of those three, picked on the search split as a user would
    search              search_weights with --budget scores on the search split (objective --objective),
                        its best weights composed with `stack` and evaluated like any stored adapter

Every adapter row goes through composer.evaluation.evaluate (the eval workers' path: a stored adapter
merged into the cached base). Printed: per method, the mean held-out score over suites for each seed,
as mean and min / median / max over seeds, and whether search's worst seed beats the row's best.

Timing, interleaved per suite and seed with the order rotating: the search's wall time (reading the
inputs once included) against budget x one evaluation of a stored adapter (the search's result) on the
search split through the normal applied_adapter path (median of 5); target <= 1.3x, for each objective.

    python bench/autocompose.py                      # 3 seeds, budget 40: ~3 min on 2 busy cores
    python bench/autocompose.py --seeds 1 --budget 12 --suites atlas-qa   # smoke, ~40 s
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import composer  # noqa: E402
from composer.evaluation import LoadedModel, evaluate, load_base_model  # noqa: E402
from composer.io import load_lora  # noqa: E402
from composer.search import (  # noqa: E402
    LoraCombination,
    SearchResult,
    search_weights,
    split_examples,
    suite_scorer,
    uniform_weights,
)
from demo.skills import ALL_SKILLS, TARGET_SUITES, TargetSuite, build_base_model, train_lora  # noqa: E402

DEFAULT_METHODS = ("linear", "ties", "dare_ties")
TIMING_TARGET = 1.3


def compose_to(folder: Path, adapters: Sequence[Path], weights: Sequence[float], method: str) -> Path:
    """A stored adapter from the composer's own method at the hub's defaults."""
    density = 0.5 if method in ("ties", "dare_ties") else None
    composer.compose(list(zip(adapters, weights, strict=True)), method=method, density=density, out=folder)
    return folder


def timed(job: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = job()
    return time.perf_counter() - started, value


def run_search(
    loaded: LoadedModel, adapters: Sequence[Path], suite: TargetSuite, examples: list[dict[str, Any]], **options: Any
) -> SearchResult:
    """The whole search as a worker would run it: read the inputs once, then `budget` candidates."""
    inputs = [load_lora(folder) for folder in adapters]
    with LoraCombination(loaded.model, inputs) as combination:
        score = suite_scorer(loaded, combination, suite.kind, examples, objective=options.pop("objective"))  # type: ignore[arg-type]
        result = search_weights(len(adapters), score, **options)
    for adapter in inputs:
        adapter.close()
    return result


def spread(values: Sequence[float], fmt: str = ".3f") -> str:
    return f"{format(min(values), fmt)} / {format(statistics.median(values), fmt)} / {format(max(values), fmt)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1: adapters' training, split and search")
    parser.add_argument("--budget", type=int, default=40, help="score calls per search")
    parser.add_argument("--search-fraction", type=float, default=0.5)
    parser.add_argument("--objective", choices=("loss", "metric"), default="loss", help="what the search maximises")
    parser.add_argument("--sigma", type=float, default=None, help="CMA-ES initial step (default: bounds' width / 10)")
    parser.add_argument("--pool", choices=("all", "relevant"), default="all", help="the search's inputs")
    parser.add_argument("--suites", default=",".join(s.name for s in TARGET_SUITES))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: a shared machine)")
    parser.add_argument("--work", type=Path, default=None, help="keep models here (default: a temporary folder)")
    args = parser.parse_args()
    suites = [s for s in TARGET_SUITES if s.name in args.suites.split(",")]
    if not suites or args.seeds < 1 or args.budget < 1:
        parser.error("need at least one known suite, one seed and a budget of 1")
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.work or Path(tmp)
        base = root / "base"
        if not (base / "config.json").is_file():
            build_base_model(base)
        loaded = load_base_model(base, torch.device("cpu"))
        # scores[method][seed] = held-out values, one per suite; picked[seed] = best default's method per suite.
        scores: dict[str, list[list[float]]] = {}
        times: dict[str, list[float]] = {"search loss": [], "search metric": [], "eval": []}
        ratios: dict[str, list[float]] = {"loss": [], "metric": []}
        notes: list[str] = []
        for seed in range(args.seeds):
            folders = {}
            for index, skill in enumerate(ALL_SKILLS):
                folder = root / f"seed{seed}" / skill.name
                if not (folder / "adapter_config.json").is_file():
                    train_lora(base, skill, folder, seed=100 * seed + index)
                folders[skill.name] = folder
            row: dict[str, list[float]] = {}
            for number, suite in enumerate(suites):
                names = list(folders) if args.pool == "all" else list(suite.skills)
                pool = [folders[name] for name in names]
                search_split, held_out = split_examples(suite.lines(), args.search_fraction, seed)
                work = root / f"seed{seed}" / suite.name

                def held(
                    folder: Path | None, examples: list[dict[str, Any]] = held_out, s: TargetSuite = suite
                ) -> float:
                    return evaluate(loaded, folder, s.kind, examples).value  # type: ignore[arg-type]

                row.setdefault("base model", []).append(held(None))
                for name, folder in zip(names, pool, strict=True):
                    row.setdefault(f"single {name}", []).append(held(folder))
                best_single = max(pool, key=lambda f: evaluate(loaded, f, suite.kind, search_split).value)  # type: ignore[arg-type]
                row.setdefault("best single (picked on search split)", []).append(held(best_single))
                uniform = compose_to(work / "uniform", pool, uniform_weights(len(pool)), "stack")
                row.setdefault("uniform (1/n, exact)", []).append(held(uniform))
                defaults = {}
                for method in DEFAULT_METHODS:
                    folder = compose_to(work / method, pool, [1.0] * len(pool), method)
                    defaults[method] = folder
                    row.setdefault(f"{method} (defaults)", []).append(held(folder))
                picked = max(
                    DEFAULT_METHODS,
                    key=lambda m: evaluate(loaded, defaults[m], suite.kind, search_split).value,  # type: ignore[arg-type]
                )
                row.setdefault("best default (picked on search split)", []).append(row[f"{picked} (defaults)"][-1])

                options = {"budget": args.budget, "seed": seed, "sigma": args.sigma}
                searches: dict[str, tuple[float, SearchResult]] = {}
                found: Path | None = None
                # Interleaved timing: the order of the three jobs rotates with the suite and the seed.
                jobs = ["eval", "loss", "metric"]
                shift = (seed + number) % 3
                for job in jobs[shift:] + jobs[:shift]:
                    if job == "eval":
                        if found is None:  # the reference needs the stored result: search once, untimed
                            result = run_search(loaded, pool, suite, search_split, objective=args.objective, **options)
                            found = compose_to(work / "search", pool, result.weights, "stack")
                        samples = [timed(lambda f=found: held(f, search_split))[0] for _ in range(5)]
                        times["eval"].append(statistics.median(samples))
                    else:
                        searches[job] = timed(
                            lambda j=job: run_search(loaded, pool, suite, search_split, objective=j, **options)
                        )
                        times[f"search {job}"].append(searches[job][0])
                reference = times["eval"][-1]
                for objective, (seconds, _) in searches.items():
                    ratios[objective].append(seconds / (args.budget * reference))
                best = searches[args.objective][1]
                stored = compose_to(work / "search", pool, best.weights, "stack")
                row.setdefault(f"search (budget {args.budget})", []).append(held(stored))
                weights = ", ".join(f"{n} {w:+.2f}" for n, w in zip(names, best.weights, strict=True))
                notes.append(
                    f"seed {seed} {suite.name}: search {len(search_split)} / held-out {len(held_out)} examples; "
                    f"best default {picked}; search weights {weights}"
                )
            for method, values in row.items():
                scores.setdefault(method, []).append(values)
            print(f"seed {seed + 1}/{args.seeds} done", file=sys.stderr, flush=True)

    print(
        f"suites: {', '.join(s.name for s in suites)} ({suites[0].kind}); pool: {args.pool}; "
        f"search: CMA-ES, budget {args.budget}, objective {args.objective}, sigma {args.sigma or 'bounds/10'}; "
        f"split {args.search_fraction:.0%} search; {args.seeds} seeds; {torch.get_num_threads()} thread(s)"
    )
    print("held-out score (mean over suites), per seed:")
    search_name = f"search (budget {args.budget})"
    search_means = [statistics.mean(v) for v in scores[search_name]]
    print(f"{'method':<40}{'mean':>7}{'min / median / max':>22}   {'search beats it (worst seed > its best)'}")
    for method, per_seed in scores.items():
        means = [statistics.mean(v) for v in per_seed]
        verdict = ""
        if method != search_name:
            margin = statistics.mean(search_means) - statistics.mean(means)
            beats = min(search_means) > max(means)
            verdict = f"   {'yes' if beats else 'NO '} (mean margin {margin:+.3f})"
        print(f"{method:<40}{statistics.mean(means):>7.3f}{spread(means):>22}{verdict}")
    print("per suite, mean over seeds:")
    for number, suite in enumerate(suites):
        cells = ", ".join(
            f"{method.split(' (')[0]} {statistics.mean(per_seed[s][number] for s in range(args.seeds)):.2f}"
            for method, per_seed in scores.items()
        )
        print(f"  {suite.name}: {cells}")
    for line in notes:
        print(f"  {line}")
    print(
        f"timing: one evaluation of the stored result on the search split {spread(times['eval'], '.4f')} s "
        f"(min / median / max); search wall time loss {spread(times['search loss'], '.2f')} s, "
        f"metric {spread(times['search metric'], '.2f')} s"
    )
    for objective, values in ratios.items():
        verdict = "met" if statistics.median(values) <= TIMING_TARGET else "NOT met"
        print(
            f"  search ({objective}) / (budget x one evaluation): {spread(values)}   "
            f"target <= {TIMING_TARGET}: {verdict} (median)"
        )


if __name__ == "__main__":
    main()

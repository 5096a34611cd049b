"""Composition method `search`: the hub finds the weights of a LoRA combination itself (the request
is checked at submit time by registry.compositions.check_search; this is the worker's side).

A GPU worker (queue `gpu`) loads the base model once (the eval workers' cache), reads the inputs'
factors once, and lets CMA-ES (composer/search.py) propose weight vectors; each candidate is merged
into the cached base weights, scored on the target suites' *search* split, and the base restored
exactly, so a candidate costs about one evaluation. The best candidate is composed with `linear`
and published like any composition (lineage carries the found weights; the job report and
composition.json carry the whole trace), then evaluated and gated on the suites' *held-out* split,
which the search never read.

Parameters: {"suites": [...], "budget": 40, "merge": "linear", "bounds": [-1.5, 1.5],
"rank": null, "seed": 0, "objective": "loss"}.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from django.conf import settings

import composer
from composer import CompositionError
from composer.evaluation import BaseModelCache, EvaluationError, Kind, pick_device
from composer.search import Candidate, LoraCombination, search_weights, suite_scorer
from registry import compositions, evaluations, jobs
from registry.exceptions import RegistryError
from registry.models import BaseModel, CompositionJob, EvalSuite, Method
from registry.services import scratch_folder

SEARCH_BAND = (5, 80)  # progress: fetching and loading below, composing and publishing above


class _SearchProgress:
    """Candidates done / budget and the best score so far, on the job; renews its lease."""

    def __init__(self, job: CompositionJob, budget: int) -> None:
        self.job, self.budget = job, budget
        self.best: Candidate | None = None
        self.trace: list[dict[str, Any]] = []
        self.last = 0.0

    def __call__(self, index: int, candidate: Candidate) -> None:
        self.trace.append(_candidate_json(candidate))
        if self.best is None or _better(candidate.score, self.best.score):
            self.best = candidate
        now = time.monotonic()
        if now - self.last < 1.0 and index + 1 < self.budget:
            return
        self.last = now
        low, high = SEARCH_BAND
        jobs.renew(
            CompositionJob,
            self.job.pk,
            progress=low + (high - low) * (index + 1) // self.budget,
            report={"search": {"done": index + 1, "budget": self.budget, "best": _candidate_json(self.best),
                               "trace": self.trace}},
        )  # fmt: skip


def _better(score: float, than: float) -> bool:
    return math.isfinite(score) and (not math.isfinite(than) or score > than)


def _candidate_json(candidate: Candidate) -> dict[str, Any]:
    return {
        "weights": [round(w, 6) for w in candidate.weights],
        "score": candidate.score if math.isfinite(candidate.score) else None,
    }


def run_search(job_id: str, *, worker: str, cache: BaseModelCache = evaluations.MODEL_CACHE) -> CompositionJob | None:
    """The GPU worker's side of a `search` job: search, compose the best, publish, start the gate."""
    job = jobs.claim(CompositionJob, job_id, worker)
    if job is None:
        return None
    params = job.recipe["parameters"]
    timings: dict[str, float] = {}
    try:
        with scratch_folder("search-") as tmp:
            started = time.monotonic()
            staged = compositions._stage_inputs(job, Path(tmp) / "inputs")
            timings["fetched_bytes"] = sum(s.fetched_bytes for _, s in staged)
            base = BaseModel.objects.get(name=job.recipe["base_model"])
            suites = list(EvalSuite.objects.filter(base_model=base, name__in=params["suites"]).order_by("name"))
            loaded = cache.get(evaluations.base_model_folder(base), pick_device(settings.EVAL_DEVICE))
            adapters = [composer.load_lora(s.folder, reference=r.published_reference) for r, s in staged]
            timings["load_seconds"] = round(time.monotonic() - started, 3)
            jobs.renew(CompositionJob, job.pk, progress=SEARCH_BAND[0])

            started = time.monotonic()
            progress = _SearchProgress(job, params["budget"])
            with LoraCombination(loaded.model, adapters) as combination:
                scorers = [
                    suite_scorer(
                        loaded,
                        combination,
                        cast(Kind, suite.kind),
                        evaluations.search_examples(suite),
                        objective=params["objective"],
                        batch_size=settings.EVAL_BATCH_SIZE,
                        max_new_tokens=suite.max_new_tokens,
                    )
                    for suite in suites
                ]

                def combined(weights: tuple[float, ...]) -> float:
                    return sum(score(weights) for score in scorers) / len(scorers)

                found = search_weights(
                    len(adapters),
                    combined,
                    budget=params["budget"],
                    bounds=(params["bounds"][0], params["bounds"][1]),
                    seed=params["seed"],
                    on_candidate=progress,
                )
                # References beside the trace, outside the budget: each parent alone, at weight 1.
                n = len(adapters)
                parents = [
                    {"adapter": r.published_reference, "score": combined(tuple(float(i == j) for j in range(n)))}
                    for i, (r, _) in enumerate(staged)
                ]
            timings["search_seconds"] = round(time.monotonic() - started, 3)

            started = time.monotonic()
            weighted = [(replace(r, weight=w), s) for (r, s), w in zip(staged, found.weights, strict=True)]
            inputs = compositions._load_inputs(job, weighted)
            out = Path(tmp) / "out"
            result = composer.compose(
                [(adapter, resolved.weight) for resolved, adapter in inputs],
                method="linear",
                threads=settings.COMPOSER_THREADS,
                out=out,
                **({"rank": params["rank"]} if params["rank"] else {}),
            )
            assert isinstance(result, composer.CompositionResult), "linear over LoRA inputs gives one LoRA"
            search = {
                "objective": params["objective"],
                "suites": params["suites"],
                "weights": [round(w, 6) for w in found.weights],
                "score": found.score,
                "uniform_score": found.trace[0].score,
                "parents": parents,
                "budget": params["budget"],
                "trace": progress.trace,
            }
            recorded = result.adapter.recipe if result.adapter.recipe is not None else result.recipe
            recorded["search"] = search  # what composition.json records beside the recipe
            private = {r.published_reference for r, _ in inputs if r.version.adapter.is_private}
            compositions._scrub_digests(recorded, private)
            result.save(out)  # composition.json with the trace (the weights file stays as written)
            (out / "README.md").write_text(compositions.composition_card(job, inputs, result))
            version, created = compositions._publish(job, inputs, out, method=Method.LORA)
            timings["publish_seconds"] = round(time.monotonic() - started, 3)
    except (CompositionError, EvaluationError, RegistryError) as exc:
        jobs.fail_with(CompositionJob, job.pk, exc, default_code="search_failed")
        job.refresh_from_db()
        return job
    return compositions.finish(
        job,
        version,
        created=created,
        report={**result.summary, "search": search},
        timings=timings,
        gate_suites=params["suites"],
    )

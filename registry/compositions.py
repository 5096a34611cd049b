"""Composition jobs: compose hybrid adapters from registry adapters on Celery workers.

`submit_composition` validates a recipe against the registry (answering 4xx before anything is
queued) and records a job; `run_composition` is the worker's side: claim the job, stream the
inputs from storage, run `composer`, and publish the result through the same path as a push.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

import composer
from composer import CompositionError, CompositionParams, parse_expression
from composer.base import BaseCheckpoint, ManifestBase
from composer.compat import Input, check_plain_lora_config, load_adapter
from composer.families import COMPOSABLE_TYPES, NEEDS_BASE, BaseView, family_of, sums_ia3_vectors
from composer.hybrid import PROMPT_TYPES as HYBRID_PROMPT_TYPES
from composer.hybrid import HybridPart, HybridResult, assemble_hybrid
from composer.prompts import PROMPT_METHODS
from registry import enqueue, jobs
from registry.access import PRIVATE_REFERENCE, Actor, access_adapter, access_namespace, require_write
from registry.base_models import BaseModelUnavailable, fetch_base_model
from registry.evaluations import start_validation
from registry.exceptions import InvalidContent, InvalidRequest, NotAuthenticated, NotFound, RegistryError, StateConflict
from registry.infrastructure import as_unavailable
from registry.models import (
    LORA_FAMILY,
    Adapter,
    AdapterVersion,
    BaseModel,
    CompositionJob,
    EvalSuite,
    JobStatus,
    LineageRole,
    Method,
    SuiteKind,
    VersionParent,
    method_phrase,
)
from registry.push import folder_files, push_version
from registry.services import AdapterMetadata, Staged, resolve_version, scratch_folder, stage_versions

log = logging.getLogger(__name__)

HYBRID = "hybrid"  # parts kept side by side (composer/hybrid.py), not a merge method
# Parameters a caller may set; the worker chooses the device.
ALLOWED_PARAMETERS = frozenset({"rank", "density", "seed", "majority_sign_method", "energy", "dtype"})
COPY_CHUNK = 1024 * 1024
# Progress is reported in bands: inputs (0-10), composing (10-85), publishing (85-100).
COMPOSE_BAND = (10, 85)


@dataclass(frozen=True)
class InputSpec:
    adapter: str
    weight: float
    version: str | int | None = None


@dataclass(frozen=True)
class CompositionRequest:
    into: str
    method: str | None = None
    inputs: Sequence[InputSpec] = ()
    expression: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    force: bool = False


@dataclass(frozen=True)
class SubmitResult:
    job: CompositionJob
    created: bool


@dataclass(frozen=True)
class ResolvedInput:
    version: AdapterVersion
    weight: float

    @property
    def reference(self) -> str:
        return f"{self.version.adapter.full_name}:{self.version.number}"

    @property
    def published_reference(self) -> str:
        """How the result's card and composition.json name this input: a private parent's name
        never travels with a result that others may see."""
        return PRIVATE_REFERENCE if self.version.adapter.is_private else self.reference


# --- Submitting ---------------------------------------------------------------------------------


def submit_composition(*, actor: Actor, request: CompositionRequest) -> SubmitResult:
    """Validate a recipe and queue a job, or return the job that already ran the same recipe.

    1. Resolve the inputs (from the list or the expression) to versions the caller may see.
    2. Check they are plain LoRA adapters of one base model, and that the method accepts the
       parameters, so mistakes are answered at once (4xx) instead of failing on a worker.
    3. Check the caller may write the target, and that the target fits the base model.
    4. Canonicalize the recipe; unless `force`, an identical recipe returns its existing job.
    5. Create the job and enqueue its task once the transaction commits.
    """
    if actor.user is None or not actor.is_authenticated:
        raise NotAuthenticated("sign in or send a token with write scope", code="auth_required")
    requester = actor.user
    method, specs = method_and_inputs(request)
    resolved = [resolve_input(actor, spec) for spec in specs]
    parameters = request.parameters
    if method == HYBRID:
        if request.parameters:
            raise InvalidRequest("hybrid keeps its parts as they are: it takes no parameters", code="bad_parameters")
        base_model, method_name = check_hybrid_inputs(resolved), HYBRID
    elif method == SEARCH:
        base_model, parameters = check_search(resolved, request.parameters)
        method_name = "search"
        resolved = [ResolvedInput(version=r.version, weight=1.0) for r in resolved]  # the search finds them
    else:
        params = check_parameters(method, request.parameters, n_inputs=len(resolved))
        base_model, method_name = check_inputs(resolved, params), params.spec.name
    target_ns, target_name = check_target(actor, request.into, base_model)

    recipe = {
        "method": method_name,
        "inputs": [
            {"adapter": r.version.adapter.full_name, "version": r.version.number, "weight": r.weight} for r in resolved
        ],
        "parameters": {k: parameters[k] for k in sorted(parameters)},
        "expression": request.expression,
        "base_model": base_model,
        "into": f"{target_ns}/{target_name}",
    }
    recipe_hash = hashlib.sha256(json.dumps(recipe, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    existing = _live_job(recipe_hash) if not request.force else None
    if existing is not None:
        return SubmitResult(job=existing, created=False)
    jobs.check_active_jobs(actor.user_id)
    try:
        with transaction.atomic():
            job = CompositionJob.objects.create(
                created_by=requester,
                recipe=recipe,
                recipe_hash=recipe_hash,
                target_namespace=target_ns,
                target_name=target_name,
                description=request.description[:500],
                forced=request.force,
            )
            enqueue.on_commit(CompositionJob, job.pk, if_broker_down=lambda exc: _forget(job, exc))
    except IntegrityError:
        # An identical request created it first (the database allows one live job per recipe).
        existing = _live_job(recipe_hash)
        if existing is None:
            raise
        return SubmitResult(job=existing, created=False)
    return SubmitResult(job=job, created=True)


def _live_job(recipe_hash: str) -> CompositionJob | None:
    found: CompositionJob | None = (
        CompositionJob.objects.filter(recipe_hash=recipe_hash)
        .exclude(status=JobStatus.FAILED)
        .order_by("forced", "-created_at")
        .first()
    )
    return found


def _forget(job: CompositionJob, exc: BaseException) -> None:
    """The broker refused the job: no worker will ever hear of it, so it must not stay queued (the
    caller gets a 503 and may ask again)."""
    outage = as_unavailable(exc)
    if outage is None:
        raise exc
    CompositionJob.objects.filter(pk=job.pk, status=JobStatus.QUEUED).delete()
    raise outage from exc


def method_and_inputs(request: CompositionRequest) -> tuple[str, list[InputSpec]]:
    if request.expression and request.inputs:
        raise InvalidRequest("send either inputs or an expression, not both", code="ambiguous_recipe")
    if request.expression:
        try:
            terms = parse_expression(request.expression)
        except CompositionError as exc:
            raise InvalidContent(str(exc), code=exc.code) from None
        specs = [_spec_from_reference(reference, weight) for reference, weight in terms]
        return request.method or "expr", specs
    if not request.inputs:
        raise InvalidRequest("a composition needs inputs (or an expression)", code="no_inputs")
    if not request.method:
        raise InvalidRequest("say which method composes the inputs", code="missing_method")
    return request.method, list(request.inputs)


def _spec_from_reference(reference: str, weight: float) -> InputSpec:
    """`ns/name` or `ns/name:version` (a number, a label or `latest`)."""
    name, _, version = reference.partition(":")
    if name.count("/") != 1:
        raise InvalidContent(
            f"{reference!r} is not an adapter reference of the form ns/name[:version]", code="bad_reference"
        )
    return InputSpec(adapter=name, weight=weight, version=version or None)


def resolve_input(actor: Actor, spec: InputSpec) -> ResolvedInput:
    namespace, _, name = spec.adapter.partition("/")
    if not namespace or not name:
        raise InvalidRequest(f"input {spec.adapter!r} must be ns/name", code="bad_reference")
    if not isinstance(spec.weight, (int, float)) or isinstance(spec.weight, bool) or not math.isfinite(spec.weight):
        raise InvalidRequest(f"the weight of {spec.adapter} must be a finite number", code="bad_weight")
    adapter = access_adapter(actor, namespace, name)
    return ResolvedInput(version=resolve_version(adapter, spec.version), weight=float(spec.weight))


# Methods whose files do not say their layers' shapes: the base model's manifest does.
_NEEDS_SHAPES = frozenset({"VERA", "FOURIERFT"})


def check_inputs(resolved: Sequence[ResolvedInput], params: CompositionParams | None) -> str:
    """Every input has a computable weight delta (a LoRA, or a method of composer.families), and all
    are adapters of one base model, which holds what their deltas need (its weights for IA3 and DoRA)."""
    prompts = [r for r in resolved if r.version.config.get("peft_type") == "PROMPT_TUNING"]
    if prompts and len(prompts) == len(resolved) and params is not None:
        if params.spec.name not in PROMPT_METHODS:
            raise InvalidContent(
                f"prompt-tuning inputs combine by {', '.join(PROMPT_METHODS)}, not {params.spec.name}",
                code="unsupported_method",
            )
        return _one_base(resolved)
    for r in resolved:
        adapter, config = r.version.adapter, r.version.config
        family = family_of(config)
        if family in COMPOSABLE_TYPES:
            continue
        if config.get("hybrid"):
            _check_hybrid_input(r, params)
            continue
        if adapter.method not in LORA_FAMILY or r.version.peft_type != "LORA":
            raise InvalidContent(
                f"{r.reference} is {method_phrase(adapter.get_method_display())}, which changes no weight by a "
                "computable delta; composable: LoRA and its variants, AdaLoRA, LoHa, LoKr, VeRA, FourierFT, IA3, OFT, BOFT",
                code="unsupported_method",
            )
        try:
            check_plain_lora_config(config, r.reference)
        except CompositionError as exc:
            raise InvalidContent(exc.message, code=exc.code) from None
    name = _one_base(resolved)
    base = resolved[0].version.adapter.base_model
    families = {family for r in resolved for family in _families(r.version.config)}
    if params is not None and sums_ia3_vectors(families, params.spec.name, params.rank):
        return name  # IA3 vectors summed: nothing of the base is needed
    if families & NEEDS_BASE and not base.files_digest:
        raise InvalidContent(
            f"the deltas of {', '.join(sorted(families & NEEDS_BASE))} inputs are made of the base model's weights, "
            f"which this hub does not store for {base.name} (an admin registers them with "
            "`register_base_model --from-folder`)",
            code="base_model_required",
        )
    if families & _NEEDS_SHAPES and not base.manifest:
        raise InvalidContent(
            f"{base.name} has no shape manifest, which {', '.join(sorted(families & _NEEDS_SHAPES))} inputs need",
            code="base_model_required",
        )
    return name


def _families(config: dict[str, Any]) -> set[str]:
    """The delta rules an input's weights follow: its own, or each part's for a hybrid."""
    if not config.get("hybrid"):
        return {family_of(config)}
    return {"DORA" if p.get("method") == "dora" else str(p.get("peft_type")) for p in config.get("parts") or []}


def _check_hybrid_input(r: ResolvedInput, params: CompositionParams | None) -> None:
    """A hybrid joins a weighted sum: its weight parts merge with the others', its prompt with theirs."""
    if params is None or params.spec.name not in ("linear", "expr"):
        raise InvalidContent(
            f"{r.reference} is a hybrid: hybrids combine by linear or expr (weight parts into one LoRA, prompts into "
            "one prompt), or join a hybrid of their own parts",
            code="unsupported_method",
        )
    for part in r.version.config.get("parts") or []:
        peft_type = str(part.get("peft_type"))
        if peft_type not in COMPOSABLE_TYPES | {"LORA"} | set(HYBRID_PROMPT_TYPES):
            raise InvalidContent(
                f"{r.reference}: its part {part.get('path')!r} ({part.get('method')}) has no computable delta",
                code="unsupported_method",
            )


def _one_base(resolved: Sequence[ResolvedInput]) -> str:
    bases = {r.version.adapter.base_model.name for r in resolved}
    if len(bases) > 1:
        listing = ", ".join(f"{r.reference} ({r.version.adapter.base_model.name})" for r in resolved)
        raise InvalidContent(f"the inputs are adapters of different base models: {listing}", code="base_model_mismatch")
    return bases.pop()


def check_hybrid_inputs(resolved: Sequence[ResolvedInput]) -> str:
    """A hybrid's parts: PEFT adapters of one base model with a weight delta or a prompt (at most one
    prompt), each at weight 1 (parts are kept, not weighted)."""
    prompts = 0
    for r in resolved:
        config = r.version.config
        peft_type = str(config.get("peft_type") or "")
        if r.weight != 1:
            raise InvalidContent(f"{r.reference}: a hybrid keeps its parts unweighted (weight 1)", code="bad_weight")
        if peft_type in HYBRID_PROMPT_TYPES:
            prompts += 1
            continue
        if family_of(config) not in COMPOSABLE_TYPES | {"LORA"}:
            raise InvalidContent(
                f"{r.reference} is {method_phrase(r.version.adapter.get_method_display())}; a hybrid's parts are PEFT "
                "adapters that change weights (LoRA, IA3, LoHa, ...) or a prompt (prompt, p- or prefix tuning)",
                code="unsupported_method",
            )
    if prompts > 1:
        raise InvalidContent("a hybrid holds at most one prompt part", code="bad_input")
    if len(resolved) < 2:
        raise InvalidContent("a hybrid needs at least two parts", code="bad_input")
    return _one_base(resolved)


def check_parameters(method: str, parameters: dict[str, Any], *, n_inputs: int) -> CompositionParams:
    unknown = set(parameters) - ALLOWED_PARAMETERS
    if unknown:
        raise InvalidRequest(
            f"unknown parameters {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(ALLOWED_PARAMETERS))}",
            code="bad_parameters",
        )
    try:
        params = CompositionParams(method=method, device="cpu", **parameters)
    except CompositionError as exc:
        raise InvalidContent(str(exc), code=exc.code) from None
    except TypeError as exc:
        raise InvalidRequest(f"bad parameters: {exc}", code="bad_parameters") from None
    if params.spec.single_input and n_inputs != 1:
        raise InvalidContent(f"{params.spec.name} re-ranks exactly one adapter, got {n_inputs}", code="bad_input")
    return params


# --- Composition method `search` (run by registry/autocompose.py) -----------------------------------

SEARCH = "search"
SEARCH_DEFAULTS: dict[str, Any] = {
    "budget": 40,
    "merge": "linear",
    "bounds": [-1.5, 1.5],
    "rank": None,
    "seed": 0,
    "objective": "loss",
}
MAX_BUDGET = 500
MAX_SUITES = 8


def check_search(resolved: Sequence[ResolvedInput], parameters: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(base model, the parameters with defaults filled) of a search request; 4xx if anything is off."""
    unknown = set(parameters) - {"suites", *SEARCH_DEFAULTS}
    if unknown:
        raise InvalidRequest(
            f"unknown search parameters {', '.join(sorted(unknown))}; allowed: suites, {', '.join(SEARCH_DEFAULTS)}",
            code="bad_parameters",
        )
    chosen = {**SEARCH_DEFAULTS, **parameters}
    merge = CompositionParams(method="linear", device="cpu", **({"rank": chosen["rank"]} if chosen["rank"] else {}))
    if chosen["merge"] != "linear":
        raise InvalidContent(
            "a search merges its candidates with linear (the exact weighted sum)", code="bad_parameters"
        )
    base_model = check_inputs(resolved, merge)
    budget, seed, bounds = chosen["budget"], chosen["seed"], chosen["bounds"]
    if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= MAX_BUDGET:
        raise InvalidRequest(f"budget must be 1 to {MAX_BUDGET} candidates", code="bad_parameters")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise InvalidRequest("seed must be a non-negative integer", code="bad_parameters")
    if (
        not isinstance(bounds, list | tuple)
        or len(bounds) != 2
        or not all(isinstance(b, int | float) and not isinstance(b, bool) and math.isfinite(b) for b in bounds)
        or not -10 <= bounds[0] < bounds[1] <= 10
    ):
        raise InvalidRequest("bounds must be [low, high] with -10 <= low < high <= 10", code="bad_parameters")
    if chosen["objective"] not in ("loss", "metric"):
        raise InvalidRequest("objective must be loss or metric", code="bad_parameters")
    names = chosen.get("suites")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise InvalidRequest("name the suites to search on: suites: [...]", code="no_suites")
    if len(set(names)) > MAX_SUITES:
        raise InvalidRequest(f"a search scores at most {MAX_SUITES} suites", code="bad_parameters")
    found = {s.name: s for s in EvalSuite.objects.filter(base_model__name=base_model, name__in=names)}
    missing = sorted(set(names) - set(found))
    if missing:
        raise InvalidContent(f"{base_model} has no eval suite {', '.join(missing)}", code="suite_not_found")
    for suite in found.values():
        if suite.kind == SuiteKind.CLASSIFICATION:
            raise InvalidContent(f"suite {suite.name} scores a classification head, which a search does not combine",
                                 code="unsuitable_suite")  # fmt: skip
        if not suite.search_fraction:
            raise InvalidContent(
                f"suite {suite.name} has no search split (search_fraction 0): a search would see the examples "
                "it is judged on",
                code="no_search_split",
            )
    normalized = {
        "suites": sorted(set(names)),
        "budget": budget,
        "merge": "linear",
        "bounds": [float(bounds[0]), float(bounds[1])],
        "rank": chosen["rank"],
        "seed": seed,
        "objective": chosen["objective"],
    }
    return base_model, normalized


def check_target(actor: Actor, into: str, base_model: str) -> tuple[str, str]:
    namespace_name, _, name = (into or "").partition("/")
    if not namespace_name or not name or "/" in name:
        raise InvalidRequest(f"the target {into!r} must be ns/name", code="bad_target")
    namespace = access_namespace(actor, namespace_name)
    require_write(actor, namespace)
    existing = Adapter.objects.select_related("base_model").filter(namespace=namespace, name=name).first()
    if existing is not None:
        if existing.base_model.name != base_model:
            raise StateConflict(
                f"{existing.full_name} is an adapter of {existing.base_model.name}; the inputs are of {base_model}",
                code="base_model_mismatch",
            )
        if existing.method not in LORA_FAMILY | {Method.IA3, Method.PROMPT_TUNING, Method.HYBRID}:
            raise StateConflict(
                f"{existing.full_name} is {method_phrase(existing.get_method_display())}, which compositions do not "
                "publish",
                code="target_method_mismatch",
            )
    return namespace_name, name


# --- Running (on a worker) ------------------------------------------------------------------------


class _ProgressReporter:
    """Writes progress and renews the lease, at most once a second."""

    def __init__(self, job: CompositionJob) -> None:
        self.job = job
        self.last = 0.0

    def __call__(self, percent: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < 1.0:
            return
        self.last = now
        jobs.renew(CompositionJob, self.job.pk, progress=min(max(percent, 0), 100))

    def modules(self, done_modules: int, total_modules: int) -> None:
        low, high = COMPOSE_BAND
        self(low + (high - low) * done_modules // max(total_modules, 1))


def run_composition(job_id: str, *, worker: str) -> CompositionJob | None:
    """The worker's side of a job.

    1. Claim it (see `registry.jobs.claim`).
    2. Copy each input version's files from the blob store into a temporary folder.
    3. Compose with `composer`, reporting progress per module.
    4. Write the result with its model card and publish it as a version through `push_version`
       (same validation as a user's push), recording lineage and the job's result in the same
       transaction. Identical bytes map to the existing version, so a retry never duplicates.
    Domain errors mark the job failed; anything else propagates for Celery to retry.
    """
    job = jobs.claim(CompositionJob, job_id, worker)
    if job is None:
        return None
    report = _ProgressReporter(job)
    timings: dict[str, float] = {}
    try:
        with scratch_folder("compose-") as tmp:
            started = time.monotonic()
            hybrid = job.recipe["method"] == HYBRID
            staged = _stage_inputs(job, Path(tmp) / "inputs")
            timings["fetched_bytes"] = sum(s.fetched_bytes for _, s in staged)
            inputs = _hybrid_parts(staged) if hybrid else _load_inputs(job, staged)
            timings["load_seconds"] = round(time.monotonic() - started, 3)
            report(COMPOSE_BAND[0], force=True)

            started = time.monotonic()
            out = Path(tmp) / "out"
            # A LoRA result is written module by module as it is composed (composer.compose(out=...)).
            result = _assemble(job, inputs) if hybrid else _compose(job, inputs, report, out)
            if hybrid:
                result.save(out)
            timings["compose_seconds"] = round(time.monotonic() - started, 3)

            started = time.monotonic()
            (out / "README.md").write_text(composition_card(job, inputs, result))
            version, created = _publish(job, inputs, out, method=_method_of(result))
            timings["publish_seconds"] = round(time.monotonic() - started, 3)
    except (CompositionError, RegistryError) as exc:
        jobs.fail_with(CompositionJob, job.pk, exc, default_code="composition_failed")
        job.refresh_from_db()
        return job
    return finish(job, version, created=created, report=result.summary, timings=timings)


def finish(
    job: CompositionJob,
    version: AdapterVersion,
    *,
    created: bool,
    report: dict[str, Any],
    timings: dict[str, float],
    gate_suites: Sequence[str] = (),
) -> CompositionJob:
    """Mark a job succeeded with the version it published; a new version goes to the eval gate
    (also on `gate_suites`: a search's target suites)."""
    if created:
        start_validation(version, also=gate_suites)
    CompositionJob.objects.filter(pk=job.pk).update(
        status=JobStatus.SUCCEEDED,
        progress=100,
        result_version=version,
        report=report,
        timings=timings,
        finished_at=timezone.now(),
        lease_expires_at=None,
    )
    job.refresh_from_db()
    return job


def _stage_inputs(job: CompositionJob, folder: Path) -> list[tuple[ResolvedInput, Staged]]:
    """Every input version's files in folder/<position>, fetched in parallel through the worker's cache."""
    versions = _input_versions(job)
    targets = [(version, folder / str(index)) for index, (version, _) in enumerate(versions)]
    staged = stage_versions(targets)
    return [
        (ResolvedInput(version=version, weight=weight), s)
        for (version, weight), s in zip(versions, staged, strict=True)
    ]


def _load_inputs(job: CompositionJob, staged: list[tuple[ResolvedInput, Staged]]) -> list[tuple[ResolvedInput, Input]]:
    recipe = job.recipe
    families = {family_of(resolved.version.config) for resolved, _ in staged}
    vectors_only = sums_ia3_vectors(families, recipe["method"], recipe["parameters"].get("rank"))
    base = None if vectors_only else _base_view([resolved.version for resolved, _ in staged])
    return [
        (
            resolved,
            load_adapter(
                s.folder,
                reference=resolved.published_reference,
                sha256=s.files.get("adapter_model.safetensors"),
                base=base,
            ),
        )
        for resolved, s in staged
    ]


def _input_versions(job: CompositionJob) -> list[tuple[AdapterVersion, float]]:
    versions = []
    for item in job.recipe["inputs"]:
        namespace, _, name = item["adapter"].partition("/")
        version = (
            AdapterVersion.objects.select_related("adapter__namespace", "adapter__base_model")
            .filter(adapter__namespace__name=namespace, adapter__name=name, number=item["version"])
            .first()
        )
        if version is None:
            raise CompositionError("bad_input", f"input {item['adapter']}:{item['version']} no longer exists")
        versions.append((version, float(item["weight"])))
    return versions


def _hybrid_parts(staged: list[tuple[ResolvedInput, Staged]]) -> list[tuple[ResolvedInput, Any]]:
    """Each input's staged PEFT files as a hybrid part."""
    parts: list[tuple[ResolvedInput, Any]] = []
    for resolved, s in staged:
        version = resolved.version
        sha = None if version.adapter.is_private else s.files.get("adapter_model.safetensors")
        parts.append((resolved, HybridPart(s.folder, resolved.published_reference, sha, str(version.peft_type))))
    return parts


def _assemble(job: CompositionJob, parts: list[tuple[ResolvedInput, Any]]) -> HybridResult:
    return assemble_hybrid([part for _, part in parts], base_model=job.recipe["base_model"])


def _base_view(versions: Sequence[AdapterVersion]) -> BaseView | None:
    """The base model as the inputs' deltas may need it: its manifest (VeRA and FourierFT layer
    shapes), and its weights (IA3, DoRA, OFT, BOFT; copies of base tensors in an input), fetched into
    the worker's cache only when first asked for."""
    base = versions[0].adapter.base_model
    if base.files_digest:
        return _FetchedOnUse(base)
    return ManifestBase(base.manifest) if base.manifest else None


class _FetchedOnUse(ManifestBase):
    def __init__(self, base: BaseModel) -> None:
        super().__init__(base.manifest or {})
        self.base = base
        self.checkpoint: BaseCheckpoint | None = None

    def weight(self, module: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.checkpoint is None:
            try:
                folder = fetch_base_model(self.base).folder
            except BaseModelUnavailable as exc:
                raise CompositionError("base_model_required", str(exc)) from None
            self.checkpoint = BaseCheckpoint(folder, self.base.manifest or None)
        return self.checkpoint.weight(module, device)


def _compose(
    job: CompositionJob, inputs: list[tuple[ResolvedInput, Input]], report: _ProgressReporter, out: Path
) -> composer.CompositionResult | HybridResult:
    recipe = job.recipe
    result = composer.compose(
        [(adapter, resolved.weight) for resolved, adapter in inputs],
        method=recipe["method"],
        progress=report.modules,
        expression=published_expression(recipe.get("expression"), [resolved for resolved, _ in inputs]),
        threads=settings.COMPOSER_THREADS,
        out=out,
        **recipe["parameters"],
    )
    # composition.json travels with the result, which others may read: a private parent's file
    # digest would identify it as surely as its name (a hybrid's parts are named after their hybrid).
    private = {r.published_reference for r, _ in inputs if r.version.adapter.is_private}
    saved = [part for _, part in result.parts] if isinstance(result, HybridResult) else [result.adapter]
    for recorded in (result.recipe, *(getattr(part, "recipe", None) or {} for part in saved)):
        _scrub_digests(recorded, private)
    if private:
        result.save(out)  # composition.json again, scrubbed (the weights file stays as written)
    return result


def _scrub_digests(recorded: Any, private: set[str]) -> None:
    """Blank the sha256 of every recorded input whose reference is (a part of) a private parent's."""
    if isinstance(recorded, dict):
        for item in recorded.get("inputs") or []:
            reference = str(item.get("reference") or "")
            if any(reference == p or reference.startswith(p + "/") for p in private):
                item["sha256"] = None
        for value in recorded.values():
            if isinstance(value, dict):
                _scrub_digests(value, private)


def published_expression(expression: str | None, inputs: Sequence[ResolvedInput]) -> str | None:
    """The expression as the result may show it: with a private input, the weighted sum it
    stands for, each private parent written as PRIVATE_REFERENCE."""
    if expression is None or not any(r.version.adapter.is_private for r in inputs):
        return expression
    return " + ".join(f"{r.weight:g}*{r.published_reference}" for r in inputs).replace("+ -", "- ")


def _method_of(result: composer.CompositionResult | HybridResult) -> Method:
    """A composition publishes a LoRA; an IA3 adapter when IA3 inputs were summed as vectors, a prompt
    when prompts were summed or stacked, a hybrid when parts were kept side by side."""
    if isinstance(result, HybridResult):
        return Method.HYBRID
    return {"IA3": Method.IA3, "PROMPT_TUNING": Method.PROMPT_TUNING}.get(
        str(result.adapter.config.get("peft_type")), Method.LORA
    )


def _publish(
    job: CompositionJob, inputs: list[tuple[ResolvedInput, Input]], folder: Path, *, method: Method
) -> tuple[AdapterVersion, bool]:
    def record_lineage(version: AdapterVersion) -> None:
        # In the transaction that commits the version: a version never exists without its parents.
        if version.parent_links.exists():
            return
        VersionParent.objects.bulk_create(
            [
                VersionParent(
                    child=version,
                    parent=resolved.version,
                    weight=resolved.weight,
                    role=LineageRole.NEGATED if resolved.weight < 0 else LineageRole.INPUT,
                    position=position,
                )
                for position, (resolved, _) in enumerate(inputs)
                if resolved.version.pk != version.pk
            ]
        )

    with folder_files(folder) as files:
        result = push_version(
            actor=Actor(user=job.created_by),
            namespace=job.target_namespace,
            name=job.target_name,
            files=files,
            meta=AdapterMetadata(
                base_model=job.recipe["base_model"],
                method=method,
                description=job.description or None,
                tags=["composed", job.recipe["method"]] if _is_new_adapter(job) else None,
            ),
            then=record_lineage,
        )
    return result.version, result.created


def _is_new_adapter(job: CompositionJob) -> bool:
    return not Adapter.objects.filter(namespace__name=job.target_namespace, name=job.target_name).exists()


def composition_card(
    job: CompositionJob, inputs: list[tuple[ResolvedInput, Any]], result: composer.CompositionResult | HybridResult
) -> str:
    """The model card of a composed adapter: front matter PEFT and HF tools read, then how it was made."""
    recipe = job.recipe
    parameters = result.recipe.get("parameters", {})
    lines = [
        "---",
        f"base_model: {recipe['base_model']}",
        "library_name: peft",
        "tags:",
        "- composed",
        f"- {recipe['method']}",
        "---",
        "",
        f"# {job.target}",
        "",
    ]
    if job.description:
        lines += [job.description, ""]
    lines += ["## Composed from", ""]
    for resolved, _ in inputs:
        adapter = resolved.version.adapter
        if adapter.is_private:
            lines.append(f"- {PRIVATE_REFERENCE} with weight {resolved.weight:+g}")
            continue
        # The repo's page on this hub, relative as model cards link other repos (no API route here).
        link = f"/{adapter.namespace.name}/{adapter.name}/?version={resolved.version.number}"
        lines.append(f"- [{resolved.reference}]({link}) with weight {resolved.weight:+g}")
    lines += ["", f"Method: `{recipe['method']}`", ""]
    expression = published_expression(recipe.get("expression"), [resolved for resolved, _ in inputs])
    if expression:
        lines += [f"Expression: `{expression}`", ""]
    if parameters:
        lines += ["Parameters:", ""] + [f"- `{key}`: `{value}`" for key, value in sorted(parameters.items())] + [""]
    summary = result.summary
    if summary:
        lines += [
            "Quality of the re-factorisation:",
            "",
            "```json",
            json.dumps(summary, indent=2, sort_keys=True),
            "```",
            "",
        ]
    lines += ["The full recipe is in `composition.json`.", ""]
    return "\n".join(lines)


# --- Lineage ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineageEdge:
    version: AdapterVersion
    weight: float
    role: str


@dataclass(frozen=True)
class Lineage:
    parents: list[LineageEdge]
    children: list[LineageEdge]


def version_lineage(actor: Actor, version: AdapterVersion) -> Lineage:
    """Parents and children the actor may see; a hidden (private) one is left out entirely."""
    related = "adapter__namespace", "adapter__base_model"
    parent_links = version.parent_links.select_related(*(f"parent__{r}" for r in related)).order_by("position")
    child_links = version.child_links.select_related(*(f"child__{r}" for r in related)).order_by("child__created_at")
    return Lineage(
        parents=[
            LineageEdge(link.parent, link.weight, link.role)
            for link in parent_links
            if actor.can_read_adapter(link.parent.adapter)
        ],
        children=[
            LineageEdge(link.child, link.weight, link.role)
            for link in child_links
            if actor.can_read_adapter(link.child.adapter)
        ],
    )


def visible_job(actor: Actor, job_id: str) -> CompositionJob:
    """A job its creator, or anyone who may write its target, can follow."""
    job = CompositionJob.objects.select_related("result_version__adapter__namespace").filter(pk=job_id).first()
    if job is None or not actor.is_authenticated:
        raise NotFound(f"job {job_id} does not exist", code="job_not_found")
    if job.created_by_id != actor.user_id:
        namespace = access_namespace(actor, job.target_namespace)
        if not actor.can_read_private(namespace):
            raise NotFound(f"job {job_id} does not exist", code="job_not_found")
    return job

"""Eval suites, evaluation requests run by GPU workers, and the validation gate of composed versions."""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from composer.errors import CompositionError
from composer.evaluation import (
    BaseModelCache,
    EvaluationError,
    Kind,
    evaluate,
    head_classes,
    parse_suite,
    pick_device,
)
from composer.search import split_examples
from registry import blob_claims, enqueue, jobs
from registry.access import PRIVATE_REFERENCE, Actor, access_base_model
from registry.base_models import BaseModelUnavailable, fetch_base_model
from registry.blobs import get_blob_store
from registry.exceptions import (
    AccessDenied,
    InvalidContent,
    NotAuthenticated,
    NotFound,
    RegistryError,
    StateConflict,
    TooLarge,
)
from registry.infrastructure import as_unavailable
from registry.models import (
    SUITE_METRICS,
    AdapterVersion,
    BaselineEvaluation,
    BaseModel,
    EvalResult,
    EvalSuite,
    EvaluationRequest,
    JobStatus,
    LineageRole,
    Method,
    Namespace,
    Role,
    SuiteKind,
    Validation,
    method_phrase,
)
from registry.services import copy_version_files, scratch_folder

log = logging.getLogger(__name__)

# --- Suites -----------------------------------------------------------------------------------------


def can_manage_suites(actor: Actor, base_model: BaseModel) -> bool:
    """Admins, and owners of the namespace a base model is named after (`meta-llama/...`)."""
    if actor.is_admin:
        return True
    owner_name = base_model.name.split("/", 1)[0] if "/" in base_model.name else ""
    namespace = Namespace.objects.filter(name=owner_name).first() if owner_name else None
    return namespace is not None and actor.role_in(namespace) == Role.OWNER and actor.can_write(namespace)


def create_suite(
    *,
    actor: Actor,
    base_model: str,
    name: str,
    kind: str,
    data: IO[bytes],
    size: int,
    description: str = "",
    is_default: bool = False,
    max_new_tokens: int = 16,
    search_fraction: float = 0.0,
) -> EvalSuite:
    """Validate a JSONL suite file, store it, and register the suite.

    The file is checked whole before anything is stored: a bad line leaves no blob and no row.
    """
    if not actor.is_authenticated:
        raise NotAuthenticated("sign in to create eval suites", code="auth_required")
    base = access_base_model(actor, base_model)
    if not can_manage_suites(actor, base):
        raise AccessDenied(f"only admins and the owners of {base.name} create its suites", code="suite_forbidden")
    if kind not in SuiteKind.values:
        raise InvalidContent(f"kind must be one of {', '.join(SuiteKind.values)}", code="bad_suite")
    if size > settings.EVAL_SUITE_MAX_BYTES:
        raise TooLarge(
            f"the suite file has {size:,} bytes; the limit is {settings.EVAL_SUITE_MAX_BYTES:,}", code="suite_too_large"
        )
    raw = data.read(settings.EVAL_SUITE_MAX_BYTES + 1)
    if len(raw) > settings.EVAL_SUITE_MAX_BYTES:
        raise TooLarge(f"the suite file is larger than {settings.EVAL_SUITE_MAX_BYTES:,} bytes", code="suite_too_large")
    try:
        examples = parse_suite(raw, kind)
        if search_fraction:
            search, held_out = split_examples(examples, search_fraction)
            if not search or not held_out:
                raise EvaluationError("bad_suite", "a suite with a search split needs examples on both sides of it")
    except (EvaluationError, CompositionError) as exc:
        raise InvalidContent(str(exc), code=exc.code) from None
    if EvalSuite.objects.filter(base_model=base, name=name).exists():
        raise StateConflict(f"{base.name} already has a suite named {name}", code="suite_exists")
    metric, higher_is_better = SUITE_METRICS[SuiteKind(kind)]
    # Claimed until the suite row exists, so gc_blobs cannot delete the data in between.
    with blob_claims.push_claims([hashlib.sha256(raw).hexdigest()]):
        blob = get_blob_store().put(io.BytesIO(raw), max_size=settings.EVAL_SUITE_MAX_BYTES)
        try:
            suite = EvalSuite.objects.create(
                base_model=base,
                name=name,
                kind=kind,
                description=description,
                data_sha256=blob.sha256,
                data_size=blob.size,
                examples=len(examples),
                metric=metric,
                higher_is_better=higher_is_better,
                is_default=is_default,
                max_new_tokens=max_new_tokens,
                search_fraction=search_fraction,
                created_by=actor.user,
            )
        except IntegrityError:
            raise StateConflict(f"{base.name} already has a suite named {name}", code="suite_exists") from None
    if suite.kind != SuiteKind.CLASSIFICATION:
        # Every suite gets the bare base model's score, the baseline its adapters are read against.
        request_baselines(actor=None, base=base, suites=[suite.name])
    return suite


# --- Requests -----------------------------------------------------------------------------------------


# PEFT task types the suites can score: a causal LM's (None: a config that names none, as LLaMA-Adapter's
# and many hand-written ones do).
_GENERATIVE_TASKS = frozenset({None, "CAUSAL_LM"})


def request_evaluations(
    *, actor: Actor | None, version: AdapterVersion, suites: list[str] | None = None, force: bool = False
) -> list[EvaluationRequest]:
    """Queue `version` on the named suites of its base model (default: the default suites).

    A suite already scored or in progress for this version is not queued twice unless `force`.
    actor None is the hub itself (the validation gate).
    """
    if actor is not None and not actor.is_authenticated:
        raise NotAuthenticated("sign in or send a token to request evaluations", code="auth_required")
    if not version.config.get("peft_type") and not version.config.get("hybrid"):
        # The workers load PEFT adapters and BitFit (peft_type BITFIT); the `adapters` library's bottleneck
        # adapters need that library, which pins a transformers release older than the workers'.
        raise InvalidContent(
            f"{version.adapter.full_name} is {method_phrase(version.adapter.get_method_display())}, which the "
            "evaluation workers cannot load (they evaluate PEFT adapters and BitFit; bottleneck adapters need the "
            "`adapters` library, whose transformers release differs from theirs)",
            code="unsupported_for_eval",
        )
    task_type = version.config.get("task_type")
    if task_type not in _GENERATIVE_TASKS and task_type != "SEQ_CLS":
        raise InvalidContent(
            f"{version.adapter.full_name} was trained for {task_type}; the suites score causal language models "
            "(perplexity, exact match, multiple choice) and sequence classifiers (classification)",
            code="unsuitable_suite",
        )
    base = version.adapter.base_model
    available = base.eval_suites.all()
    if suites:
        chosen = list(available.filter(name__in=suites))
        missing = sorted(set(suites) - {s.name for s in chosen})
        if missing:
            raise NotFound(f"{base.name} has no eval suite {', '.join(missing)}", code="suite_not_found")
    else:
        chosen = list(available.filter(is_default=True))
        if not chosen:
            raise InvalidContent(f"{base.name} has no default eval suite: name the suites", code="no_suites")
    for suite in chosen:
        # A classifier's head scored as a language model (or the reverse) gives meaningless numbers.
        if (suite.kind == SuiteKind.CLASSIFICATION) != (task_type == "SEQ_CLS"):
            needs = (
                "a sequence-classification adapter (task_type SEQ_CLS)"
                if suite.kind == SuiteKind.CLASSIFICATION
                else "a causal LM adapter"
            )
            raise InvalidContent(
                f"suite {suite.name} ({suite.kind}) needs {needs}; {version.adapter.full_name} is trained for "
                f"{task_type or 'causal LM'}",
                code="unsuitable_suite",
            )
    if actor is not None:
        jobs.check_active_jobs(actor.user_id)
    created: list[EvaluationRequest] = []
    with transaction.atomic():
        for suite in chosen:
            existing = (
                EvaluationRequest.objects.filter(version=version, suite=suite)
                .exclude(status=JobStatus.FAILED)
                .order_by("-created_at")
                .first()
            )
            if existing is not None and not force:
                created.append(existing)
                continue
            request = EvaluationRequest.objects.create(
                version=version, suite=suite, created_by=actor.user if actor is not None else None
            )
            enqueue.on_commit(EvaluationRequest, request.pk, if_broker_down=_leave_queued)
            created.append(request)
    return created


def request_baselines(
    *, actor: Actor | None, base: BaseModel, suites: list[str] | None = None, force: bool = False
) -> list[BaselineEvaluation]:
    """Queue the bare base model on the named suites (default: all of them but classification ones,
    which score a head the base does not have). A suite with a baseline done or in progress is not
    queued again unless `force`. actor None is the hub itself (a new suite gets its baseline)."""
    if actor is not None and not actor.is_authenticated:
        raise NotAuthenticated("sign in or send a token to request baselines", code="auth_required")
    if actor is not None and not can_manage_suites(actor, base):
        raise AccessDenied(f"only admins and the owners of {base.name} request its baselines", code="suite_permission")
    available = base.eval_suites.exclude(kind=SuiteKind.CLASSIFICATION)
    chosen = list(available.filter(name__in=suites) if suites else available)
    if suites:
        missing = sorted(set(suites) - {s.name for s in chosen})
        if missing:
            raise NotFound(
                f"{base.name} has no eval suite {', '.join(missing)} that a bare base model can be scored on",
                code="suite_not_found",
            )
    created: list[BaselineEvaluation] = []
    with transaction.atomic():
        for suite in chosen:
            existing = suite.baselines.exclude(status=JobStatus.FAILED).order_by("-created_at").first()
            if existing is not None and not force:
                created.append(existing)
                continue
            baseline = BaselineEvaluation.objects.create(
                suite=suite, created_by=actor.user if actor is not None else None
            )
            enqueue.on_commit(BaselineEvaluation, baseline.pk, if_broker_down=_leave_queued)
            created.append(baseline)
    return created


def baselines_of(base: BaseModel) -> dict[int, BaselineEvaluation]:
    """suite id -> the newest succeeded baseline, for the suites of `base` that have one."""
    newest: dict[int, BaselineEvaluation] = {}
    done = BaselineEvaluation.objects.filter(suite__base_model=base, status=JobStatus.SUCCEEDED).select_related("suite")
    for baseline in done.order_by("suite_id", "-finished_at"):
        newest.setdefault(baseline.suite_id, baseline)
    return newest


def _leave_queued(exc: BaseException) -> None:
    if as_unavailable(exc) is None:
        raise exc
    # The row stays queued: the reconciler sends it once the broker is back.
    log.warning("an evaluation stays queued: the broker is down (%s)", exc)


# --- Running (on a GPU worker) ------------------------------------------------------------------------

# One per worker process: base models stay loaded across jobs.
MODEL_CACHE = BaseModelCache(capacity=settings.EVAL_MODEL_CACHE_SIZE)


def find_base_model_folder(name: str) -> Path:
    """The local folder of a base model, searched in HUB_BASE_MODEL_PATHS (never downloaded).

    Accepts `<root>/<org>/<name>`, `<root>/<org>--<name>`, and a Hugging Face cache
    (`<root>/models--<org>--<name>/snapshots/<commit>`, preferring the one refs/main names).
    """
    for root in map(Path, settings.HUB_BASE_MODEL_PATHS):
        for candidate in (root / name, root / name.replace("/", "--")):
            if (candidate / "config.json").is_file():
                return candidate
        cache = root / f"models--{name.replace('/', '--')}"
        snapshots = cache / "snapshots"
        if snapshots.is_dir():
            ref = cache / "refs" / "main"
            if ref.is_file() and (snapshots / ref.read_text().strip() / "config.json").is_file():
                return snapshots / ref.read_text().strip()
            found = sorted(
                (p for p in snapshots.iterdir() if (p / "config.json").is_file()), key=lambda p: p.stat().st_mtime
            )
            if found:
                return found[-1]
    searched = ", ".join(map(str, settings.HUB_BASE_MODEL_PATHS)) or "(none)"
    raise EvaluationError("base_model_unavailable", f"no local copy of {name} in HUB_BASE_MODEL_PATHS: {searched}")


def base_model_folder(base: BaseModel) -> Path:
    """A local folder with the base model: a copy under HUB_BASE_MODEL_PATHS if there is one, else
    its files fetched from the blob store into the worker's cache (see base_models.fetch_base_model),
    so a worker on another machine needs only the broker, the database and S3."""
    try:
        return find_base_model_folder(base.name)
    except EvaluationError as missing:
        if not base.files_digest:
            raise EvaluationError(
                "base_model_unavailable",
                f"{missing} and the hub stores no files of it (register it with --from-folder)",
            ) from None
    try:
        cached = fetch_base_model(base)
    except (BaseModelUnavailable, OSError) as exc:
        raise EvaluationError(
            "base_model_unavailable", f"could not fetch {base.name} from the blob store: {exc}"
        ) from exc
    if cached.fetched_bytes:
        log.info("fetched %s from the blob store: %d bytes", base.name, cached.fetched_bytes)
    return cached.folder


def run_evaluation(request_id: str, *, worker: str, cache: BaseModelCache = MODEL_CACHE) -> EvaluationRequest | None:
    """The worker's side of one evaluation request.

    1. Claim it (see `registry.jobs.claim`).
    2. Get the base model from the cache (loaded from a local folder on first use).
    3. Copy the version's files and the suite's data out of the blob store.
    4. Evaluate, then record exactly one EvalResult (its request link is unique).
    5. Let the validation gate of the version decide, if it waits on this result.
    """
    request = jobs.claim(EvaluationRequest, request_id, worker)
    if request is None:
        return None
    request = EvaluationRequest.objects.select_related("version__adapter__base_model", "suite").get(pk=request.pk)
    try:
        outcome = _evaluate(request, cache)
    except (CompositionError, EvaluationError, RegistryError) as exc:
        jobs.fail_with(EvaluationRequest, request.pk, exc, default_code="evaluation_failed")
        update_validation(request.version)
        request.refresh_from_db()
        return request
    with transaction.atomic():
        if not EvalResult.objects.filter(request=request).exists():
            EvalResult.objects.create(
                version=request.version,
                eval_suite=request.suite,
                suite=request.suite.name,
                metric=outcome.metric,
                value=outcome.value,
                source="worker",
                request=request,
                samples=outcome.samples,
                tokens_per_second=round(outcome.tokens_per_second, 2),
                device=outcome.device,
                precision=outcome.precision,
                details=outcome.details,
                duration_seconds=round(outcome.seconds, 4),
                worker=worker,
            )
        EvaluationRequest.objects.filter(pk=request.pk).update(
            status=JobStatus.SUCCEEDED, finished_at=timezone.now(), lease_expires_at=None
        )
    update_validation(request.version)
    request.refresh_from_db()
    return request


def _examples(suite: EvalSuite) -> list[dict[str, Any]]:
    raw = b"".join(get_blob_store().read_range(suite.data_sha256, 0, suite.data_size))
    return parse_suite(raw, suite.kind)


def held_out_examples(suite: EvalSuite) -> list[dict[str, Any]]:
    """What evaluations score: the examples outside the suite's search split (all without one)."""
    examples = _examples(suite)
    return split_examples(examples, suite.search_fraction)[1] if suite.search_fraction else examples


def search_examples(suite: EvalSuite) -> list[dict[str, Any]]:
    """What weight searches score candidates on: the suite's search split."""
    return split_examples(_examples(suite), suite.search_fraction)[0]


def _evaluate(request: EvaluationRequest, cache: BaseModelCache) -> Any:
    suite, version = request.suite, request.version
    examples = held_out_examples(suite)
    # QLoRA adapters were trained on a 4-bit base; EVAL_QUANTIZE=4bit evaluates every adapter so.
    quantize = "4bit" if version.adapter.method == Method.QLORA or settings.EVAL_QUANTIZE == "4bit" else None
    with scratch_folder("eval-") as tmp:
        folder = Path(tmp)
        copy_version_files(version, folder)
        # A classifier is evaluated with a head of as many classes as the one it saved (which replaces it).
        classes = head_classes(folder) if suite.kind == SuiteKind.CLASSIFICATION else None
        if suite.kind == SuiteKind.CLASSIFICATION and classes is None:
            raise EvaluationError("unsuitable_suite", f"{version} saves no classification head to evaluate")
        loaded = cache.get(
            base_model_folder(version.adapter.base_model),
            pick_device(settings.EVAL_DEVICE),
            quantize=quantize,
            num_labels=classes,
        )
        jobs.renew(EvaluationRequest, request.pk)
        return evaluate(
            loaded,
            folder,
            cast(Kind, suite.kind),  # a SuiteKind choice; evaluate() refuses any other kind
            examples,
            batch_size=settings.EVAL_BATCH_SIZE,
            max_new_tokens=suite.max_new_tokens,
            on_batch=jobs.LeaseKeeper(EvaluationRequest, request.pk),
        )


def run_baseline(baseline_id: str, *, worker: str, cache: BaseModelCache = MODEL_CACHE) -> BaselineEvaluation | None:
    """The worker's side of a baseline: the bare base model on one suite, by the same engine and
    settings (device, precision, batch size) as the adapters' evaluations."""
    baseline = jobs.claim(BaselineEvaluation, baseline_id, worker)
    if baseline is None:
        return None
    suite = EvalSuite.objects.select_related("base_model").get(pk=baseline.suite_id)
    try:
        examples = held_out_examples(suite)
        loaded = cache.get(
            base_model_folder(suite.base_model),
            pick_device(settings.EVAL_DEVICE),
            quantize="4bit" if settings.EVAL_QUANTIZE == "4bit" else None,
        )
        jobs.renew(BaselineEvaluation, baseline.pk)
        outcome = evaluate(
            loaded,
            None,
            cast(Kind, suite.kind),
            examples,
            batch_size=settings.EVAL_BATCH_SIZE,
            max_new_tokens=suite.max_new_tokens,
            on_batch=jobs.LeaseKeeper(BaselineEvaluation, baseline.pk),
        )
    except (CompositionError, EvaluationError, RegistryError) as exc:
        jobs.fail_with(BaselineEvaluation, baseline.pk, exc, default_code="evaluation_failed")
        baseline.refresh_from_db()
        return baseline
    BaselineEvaluation.objects.filter(pk=baseline.pk, status=JobStatus.RUNNING).update(
        status=JobStatus.SUCCEEDED,
        finished_at=timezone.now(),
        lease_expires_at=None,
        metric=outcome.metric,
        value=outcome.value,
        samples=outcome.samples,
        tokens_per_second=round(outcome.tokens_per_second, 2),
        device=outcome.device,
        precision=outcome.precision,
        details=outcome.details,
        duration_seconds=round(outcome.seconds, 4),
    )
    baseline.refresh_from_db()
    return baseline


# --- The validation gate ------------------------------------------------------------------------------


def start_validation(version: AdapterVersion, *, also: Sequence[str] = ()) -> list[EvaluationRequest]:
    """Evaluate a composed version on every suite a parent has a score on, plus its base model's
    default suites (and `also`: a search's target suites), and mark it pending until the gate decides."""
    parents = [link.parent for link in version.parent_links.select_related("parent")]
    suites = (
        set(EvalSuite.objects.filter(results__version__in=parents).values_list("name", flat=True))
        | set(version.adapter.base_model.eval_suites.filter(is_default=True).values_list("name", flat=True))
        | set(also)
    )
    if not suites:
        _set_validation(
            version,
            Validation.NONE,
            [{"reason": "no eval suite applies: neither the parents nor the base model have one"}],
        )
        return []
    _set_validation(version, Validation.PENDING, [])
    return request_evaluations(actor=None, version=version, suites=sorted(suites))


@dataclass(frozen=True)
class GateCheck:
    suite: str
    metric: str
    value: float | None
    best_parent: str
    best_parent_value: float
    required: float
    higher_is_better: bool

    @property
    def passed(self) -> bool:
        if self.value is None:
            return False
        return self.value >= self.required if self.higher_is_better else self.value <= self.required

    def as_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "metric": self.metric,
            "value": self.value,
            "best_parent": self.best_parent,
            "best_parent_value": self.best_parent_value,
            "required": self.required,
            "higher_is_better": self.higher_is_better,
            "passed": self.passed,
        }


def update_validation(version: AdapterVersion) -> None:
    """Decide a pending version once its evaluations are done.

    Validated when, on each suite where a parent (added with a positive weight) has a score, the
    version reaches VALIDATION_FRACTION of the best such parent's score; for lower-is-better
    metrics (perplexity) the comparison is on the inverse: value <= best / fraction.
    """
    version.refresh_from_db(fields=["validation"])
    if version.validation != Validation.PENDING:
        return
    requests = EvaluationRequest.objects.filter(version=version)
    if requests.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).exists():
        return
    checks = gate_checks(version)
    failed_requests = [
        {"suite": r.suite.name, "reason": f"evaluation failed: {r.error_message}"}
        for r in requests.filter(status=JobStatus.FAILED).select_related("suite")
        if not requests.filter(suite=r.suite, status=JobStatus.SUCCEEDED).exists()
    ]
    reasons = [c.as_dict() for c in checks] + failed_requests
    passed = all(c.passed for c in checks) and not failed_requests
    _set_validation(version, Validation.VALIDATED if passed else Validation.REJECTED, reasons)


def gate_checks(version: AdapterVersion) -> list[GateCheck]:
    fraction = settings.VALIDATION_FRACTION
    contributors = [
        link.parent
        for link in version.parent_links.select_related("parent__adapter__namespace")
        if link.role == LineageRole.INPUT
    ]
    own = {r.eval_suite_id: r for r in version.eval_results.filter(eval_suite__isnull=False).order_by("created_at")}
    checks = []
    parent_results = EvalResult.objects.filter(version__in=contributors, eval_suite__isnull=False).select_related(
        "eval_suite", "version__adapter__namespace"
    )
    by_suite: dict[int, list[EvalResult]] = {}
    for result in parent_results:
        if result.eval_suite_id is not None:  # the query keeps only results with a suite
            by_suite.setdefault(result.eval_suite_id, []).append(result)
    for results in by_suite.values():
        suite = results[0].eval_suite
        assert suite is not None
        best = (max if suite.higher_is_better else min)(results, key=lambda r: r.value)
        required = best.value * fraction if suite.higher_is_better else best.value / fraction
        mine = own.get(suite.pk)
        checks.append(
            GateCheck(
                suite=suite.name,
                metric=suite.metric,
                value=mine.value if mine is not None else None,
                best_parent=PRIVATE_REFERENCE if best.version.adapter.is_private else str(best.version),
                best_parent_value=best.value,
                required=required,
                higher_is_better=suite.higher_is_better,
            )
        )
    return sorted(checks, key=lambda c: c.suite)


def _set_validation(version: AdapterVersion, state: str, reasons: list[dict[str, Any]]) -> None:
    version.validation = state
    version.validation_reasons = reasons
    version.save(update_fields=["validation", "validation_reasons"])

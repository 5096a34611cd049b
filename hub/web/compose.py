"""Submit-time checks of a composition without creating a job, for the compose form's "Check".

`registry.compositions.submit_composition` validates before it creates anything; this runs the
same steps (its public check functions) but collects every problem instead of stopping at the first, and
describes the inputs so the form can show what will be composed.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import composer
from composer.compose import DEFAULT_SEED
from registry import compositions
from registry.access import Actor, access_base_model
from registry.compositions import HYBRID, SEARCH, CompositionRequest, InputSpec, ResolvedInput, check_search
from registry.compositions import SEARCH_DEFAULTS as DEFAULTS
from registry.exceptions import RegistryError
from registry.models import CompositionJob, EvalSuite, SuiteKind
from registry.scores import suites_of


@dataclass(frozen=True)
class CheckedInput:
    spec: InputSpec
    resolved: ResolvedInput | None
    problem: str = ""

    @property
    def reference(self) -> str:
        return self.resolved.reference if self.resolved else self.spec.adapter

    @property
    def negated(self) -> bool:
        return self.spec.weight < 0


@dataclass
class CompositionCheck:
    method: str = ""
    inputs: list[CheckedInput] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    base_model: str = ""
    target: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def check_composition(actor: Actor, request: CompositionRequest) -> CompositionCheck:
    """Every problem `submit_composition` would refuse the request for, and notes worth knowing.

    1. Method and inputs (the list, or the parsed expression).
    2. Each input: visible, its version exists, and it is plain LoRA.
    3. The inputs together: one base model.
    4. The method's parameters.
    5. The target: a namespace the actor may write, holding no adapter of another base model.

    A search (method `search`) checks its inputs as a linear merge and its parameters (the suites
    among them) with the registry's `check_search`.
    """
    check = CompositionCheck()
    if not actor.is_authenticated:
        check.problems.append("Sign in to compose adapters.")
        return check
    try:
        method, specs = compositions.method_and_inputs(request)
    except RegistryError as exc:
        check.problems.append(exc.message)
        return check
    check.method = method
    params = None
    parameter_problem: str | None = None
    hybrid = method == compositions.HYBRID
    search = method == SEARCH
    try:
        if not hybrid:
            # A search merges its candidates with linear; its own parameters are checked below.
            params = compositions.check_parameters(
                "linear" if search else method, {} if search else request.parameters, n_inputs=len(specs)
            )
    except RegistryError as exc:
        parameter_problem = exc.message

    resolved: list[ResolvedInput] = []
    for spec in specs:
        try:
            one = compositions.resolve_input(actor, spec)
            if not hybrid:
                compositions.check_inputs([one], params)
        except RegistryError as exc:
            check.inputs.append(CheckedInput(spec, None, exc.message))
            check.problems.append(exc.message)
            continue
        check.inputs.append(CheckedInput(spec, one))
        resolved.append(one)

    if resolved and len(resolved) == len(specs):
        try:
            check.base_model = (
                compositions.check_hybrid_inputs(resolved) if hybrid else compositions.check_inputs(resolved, params)
            )
            if search:
                check_search(resolved, request.parameters)
        except RegistryError as exc:
            check.problems.append(exc.message)
    if parameter_problem is not None:
        check.problems.append(parameter_problem)
    if not request.into:
        check.problems.append("Name the new adapter.")
    elif check.base_model:
        try:
            namespace, name = compositions.check_target(actor, request.into, check.base_model)
            check.target = f"{namespace}/{name}"
        except RegistryError as exc:
            check.problems.append(exc.message)
    if search:
        # The weights typed in the form play no part: the search starts from uniform weights.
        check.notes = [SEARCH_NOTE, *_notes(method, [ResolvedInput(r.version, 1.0) for r in resolved])]
    else:
        check.notes = _notes(method, resolved)
    return check


def _notes(method: str, resolved: list[ResolvedInput]) -> list[str]:
    """Facts that are fine but worth knowing before composing."""
    notes: list[str] = []
    if not resolved:
        return notes
    ranks = [r.version.rank or 0 for r in resolved]
    spec = composer.METHODS.get(composer.ALIASES.get(method, method))
    if spec is not None and spec.name == "stack":
        notes.append(f"stack keeps every input's rank: the result has rank {sum(ranks)}.")
    modules = {tuple(sorted(r.version.target_modules or [])) for r in resolved}
    if len(modules) > 1:
        notes.append("The inputs target different modules; a module an input lacks counts as a zero delta for it.")
    if len(set(ranks)) > 1:
        notes.append(f"The inputs have different ranks ({', '.join(map(str, ranks))}); that is fine.")
    if any(r.weight < 0 for r in resolved):
        notes.append("Negative weights subtract a task (task negation).")
    return notes


# --- The form's methods and their parameters' defaults -------------------------------------------

# The composer requires a density for TIES, DARE and magnitude pruning and has no default for it
# (a deliberate choice it leaves to the caller); the form starts at the value the README's figures
# and the benchmarks use.
SUGGESTED_DENSITY = 0.5
HYBRID_SUMMARY = (
    "Keep the inputs side by side as the parts of one hybrid adapter (weight-changing adapters, then at most "
    "one prompt); nothing is merged."
)


@dataclass(frozen=True)
class MethodChoice:
    """A method the compose form offers: which parameters it takes and what each starts at."""

    name: str
    summary: str
    reference_url: str
    uses_rank: bool = False
    uses_density: bool = False
    uses_seed: bool = False
    uses_sign_method: bool = False
    # Form field name -> the value the form fills in when the method is picked and the field is empty.
    defaults: dict[str, str] = field(default_factory=dict)

    @property
    def defaults_json(self) -> str:
        return json.dumps(self.defaults, sort_keys=True)


def parameter_defaults() -> dict[str, Any]:
    """The composer's own defaults of the form's parameters (`composer.CompositionParams`), with the
    seed the element-wise methods draw with when none is given."""
    declared = {f.name: f.default for f in dataclasses.fields(composer.CompositionParams)}
    return {
        "rank": declared["rank"],  # None: the largest input rank at each module
        "density": SUGGESTED_DENSITY if declared["density"] is None else declared["density"],
        "seed": DEFAULT_SEED if declared["seed"] is None else declared["seed"],
        "majority_sign_method": declared["majority_sign_method"],
    }


def method_choices() -> list[MethodChoice]:
    """Every merge method of the composer, in its order, then hybrid (which merges nothing)."""
    defaults = parameter_defaults()
    choices = []
    for spec in composer.METHODS.values():
        filled: dict[str, str] = {}
        if spec.uses_density:
            filled["density"] = str(defaults["density"])
        if spec.uses_sign_method:
            filled["majority_sign_method"] = str(defaults["majority_sign_method"])
        choices.append(
            MethodChoice(
                name=spec.name,
                summary=spec.summary,
                reference_url=spec.reference_url,
                uses_rank=spec.uses_rank,
                uses_density=spec.uses_density,
                uses_seed=spec.uses_seed,
                uses_sign_method=spec.uses_sign_method,
                defaults=filled,
            )
        )
    choices.append(MethodChoice(name=HYBRID, summary=HYBRID_SUMMARY, reference_url=""))
    return choices


def form_initial() -> dict[str, Any]:
    """The compose form's first values: what the composer would use, so a method that needs a
    density can be submitted as it comes, with or without JavaScript."""
    defaults = parameter_defaults()
    return {"density": defaults["density"], "majority_sign_method": defaults["majority_sign_method"]}


def form_placeholders() -> dict[str, str]:
    """What an empty parameter means, shown in its field."""
    return {"rank": "largest input rank", "seed": f"{parameter_defaults()['seed']} (default)"}


# --- Method `search`: the hub finds the weights ---------------------------------------------------------

SEARCH_NOTE = (
    "The hub finds the weights: CMA-ES tries candidates on the suites' search split, the uniform merge first; "
    "the weights typed here are ignored."
)

# Registry codes of a refused search that belong to the suites the form offers.
_SUITE_CODES = frozenset({"no_suites", "suite_not_found", "no_search_split", "unsuitable_suite"})
# Search parameters that are fields of the form: a "bad_parameters" message starts with the parameter's name.
_SEARCH_FIELDS = {"budget": "budget", "objective": "objective"}
OBJECTIVE_LABELS = {
    "loss": "−mean NLL per token on the search split",
    "metric": "the suites' metric on the search split",
}


def search_error_field(exc: RegistryError) -> str | None:
    """The compose form's field a refused search request is about (None: the form as a whole)."""
    if exc.code in _SUITE_CODES:
        return "suites"
    first = exc.message.split(" ", 1)[0]
    return _SEARCH_FIELDS.get(first) if exc.code == "bad_parameters" else None


@dataclass(frozen=True)
class SearchSuite:
    """One of the base model's eval suites as the compose form offers it to a search."""

    name: str
    kind: str
    metric: str
    examples: int
    search_fraction: float
    # Why a search cannot score it ("" when it can): the registry refuses such a suite too.
    unavailable: str = ""

    @property
    def search_examples(self) -> int:
        return round(self.examples * self.search_fraction)


def search_suites(actor: Actor, base_model: str) -> list[SearchSuite]:
    """The base model's suites, those with a search split first; the others say why a search cannot
    use them. Empty if the actor cannot see the base model."""
    if not base_model:
        return []
    try:
        base = access_base_model(actor, base_model)
    except RegistryError:
        return []
    offered = []
    for suite in suites_of(base):
        unavailable = ""
        if suite.kind == SuiteKind.CLASSIFICATION:
            unavailable = "scores a classification head, which a search does not combine"
        elif not suite.search_fraction:
            unavailable = "no search split (search_fraction 0): a search would see the examples it is judged on"
        offered.append(
            SearchSuite(
                name=suite.name,
                kind=suite.get_kind_display(),
                metric=suite.metric,
                examples=suite.examples,
                search_fraction=suite.search_fraction,
                unavailable=unavailable,
            )
        )
    return sorted(offered, key=lambda s: bool(s.unavailable))


@dataclass(frozen=True)
class FoundWeight:
    adapter: str
    weight: float | None


@dataclass(frozen=True)
class SearchProgress:
    """What a search job's page shows: candidates done / budget, the best score so far, the weights
    found (per input, in the recipe's order) and the chart's data."""

    done: int
    budget: int
    best: float | None
    uniform: float | None
    finished: bool
    objective: str
    axis: str
    suites: list[str]
    weights: list[FoundWeight]
    chart: dict[str, Any]


def search_progress(job: CompositionJob, recipe: dict[str, Any]) -> SearchProgress | None:
    """A search job's progress from its report (None for other methods).

    While it runs, report["search"] holds done, budget, best and trace; once it has succeeded,
    weights, score, uniform_score and trace. `recipe` is the one the viewer may read (private inputs
    unnamed), so the weights are labelled as the page labels the inputs.
    """
    if recipe.get("method") != SEARCH:
        return None
    params = recipe.get("parameters") or {}
    report = (job.report or {}).get("search") or {}
    trace = report.get("trace") or []
    scores = [c.get("score") for c in trace]
    finished = "weights" in report
    budget = int(report.get("budget") or params.get("budget") or DEFAULTS["budget"])
    if finished:
        best, weights = report.get("score"), report.get("weights") or []
        uniform = report.get("uniform_score")
    else:
        best_candidate = report.get("best") or {}
        best, weights = best_candidate.get("score"), best_candidate.get("weights") or []
        uniform = scores[0] if scores else None
    objective = str(params.get("objective") or DEFAULTS["objective"])
    suites = [str(s) for s in params.get("suites") or []]
    axis = OBJECTIVE_LABELS["loss"]
    if objective == "metric":
        metrics = sorted(
            set(
                EvalSuite.objects.filter(base_model__name=recipe.get("base_model"), name__in=suites).values_list(
                    "metric", flat=True
                )
            )
        )
        axis = f"{'mean ' if len(suites) > 1 else ''}{', '.join(metrics) or 'metric'} on the search split"
    inputs = recipe.get("inputs") or []
    found = [
        FoundWeight(adapter=f"{i['adapter']}{':' + str(i['version']) if i.get('version') else ''}", weight=w)
        for i, w in zip(inputs, weights or [None] * len(inputs), strict=False)
    ]
    return SearchProgress(
        done=int(report.get("done") or len(trace)),
        budget=budget,
        best=best,
        uniform=uniform,
        finished=finished,
        objective=objective,
        axis=axis,
        suites=suites,
        weights=found,
        chart={
            "scores": scores,
            "uniform": uniform,
            "parents": [
                {"adapter": str(p.get("adapter")), "score": p.get("score")} for p in report.get("parents") or []
            ],
            "budget": budget,
            "axis": axis,
            "finished": finished,
        },
    )

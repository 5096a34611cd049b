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
from registry.access import Actor
from registry.compositions import HYBRID, CompositionRequest, InputSpec, ResolvedInput
from registry.exceptions import RegistryError


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
    try:
        if not hybrid:
            params = compositions.check_parameters(method, request.parameters, n_inputs=len(specs))
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

"""Forms of the web pages. They parse and validate input; the registry's services decide."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import ValidationError
from django.http import QueryDict
from django.utils import timezone

import composer
from hub.web.compose import search_error_field
from registry.compositions import SEARCH, SEARCH_DEFAULTS, CompositionRequest, InputSpec
from registry.exceptions import RegistryError
from registry.models import (
    RESERVED_NAMESPACES,
    WRITE_ROLES,
    Adapter,
    Membership,
    Method,
    Namespace,
    TokenScope,
    Visibility,
    slug_validator,
)
from registry.services import AdapterMetadata

# First path segments the web pages own: a namespace of that name would be shadowed.
RESERVED_NAMES = RESERVED_NAMESPACES


def writable_namespaces(user: Any) -> list[str]:
    """The user's own namespace, then the organizations where they may write."""
    names = list(Namespace.objects.filter(user=user).values_list("name", flat=True))
    orgs = Membership.objects.filter(user=user, role__in=WRITE_ROLES).order_by("namespace__name")
    return names + list(orgs.values_list("namespace__name", flat=True))


def _choice_field(form: forms.Form, name: str) -> forms.ChoiceField:
    """One of the form's ChoiceFields (form.fields holds them typed as plain Fields)."""
    field = form.fields[name]
    assert isinstance(field, forms.ChoiceField), f"{name} is not a ChoiceField"
    return field


class SignupForm(UserCreationForm):
    """A user and, with it, the namespace of the same name."""

    def clean_username(self) -> str:
        username: str = super().clean_username()
        try:
            slug_validator(username)
        except ValidationError:
            raise ValidationError("Use letters, digits, '.', '_' or '-', starting with a letter or digit.") from None
        if username.lower() in RESERVED_NAMES or Namespace.objects.filter(name__iexact=username).exists():
            raise ValidationError("This name is taken.")
        return username


class UploadForm(forms.Form):
    """Where to push and the adapter's metadata; the files come from request.FILES."""

    namespace = forms.ChoiceField()
    name = forms.CharField(max_length=96, validators=[slug_validator], help_text="Letters, digits, '.', '_' or '-'.")
    base_model = forms.CharField(
        max_length=200, required=False, help_text="Leave empty to use base_model_name_or_path from adapter_config.json."
    )
    method = forms.ChoiceField(choices=[("", "From adapter_config.json"), *Method.choices], required=False)
    task = forms.CharField(max_length=64, required=False)
    tags = forms.CharField(max_length=500, required=False, help_text="Comma-separated.")
    license = forms.CharField(max_length=64, required=False)
    visibility = forms.ChoiceField(
        choices=[("", "Unchanged (public for a new adapter)"), *Visibility.choices], required=False
    )
    description = forms.CharField(max_length=500, required=False, widget=forms.Textarea(attrs={"rows": 2}))
    label = forms.CharField(max_length=64, required=False, help_text="Optional, e.g. v1.0; never a bare number.")

    def __init__(self, *args: Any, namespaces: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _choice_field(self, "namespace").choices = [(n, n) for n in namespaces]

    def metadata(self) -> AdapterMetadata:
        data = self.cleaned_data
        tags = [t.strip() for t in data["tags"].split(",") if t.strip()] if data["tags"] else None
        return AdapterMetadata(
            base_model=data["base_model"] or None,
            method=data["method"] or None,
            task=data["task"] or None,
            tags=tags,
            license=data["license"] or None,
            visibility=data["visibility"] or None,
            description=data["description"] or None,
        )


def method_choices() -> list[tuple[str, str]]:
    merges = [(name, f"{name} — {spec.summary}") for name, spec in composer.METHODS.items()]
    return [*merges, ("hybrid", "hybrid — keep the inputs side by side as the parts of one adapter")]


class ComposeForm(forms.Form):
    """A recipe: inputs (repeated adapter/version/weight fields) or an expression, a method and its
    parameters, and the target. Parameters the method does not use are ignored, so switching
    methods in the form never leaves a stale value behind."""

    method = forms.ChoiceField(choices=method_choices, initial="linear")
    expression = forms.CharField(
        max_length=2000, required=False, help_text="Instead of inputs: 0.7*ns/a + 0.5*ns/b:2 - 0.3*ns/c"
    )
    rank = forms.IntegerField(min_value=1, max_value=4096, required=False)
    density = forms.FloatField(min_value=0.0, max_value=1.0, required=False)
    seed = forms.IntegerField(min_value=0, required=False)
    majority_sign_method = forms.ChoiceField(choices=[("total", "total"), ("frequency", "frequency")], required=False)
    into_namespace = forms.ChoiceField(label="Namespace")
    # Optional here so that the check can run before the result is named; submitting needs it.
    into_name = forms.CharField(max_length=96, label="New adapter name", validators=[slug_validator], required=False)
    description = forms.CharField(max_length=500, required=False)
    force = forms.BooleanField(required=False, help_text="Compose again even if this exact recipe already ran.")
    # Method `search`: the hub finds the weights on the chosen suites' search split. Its limits and the
    # suites' fitness are the registry's to check (registry.autocompose.check_search); they come back as
    # errors on these fields.
    weighting = forms.ChoiceField(
        choices=[("set", "I set the weights (a merge method)"), (SEARCH, "Let the hub find the weights (search)")],
        widget=forms.RadioSelect,
        initial="set",
        required=False,
        label="Weights",
    )
    suites = forms.Field(required=False, widget=forms.CheckboxSelectMultiple, label="Suites to search on")
    budget = forms.IntegerField(
        required=False, initial=SEARCH_DEFAULTS["budget"], help_text="Candidates to try, each about one evaluation."
    )
    objective = forms.ChoiceField(
        choices=[
            ("loss", "loss (NLL of the answers)"),
            ("metric", "metric (the suites' own)"),
        ],
        initial=SEARCH_DEFAULTS["objective"],
        required=False,
    )

    def __init__(self, data: QueryDict | None = None, *, namespaces: list[str], **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        _choice_field(self, "into_namespace").choices = [(n, n) for n in namespaces]
        self.inputs: list[InputSpec] = []
        self.rows: list[dict[str, str]] = []
        if data is not None:
            self.rows = [
                {"adapter": a.strip(), "version": v.strip(), "weight": w.strip()}
                for a, v, w in zip(
                    data.getlist("adapter"), data.getlist("version"), data.getlist("weight"), strict=False
                )
                if a.strip()
            ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        inputs = []
        for row in self.rows:
            try:
                weight = float(row["weight"] or "1")
            except ValueError:
                raise ValidationError(
                    f"The weight of {row['adapter']} must be a number, not {row['weight']!r}."
                ) from None
            inputs.append(InputSpec(adapter=row["adapter"], weight=weight, version=row["version"] or None))
        self.inputs = inputs
        if not inputs and not data.get("expression"):
            raise ValidationError("Add at least one adapter (or write an expression).")
        return data

    @property
    def searches(self) -> bool:
        """Whether the hub is to find the weights (method `search`) instead of the chosen merge method."""
        return bool(self.cleaned_data.get("weighting") == SEARCH)

    def search_parameters(self) -> dict[str, Any]:
        """The search's parameters as the registry takes them; an empty field leaves its default."""
        data = self.cleaned_data
        params: dict[str, Any] = {"suites": [str(s) for s in data.get("suites") or []]}
        if data.get("budget") is not None:
            params["budget"] = data["budget"]
        if data.get("objective"):
            params["objective"] = data["objective"]
        return params

    def add_registry_error(self, exc: RegistryError) -> None:
        """A refused search as an error on the field it is about (the form's own otherwise)."""
        self.add_error(search_error_field(exc), exc.message)

    def parameters(self) -> dict[str, Any]:
        data = self.cleaned_data
        if self.searches:
            return self.search_parameters()
        if data["method"] == "hybrid":  # parts are kept as they are
            return {}
        spec = composer.get_method(data["method"])
        params: dict[str, Any] = {}
        if spec.uses_rank and data.get("rank"):
            params["rank"] = data["rank"]
        if spec.uses_density and data.get("density") is not None:
            params["density"] = data["density"]
        if spec.uses_seed and data.get("seed") is not None:
            params["seed"] = data["seed"]
        if spec.uses_sign_method and data.get("majority_sign_method"):
            params["majority_sign_method"] = data["majority_sign_method"]
        return params

    def to_request(self) -> CompositionRequest:
        data = self.cleaned_data
        expression = data.get("expression") or None
        return CompositionRequest(
            into=f"{data['into_namespace']}/{data['into_name']}" if data.get("into_name") else "",
            method=SEARCH
            if self.searches
            else data["method"]
            if not expression or data["method"] != "linear"
            else None,
            inputs=[] if expression else self.inputs,
            expression=expression,
            parameters=self.parameters(),
            description=data.get("description", ""),
            force=bool(data.get("force")),
        )


EXPIRY_CHOICES = [("", "Never"), ("7", "7 days"), ("30", "30 days"), ("90", "90 days"), ("365", "1 year")]


# Admin scope is offered to staff only (see TokenForm.__init__).
TOKEN_SCOPE_CHOICES = [(TokenScope.READ, "read"), (TokenScope.WRITE, "write")]


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, initial="my laptop")
    scope = forms.ChoiceField(choices=TOKEN_SCOPE_CHOICES, initial=TokenScope.READ)
    namespace = forms.ChoiceField(required=False, label="Limit to namespace")
    expires = forms.ChoiceField(choices=EXPIRY_CHOICES, required=False, label="Expires")

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if user.is_staff:
            _choice_field(self, "scope").choices = [*TOKEN_SCOPE_CHOICES, (TokenScope.ADMIN, "admin")]
        names = [n.name for n in Namespace.objects.filter(user=user)] + [
            m.namespace.name for m in Membership.objects.filter(user=user).select_related("namespace")
        ]
        _choice_field(self, "namespace").choices = [("", "Any namespace")] + [(n, n) for n in names]

    def expires_at(self) -> Any:
        days = self.cleaned_data.get("expires")
        return timezone.now() + timedelta(days=int(days)) if days else None


# --- The adapter page's owner actions -----------------------------------------------------------------


def _tag_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


class AdapterMetadataForm(forms.Form):
    """What an owner edits on the adapter's Settings tab: the fields of the API's AdapterMetadataInput
    but visibility (a form of its own). A field left as it was is sent as None ("leave as is"), so
    an unchanged base model is never looked up again."""

    description = forms.CharField(max_length=500, required=False, widget=forms.Textarea(attrs={"rows": 3}))
    task = forms.CharField(max_length=64, required=False, help_text="e.g. text-to-sql, summarization.")
    tags = forms.CharField(max_length=2000, required=False, help_text="Comma-separated.")
    license = forms.CharField(max_length=64, required=False, help_text="e.g. apache-2.0, mit.")
    method = forms.ChoiceField(choices=Method.choices)
    base_model = forms.CharField(max_length=200)

    def __init__(self, data: QueryDict | None = None, *, adapter: Adapter, tags: list[str], has_versions: bool) -> None:
        initial = {
            "description": adapter.description,
            "task": adapter.task,
            "tags": ", ".join(tags),
            "license": adapter.license,
            "method": adapter.method,
            "base_model": adapter.base_model.name,
        }
        super().__init__(data, initial=initial)
        self.adapter = adapter
        if has_versions:
            # The registry refuses a new base model once versions exist (their shapes were checked against it).
            self.fields["base_model"].disabled = True
            self.fields["base_model"].help_text = "Fixed: versions were published against it."

    def metadata(self) -> AdapterMetadata:
        data = self.cleaned_data
        return AdapterMetadata(
            base_model=data["base_model"] if data["base_model"] != self.adapter.base_model.name else None,
            method=data["method"] if data["method"] != self.adapter.method else None,
            task=data["task"],
            tags=_tag_list(data["tags"]),
            license=data["license"],
            description=data["description"],
        )


class VisibilityForm(forms.Form):
    visibility = forms.ChoiceField(choices=Visibility.choices)

    def metadata(self) -> AdapterMetadata:
        return AdapterMetadata(visibility=self.cleaned_data["visibility"])


class YankForm(forms.Form):
    """Yank a version (the reason is required by the registry, which says so) or restore it."""

    action = forms.ChoiceField(choices=[("yank", "Yank"), ("restore", "Restore")])
    reason = forms.CharField(max_length=500, required=False)

    @property
    def yanked(self) -> bool:
        return bool(self.cleaned_data["action"] == "yank")


class EvaluationForm(forms.Form):
    """One suite of the adapter's base model to evaluate a version on."""

    suite = forms.ChoiceField()
    force = forms.BooleanField(required=False, label="Evaluate again even if already scored")

    def __init__(self, data: QueryDict | None = None, *, suites: list[tuple[str, str]]) -> None:
        super().__init__(data)
        _choice_field(self, "suite").choices = suites

"""The web catalog's pages: parse the request, call the registry, render a template.

Every read goes through `registry.access` / `registry.selectors`, so private adapters stay
invisible exactly as in the API; every write calls a `registry` service with the session's Actor.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.files.uploadedfile import UploadedFile
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from demo import status as demo_status
from hub.web import forms, queries, svg
from hub.web.compose import (
    check_composition,
    form_initial,
    form_placeholders,
    method_choices,
    search_progress,
    search_suites,
)
from hub.web.display import Card, adapter_url, ago, make_cards, verdict
from hub.web.modelcard import render_card
from registry import evaluations, push, search, services
from registry.access import Actor, access_adapter, access_base_model, access_namespace, visible_adapters
from registry.api.errors import status_of
from registry.api.pagination import CountedPaginator
from registry.compositions import submit_composition, version_lineage, visible_job
from registry.exceptions import AccessDenied, NotAuthenticated, NotFound, RegistryError
from registry.methods import method_details
from registry.models import (
    LORA_FAMILY,
    Adapter,
    AdapterVersion,
    BaseModel,
    CompositionJob,
    EvalResult,
    EvalSuite,
    EvaluationRequest,
    JobStatus,
    Namespace,
    Role,
    Validation,
)
from registry.scores import leaderboard, suites_of, version_scores
from registry.selectors import AdapterQuery, list_versions, search_adapters

if TYPE_CHECKING:
    from django.contrib.auth.models import User

PAGE_SIZE = 24
MAX_PAGE_SIZE = 100
SORT_LABELS = {"relevance": "Best match", "downloads": "Most downloaded", "recent": "Recently updated", "name": "Name"}
CATALOG_PARAMS = ("q", "base_model", "method", "task", "tag", "sort", "suite", "page", "page_size")

signin_required = login_required(login_url="web:login")


class AuthenticatedHttpRequest(HttpRequest):
    """The request of a signin_required view: login_required lets only signed-in users through."""

    user: User


def actor_of(request: HttpRequest) -> Actor:
    # A session acts with the user's full rights (no token narrows it), as in the API.
    return Actor(user=request.user if request.user.is_authenticated else None)


def pages(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Turn the registry's errors into pages: 404 for absent or hidden things, the login page for
    anonymous writes, and an explained error page otherwise."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            return view(request, *args, **kwargs)
        except NotAuthenticated:
            return redirect_to_login(request.get_full_path(), login_url=reverse("web:login"))
        except RegistryError as exc:
            return error_page(request, status_of(exc), exc.message)

    return wrapper


def error_page(request: HttpRequest, status: int, message: str) -> HttpResponse:
    titles = {403: "Not allowed", 404: "Not found"}
    return render(
        request,
        "web/error.html",
        {"status": status, "title": titles.get(status, "Something is wrong"), "message": message},
        status=status,
    )


# --- Catalog ---------------------------------------------------------------------------------------


def _page_links(page: Page[Any], params: dict[str, str]) -> list[dict[str, Any]]:
    links: list[dict[str, Any]] = []
    for number in page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1):
        if number == Paginator.ELLIPSIS:
            links.append({"ellipsis": True})
        else:
            links.append(
                {
                    "number": number,
                    "url": queries.query_string(params, page=str(number)),
                    "current": number == page.number,
                }
            )
    return links


def _page_size(value: str | None) -> int:
    return min(int(value), MAX_PAGE_SIZE) if value and value.isdigit() and int(value) > 0 else PAGE_SIZE


def _paginate(found: Any, params: dict[str, str], *, count: int | None = None) -> dict[str, Any]:
    size = _page_size(params.get("page_size"))
    paginator = Paginator(found, size) if count is None else CountedPaginator(found, size, count=count)
    page = paginator.get_page(params.get("page"))
    return {
        "page": page,
        "cards": make_cards(page),
        "page_links": _page_links(page, params) if paginator.num_pages > 1 else [],
        "prev_url": queries.query_string(params, page=str(page.number - 1)) if page.has_previous() else "",
        "next_url": queries.query_string(params, page=str(page.number + 1)) if page.has_next() else "",
    }


@pages
@require_GET
def catalog(request: HttpRequest) -> HttpResponse:
    """Search with facets (counts per base model, method, task, tag), sorts and pages.

    `sort` is downloads, recent, name, or score with `suite=<id>` (the form sends `score:<id>`).
    An unknown sort or suite (an old link) falls back to the default order.
    """
    actor = actor_of(request)
    params = {key: request.GET.get(key, "").strip() for key in CATALOG_PARAMS}
    sort, suite_id = params["sort"] or "relevance", params["suite"]
    if sort.startswith("score:"):
        sort, suite_id = "score", sort.removeprefix("score:")
    suite = None
    if sort == "score":
        suite = (
            EvalSuite.objects.select_related("base_model").filter(pk=int(suite_id)).first()
            if suite_id.isdigit()
            else None
        )
    if sort not in SORT_LABELS and suite is None:
        sort = "relevance"
    params["sort"] = "" if sort == "relevance" else sort
    params["suite"] = str(suite.pk) if suite is not None else ""
    text = search.understand(params["q"], visible_adapters(actor))
    query = AdapterQuery(
        q=text.query,
        correct_typos=False,
        base_model=params["base_model"],
        method=params["method"],
        task=params["task"],
        tag=params["tag"],
        sort=sort,
        suite=params["suite"],
    )
    counted = queries.facets(actor, query, suite, params)
    sort_value = f"score:{suite.pk}" if suite is not None else sort
    context = {
        **_paginate(queries.catalog_page_queryset(actor, query, suite), params, count=counted.total),
        "params": params,
        "query": query,
        "corrections": text.corrections,
        "suite": suite,
        "facets": counted.facets,
        "sort_options": [{"value": k, "label": v, "selected": k == sort_value} for k, v in SORT_LABELS.items()],
        "suite_options": [
            {
                "value": f"score:{s.pk}",
                "label": f"{s.name} · {s.base_model.name}",
                "selected": f"score:{s.pk}" == sort_value,
            }
            for s in queries.sort_suites()
        ],
        "filtered": any(params[k] for k in ("q", "base_model", "method", "task", "tag")),
        "clear_url": queries.query_string({"sort": params["sort"], "suite": params["suite"]}),
        # `make run` serves the catalog while it builds the demo data in the background.
        "demo_building": demo_status.building(),
    }
    partial = request.headers.get("X-Partial") == "catalog"
    response = render(request, "web/partials/catalog_results.html" if partial else "web/catalog.html", context)
    # The live search fetches the same URL for a fragment: caches must keep the two apart.
    patch_vary_headers(response, ["X-Partial"])
    return response


# --- Adapter page ----------------------------------------------------------------------------------


def _pick_version(adapter: Adapter, versions: list[AdapterVersion], ref: str) -> AdapterVersion | None:
    """The version `?version=` names (a number or a label), else the newest non-yanked one, else
    the newest (so an adapter whose versions are all yanked still shows its files)."""
    if ref:
        for version in versions:
            if str(version.number) == ref or (version.label and version.label == ref):
                return version
        raise NotFound(f"{adapter.full_name} has no version {ref}", code="version_not_found")
    return next((v for v in versions if not v.yanked), versions[0] if versions else None)


def _reasons(version: AdapterVersion) -> list[str]:
    reasons = version.validation_reasons or []
    if not isinstance(reasons, list):
        reasons = [reasons]
    return [_reason_sentence(r) if isinstance(r, dict) else str(r) for r in reasons]


def _reason_sentence(reason: dict[str, Any]) -> str:
    """One line per gate check, e.g. "✓ capital-qa: exact_match 1.000 ≥ 0.950 (95 % of demo/a:1's 1.000)"."""
    if "suite" not in reason or "required" not in reason:
        prefix = f"{reason['suite']}: " if "suite" in reason else ""
        return prefix + str(reason.get("reason") or reason.get("message") or reason)
    value = reason.get("value")
    higher = reason.get("higher_is_better", reason.get("metric") != "perplexity")
    comparison = "≥" if higher else "≤"
    shown = "no score" if value is None else f"{value:.3f}"
    mark = "✓" if reason.get("passed") else "✗"
    return (
        f"{mark} {reason['suite']}: {reason.get('metric', '')} {shown}, needs {comparison} {reason['required']:.3f} "
        f"(from {reason.get('best_parent', 'the best parent')}'s {reason.get('best_parent_value', 0):.3f})"
    )


def _version_node(version: AdapterVersion, weight: float | None = None, negated: bool = False) -> svg.Node:
    adapter = version.adapter
    note = "yanked" if version.yanked else (version.label or "")
    return svg.Node(
        label=f"{adapter.namespace.name}/{adapter.name}:{version.number}",
        href=f"{adapter_url(adapter)}lineage/?version={version.number}",  # the lineage tab: walk the graph
        weight=weight,
        negated=negated,
        yanked=version.yanked,
        note=note,
    )


def baseline_scores_of(base_model: BaseModel) -> dict[str, dict[str, float]]:
    """The bare base model's own scores, suite name → {metric: value}: the Evaluation tab shows them
    as a "base model (baseline)" row under each suite and as a dashed line on its chart."""
    return {
        baseline.suite.name: {baseline.metric: baseline.value}
        for baseline in evaluations.baselines_of(base_model).values()
        if baseline.value is not None
    }


def _charts(adapter: Adapter, baseline: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Scores across versions, for plotly.js: one chart per suite and metric scored on at least two
    versions. One version's scores are the table above it: no one-dot charts."""
    charts: list[dict[str, Any]] = []
    history = queries.score_history(adapter)
    for (suite, metric, higher), points in sorted(history.items(), key=lambda item: (item[0][0], item[0][1])):
        if len(points) < 2:
            continue
        charts.append(
            {
                "id": f"chart-{len(charts) + 1}",
                "suite": suite,
                "metric": metric,
                "higher_is_better": higher,
                "points": points,  # [(version number, value)], in version order
                "baseline": baseline.get(suite, {}).get(metric),
            }
        )
    return charts


def _score_rows(results: list[EvalResult], baseline: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """A version's newest score per suite, each with the base model's own score on it when known."""
    rows = []
    for result in results:
        base = baseline.get(result.suite, {}).get(result.metric)
        delta = None if base is None else result.value - base
        higher = result.eval_suite.higher_is_better if result.eval_suite is not None else None
        better = None if delta is None or higher is None or delta == 0 else (delta > 0) == higher
        rows.append({"result": result, "baseline": base, "delta": delta, "better": better})
    return rows


def _snippets(request: HttpRequest, adapter: Adapter, version: AdapterVersion) -> dict[str, str]:
    hub_url = request.build_absolute_uri("/").rstrip("/")
    ref = f"{adapter.namespace.name}/{adapter.name}"
    token_line = "\nexport HF_TOKEN=ahub_...   # a read token from Settings → Tokens" if adapter.is_private else ""
    # The hub serves the base model too when it stores its files; otherwise it comes from elsewhere.
    where_base = "" if adapter.base_model.files_digest else "  # not stored on this hub: a local folder"
    return {
        "shell": f"export HF_ENDPOINT={hub_url}{token_line}",
        "python": (
            "import os\n"
            f'os.environ["HF_ENDPOINT"] = "{hub_url}"  # before importing huggingface_hub\n\n'
            "from peft import PeftModel\n"
            "from transformers import AutoModelForCausalLM\n\n"
            f'base = AutoModelForCausalLM.from_pretrained("{adapter.base_model.name}"){where_base}\n'
            f'model = PeftModel.from_pretrained(base, "{ref}", revision="{version.number}")'
        ),
        "cli": f"ahub pull {ref}:{version.number}",
    }


# The adapter page's tabs, as on the Hugging Face Hub; each is its own URL (`/ns/name/files/`), so
# every tab works without JavaScript and the bare `/ns/name/` (every existing link) is the card.
ADAPTER_TABS = {"card": "Model card", "files": "Files and versions", "evaluation": "Evaluation", "lineage": "Lineage"}


def _tab_url(adapter: Adapter, tab: str, version: str | int | None = None) -> str:
    path = adapter_url(adapter) + ("" if tab == "card" else f"{tab}/")
    return f"{path}?{urlencode({'version': version})}" if version else path


def _tabs(adapter: Adapter, current: str, version_ref: str, can_write: bool) -> list[dict[str, Any]]:
    tabs = [
        {"key": key, "label": label, "url": _tab_url(adapter, key, version_ref), "current": key == current}
        for key, label in ADAPTER_TABS.items()
    ]
    if can_write:
        url = _tab_url(adapter, "settings")
        tabs.append({"key": "settings", "label": "Settings", "url": url, "current": current == "settings"})
    return tabs


def _suite_choices(adapter: Adapter) -> list[tuple[str, str]]:
    return [
        (s.name, f"{s.name} ({s.metric}{', default' if s.is_default else ''})") for s in suites_of(adapter.base_model)
    ]


def _adapter_context(request: HttpRequest, actor: Actor, adapter: Adapter, tab: str) -> dict[str, Any]:
    """The head and the tabs every tab shows, then what the open tab shows: each tab runs only its
    own queries (the card renders no lineage, the evaluation tab lists no files)."""
    versions = list(list_versions(adapter, include_yanked=True))
    version_ref = request.GET.get("version", "").strip()
    version = _pick_version(adapter, versions, version_ref)
    can_write = actor.can_write(adapter.namespace)
    context: dict[str, Any] = {
        "adapter": adapter,
        "tags": [t.name for t in adapter.tags.all()],
        "versions": versions,
        "version": version,
        "tab": tab,
        "tabs": _tabs(adapter, tab, version_ref, can_write),
        "updated_ago": ago(adapter.updated_at, timezone.now()),
        "can_write": can_write,
        "is_lora": adapter.method in LORA_FAMILY,
        "show_validation": version is not None and version.validation != Validation.NONE,
        "evaluation_url": _tab_url(adapter, "evaluation", version_ref),
    }
    if version is None:
        return context
    if tab == "card":
        context.update(
            card_html=render_card(adapter.card),
            method_details=method_details(version.config),
            snippets=_snippets(request, adapter, version),
        )
    elif tab == "files":
        context["files"] = [
            {
                "file": f,
                "url": reverse(
                    "api:version-file",
                    kwargs={
                        "namespace": adapter.namespace.name,
                        "name": adapter.name,
                        "ref": str(version.number),
                        "path": f.path,
                    },
                ),
            }
            for f in version.files.all()
        ]
    elif tab == "evaluation":
        baseline = baseline_scores_of(adapter.base_model)
        searched = version.composition_jobs.filter(recipe__method="search", status=JobStatus.SUCCEEDED).first()
        context.update(
            # A version the hub's weight search made: its trace, as on the job page.
            search=search_progress(searched, queries.visible_recipe(actor, searched.recipe)) if searched else None,
            baseline_scores=baseline,
            score_rows=_score_rows(version_scores(version), baseline),
            charts=_charts(adapter, baseline),
            validation_reasons=_reasons(version),
            evaluation_requests=list(version.evaluation_requests.select_related("suite")[:10]),
            evaluation_form=forms.EvaluationForm(suites=_suite_choices(adapter)) if can_write else None,
        )
    elif tab == "lineage":
        lineage = version_lineage(actor, version)
        job = version.composition_jobs.order_by("created_at").first() if lineage.parents else None
        context.update(
            lineage=lineage,
            lineage_svg=(
                svg.lineage_graph(
                    _version_node(version),
                    [_version_node(e.version, e.weight, e.weight < 0) for e in lineage.parents],
                    [_version_node(e.version, e.weight, e.weight < 0) for e in lineage.children],
                )
                if lineage.parents or lineage.children
                else ""
            ),
            recipe=job.recipe if job is not None else None,
        )
    return context


@pages
@require_GET
def adapter_page(request: HttpRequest, namespace: str, name: str, tab: str = "card") -> HttpResponse:
    """One tab of the adapter page: model card, files and versions, evaluation, or lineage."""
    if tab not in ADAPTER_TABS:
        raise NotFound(f"the adapter page has no tab {tab!r}", code="not_found")
    actor = actor_of(request)
    adapter = access_adapter(actor, namespace, name)
    return render(request, "web/adapter.html", _adapter_context(request, actor, adapter, tab))


# --- The adapter's owners: settings, yank and restore, evaluations ------------------------------------
# Each action takes the adapter with write=True (a reader gets 403, anyone else the same 404 as for
# an absent adapter, an anonymous visitor the login page), calls the registry's own service, and
# redirects back with a message: the services check and decide exactly as for the API.


@pages
@require_http_methods(["GET", "POST"])
def adapter_settings(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    """The Settings tab: the metadata form (POST saves it, as the API's PATCH) and visibility."""
    actor = actor_of(request)
    adapter = access_adapter(actor, namespace, name, write=True)
    context = _adapter_context(request, actor, adapter, "settings")
    data = request.POST if request.method == "POST" else None
    form = forms.AdapterMetadataForm(
        data, adapter=adapter, tags=context["tags"], has_versions=bool(context["versions"])
    )
    status = 200
    if data is not None:
        if form.is_valid():
            try:
                services.update_adapter(actor=actor, adapter=adapter, meta=form.metadata())
            except RegistryError as exc:
                form.add_error(None, exc.message)
                status = status_of(exc)
            else:
                messages.success(request, f"Saved the metadata of {adapter.full_name}.")
                return redirect(_tab_url(adapter, "settings"))
        else:
            status = 400
    context.update(metadata_form=form)
    return render(request, "web/adapter.html", context, status=status)


@pages
@require_POST
def adapter_visibility(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    actor = actor_of(request)
    adapter = access_adapter(actor, namespace, name, write=True)
    form = forms.VisibilityForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose public or private.")
    else:
        try:
            services.update_adapter(actor=actor, adapter=adapter, meta=form.metadata())
        except RegistryError as exc:
            messages.error(request, exc.message)
        else:
            seen_by = "everyone" if adapter.visibility == "public" else f"members of {adapter.namespace.name} only"
            messages.success(request, f"{adapter.full_name} is now {adapter.visibility}: seen by {seen_by}.")
    return redirect(_tab_url(adapter, "settings"))


@pages
@require_POST
def version_yank(request: HttpRequest, namespace: str, name: str, number: int) -> HttpResponse:
    """Yank a version (with the reason users who pinned it will read) or restore it."""
    actor = actor_of(request)
    adapter = access_adapter(actor, namespace, name, write=True)
    version = services.resolve_version(adapter, number)
    form = forms.YankForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Say whether to yank or restore the version.")
    else:
        try:
            services.yank_version(actor=actor, version=version, reason=form.cleaned_data["reason"], yanked=form.yanked)
        except RegistryError as exc:
            messages.error(request, exc.message)
        else:
            if version.yanked:
                messages.success(
                    request,
                    f"Yanked version {version.number}: {version.yanked_reason}. It stays downloadable by number; "
                    "latest skips it.",
                )
            else:
                messages.success(request, f"Restored version {version.number}.")
    return redirect(_tab_url(adapter, "files", version.number))


@pages
@require_POST
def version_evaluate(request: HttpRequest, namespace: str, name: str, number: int) -> HttpResponse:
    """Queue an evaluation of a version on one suite of its base model."""
    actor = actor_of(request)
    adapter = access_adapter(actor, namespace, name, write=True)
    version = services.resolve_version(adapter, number)
    form = forms.EvaluationForm(request.POST, suites=_suite_choices(adapter))
    if not form.is_valid():
        messages.error(request, f"Pick one of {adapter.base_model.name}'s eval suites.")
    else:
        asked_at = timezone.now()
        try:
            requested = evaluations.request_evaluations(
                actor=actor, version=version, suites=[form.cleaned_data["suite"]], force=form.cleaned_data["force"]
            )
        except RegistryError as exc:
            messages.error(request, exc.message)
        else:
            for queued in requested:
                messages.info(request, _evaluation_message(queued, version, new=queued.created_at >= asked_at))
    return redirect(_tab_url(adapter, "evaluation", version.number))


def _evaluation_message(queued: EvaluationRequest, version: AdapterVersion, *, new: bool) -> str:
    what = f"version {version.number} on {queued.suite.name}"
    if new:
        return f"Queued an evaluation of {what}: its score appears here once a worker has run it."
    if queued.status == JobStatus.SUCCEEDED:
        return f"There is already a score of {what} (tick “Evaluate again” to run it anew)."
    return f"An evaluation of {what} is already {queued.status}."


# --- Namespaces and base models ---------------------------------------------------------------------


@pages
@require_GET
def namespace_page(request: HttpRequest, namespace: str) -> HttpResponse:
    actor = actor_of(request)
    owner = access_namespace(actor, namespace)
    params = {key: request.GET.get(key, "").strip() for key in ("sort", "page", "page_size")}
    sort = params["sort"] if params["sort"] in SORT_LABELS else "downloads"
    found = search_adapters(actor, AdapterQuery(namespace=owner.name, sort=sort))
    members = (
        list(owner.memberships.select_related("user").order_by("role", "user__username"))
        if owner.kind == Namespace.Kind.ORG
        else []
    )
    return render(
        request,
        "web/namespace.html",
        {
            **_paginate(found, params),
            "namespace": owner,
            "members": members,
            "sort": sort,
            "sort_labels": SORT_LABELS,
            "can_write": actor.can_write(owner),
            "can_manage": owner.kind == Namespace.Kind.ORG and actor.can_manage(owner),
            "roles": Role.choices,
        },
    )


# --- Organization members (owners only; registry.services.set_membership decides) --------------------


@pages
@signin_required
@require_POST
def member_set(request: AuthenticatedHttpRequest, namespace: str) -> HttpResponse:
    """Add a member with a role, or change a member's role."""
    username, role = request.POST.get("username", "").strip(), request.POST.get("role", "").strip()
    return _set_membership(request, namespace, username, role, done=f"{username} is now {role} of {namespace}.")


@pages
@signin_required
@require_POST
def member_remove(request: AuthenticatedHttpRequest, namespace: str, username: str) -> HttpResponse:
    return _set_membership(request, namespace, username, None, done=f"{username} is no longer a member of {namespace}.")


def _set_membership(
    request: AuthenticatedHttpRequest, namespace: str, username: str, role: str | None, *, done: str
) -> HttpResponse:
    """Call the service and go back to the namespace page, saying what happened. A refusal for want
    of rights is the error page (403); a mistake an owner can fix (no such user, the last owner,
    an unknown role) is a message on the page."""
    actor = actor_of(request)
    org = access_namespace(actor, namespace)
    try:
        services.set_membership(actor=actor, namespace=org, username=username, role=role)
    except (AccessDenied, NotAuthenticated):
        raise
    except RegistryError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, done)
    return redirect(f"{reverse('web:namespace', kwargs={'namespace': org.name})}#members")


@pages
@require_GET
def base_models(request: HttpRequest) -> HttpResponse:
    bases = list(queries.base_models_with_counts(actor_of(request)))
    return render(request, "web/base_models.html", {"bases": bases})


@pages
@require_GET
def base_model_page(request: HttpRequest, name: str) -> HttpResponse:
    """A base model: its adapters (best first) and a leaderboard per eval suite."""
    actor = actor_of(request)
    base = access_base_model(actor, name)
    params = {key: request.GET.get(key, "").strip() for key in ("page", "page_size")}
    found = search_adapters(actor, AdapterQuery(base_model=base.name))
    baselines = evaluations.baselines_of(base)
    boards = [
        {"suite": suite, "rows": leaderboard(actor, suite, limit=10), "baseline": baselines.get(suite.pk)}
        for suite in suites_of(base)
    ]
    base_files = list(base.files.all())
    return render(
        request,
        "web/base_model.html",
        {
            **_paginate(found, params),
            "base": base,
            "boards": boards,
            "module_count": len(base.manifest or {}),
            "base_files": base_files,
            "weights_stored": any(f.path.endswith(".safetensors") for f in base_files),
            "catalog_url": reverse("web:catalog") + queries.query_string({"base_model": base.name}),
        },
    )


# --- Upload ----------------------------------------------------------------------------------------


@pages
@signin_required
def upload(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Push a new version (creating the adapter on its first push) from files picked in the browser.

    Django keeps only each file's base name, which is all a PEFT adapter folder needs
    (adapter_config.json, adapter_model.safetensors, README.md).
    """
    actor = actor_of(request)
    services.ensure_user_namespace(request.user)
    namespaces = forms.writable_namespaces(request.user)
    status = 200
    if request.method == "POST":
        form = forms.UploadForm(request.POST, namespaces=namespaces)
        sent = request.FILES.getlist("files") + request.FILES.getlist("folder")
        if not sent:
            form.add_error(
                None, "Pick the files of your adapter (adapter_config.json, adapter_model.safetensors, README.md)."
            )
        if form.is_valid():
            try:
                result = push.push_version(
                    actor=actor,
                    namespace=form.cleaned_data["namespace"],
                    name=form.cleaned_data["name"],
                    files=[_incoming(f) for f in sent],
                    meta=form.metadata(),
                    label=form.cleaned_data["label"] or None,
                )
            except RegistryError as exc:
                where = f" ({exc.extra['path']})" if exc.extra.get("path") else ""
                form.add_error(None, f"{exc.message}{where}")
                status = status_of(exc)
            else:
                version = result.version
                if result.created:
                    messages.success(request, f"Published {version.adapter.full_name} version {version.number}.")
                else:
                    messages.info(
                        request, f"These files are already version {version.number}; nothing new was published."
                    )
                return redirect(f"{adapter_url(version.adapter)}?version={version.number}")
            finally:
                for f in sent:
                    f.close()
        else:
            status = 400
    else:
        into = request.GET.get("into", "")
        ns, _, name = into.partition("/")
        initial = {"namespace": ns if ns in namespaces else (namespaces[0] if namespaces else ""), "name": name}
        form = forms.UploadForm(initial=initial, namespaces=namespaces)
    existing = None
    if form["namespace"].value() and form["name"].value():
        existing = Adapter.objects.filter(namespace__name=form["namespace"].value(), name=form["name"].value()).first()
        if existing is not None and not actor.can_read_adapter(existing):
            existing = None
    return render(request, "web/upload.html", {"form": form, "existing": existing}, status=status)


def _incoming(sent: UploadedFile) -> push.IncomingFile:
    """A file from request.FILES as the push takes it (Django gives those a name, a file and a size)."""
    assert sent.name is not None and sent.file is not None and sent.size is not None
    return push.IncomingFile(path=sent.name, stream=sent.file, size=sent.size)


# --- Compose ---------------------------------------------------------------------------------------


def _compose_form(request: AuthenticatedHttpRequest, data: Any = None) -> forms.ComposeForm:
    services.ensure_user_namespace(request.user)
    form = forms.ComposeForm(data, namespaces=forms.writable_namespaces(request.user), initial=form_initial())
    for name, placeholder in form_placeholders().items():
        form.fields[name].widget.attrs["placeholder"] = placeholder
    return form


def _compose_choices(actor: Actor, base_model: str) -> dict[str, Any]:
    """The base models one can compose adapters of, and the chosen one's adapters (the inputs the
    page offers; the search looks among them too)."""
    adapters = queries.composable_adapters(actor, base_model) if base_model else []
    latest = queries.latest_versions([a.pk for a in adapters])
    now = timezone.now()
    base_models = queries.composable_base_models(actor)
    return {
        "base_model": base_model,
        "base_models": base_models,
        "base_model_names": {name for name, _ in base_models},
        "choices": [Card(a, latest.get(a.pk), None, now) for a in adapters],
        "choices_limit": queries.COMPOSE_CHOICES_LIMIT,
        "search_url": (
            reverse("web:compose-search-base", kwargs={"base_model": base_model})
            if base_model
            else reverse("web:compose-search")
        ),
    }


@pages
@signin_required
def compose(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The compose form; POST submits the job and goes to its page.

    `base_model` (a GET parameter, kept by the form's POSTs) narrows the inputs the page offers to
    that base model's adapters; the page opens on the base model of an adapter added with `add`.
    With the header X-Partial: compose-choices, GET answers those inputs alone (the form's script);
    with X-Partial: compose-search-suites, the suites a search on that base model may score.
    """
    actor = actor_of(request)
    check = None
    status = 200
    base_model = (request.POST if request.method == "POST" else request.GET).get("base_model", "").strip()
    if request.headers.get("X-Partial") == "compose-choices":
        response = render(request, "web/partials/compose_choices.html", _compose_choices(actor, base_model))
        patch_vary_headers(response, ["X-Partial"])
        return response
    if request.headers.get("X-Partial") == "compose-search-suites":
        response = render(
            request,
            "web/partials/compose_search_suites.html",
            {"search_suites": search_suites(actor, base_model), "base_model": base_model, "chosen": []},
        )
        patch_vary_headers(response, ["X-Partial"])
        return response
    if request.method == "POST":
        form = _compose_form(request, request.POST)
        if form.is_valid():
            if request.POST.get("action") == "check":
                check = check_composition(actor, form.to_request())
            else:
                try:
                    result = submit_composition(actor=actor, request=form.to_request())
                except RegistryError as exc:
                    if form.searches:  # a search's refusal goes on the field it is about
                        form.add_registry_error(exc)
                    else:
                        check = check_composition(actor, form.to_request())
                        if not check.problems:
                            check.problems.append(exc.message)
                    status = status_of(exc)
                else:
                    if not result.created:
                        messages.info(
                            request,
                            "This exact recipe was already submitted; here is its job (tick “compose again” to force a new run).",
                        )
                    return redirect("web:job", job_id=result.job.pk)
        else:
            status = 400
        rows = form.rows
    else:
        form = _compose_form(request)
        rows = [{"adapter": ref, "version": "", "weight": "1"} for ref in request.GET.getlist("add") if ref]
    base_model = base_model or queries.base_model_of(actor, [row["adapter"] for row in rows])
    while len(rows) < 2:
        rows.append({"adapter": "", "version": "", "weight": "1"})
    response = render(
        request,
        "web/compose.html",
        {
            "form": form,
            "rows": rows,
            "check": check,
            "methods": method_choices(),
            "search_suites": search_suites(actor, base_model),
            "chosen": form["suites"].value() or [],
            **_compose_choices(actor, base_model),
        },
        status=status,
    )
    patch_vary_headers(response, ["X-Partial"])
    return response


@pages
@signin_required
@require_POST
def compose_check(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The check as an HTML fragment, for the form's live feedback."""
    form = _compose_form(request, request.POST)
    check = check_composition(actor_of(request), form.to_request()) if form.is_valid() else None
    return render(request, "web/partials/compose_check.html", {"check": check, "form": form})


@pages
@signin_required
@require_GET
def compose_search(request: HttpRequest, base_model: str = "") -> HttpResponse:
    """Composable (LoRA-family) adapters the user can see that match `q` (of `base_model` when the
    path names one), as an HTML fragment."""
    q = request.GET.get("q", "").strip()
    query = AdapterQuery(q=q, methods=tuple(LORA_FAMILY), base_model=base_model)
    adapters = list(search_adapters(actor_of(request), query)[:8]) if q else []
    latest = queries.latest_versions([a.pk for a in adapters])
    results = [Card(a, latest.get(a.pk), None, timezone.now()) for a in adapters]
    return render(request, "web/partials/compose_search.html", {"results": results, "q": q})


@pages
@signin_required
@require_GET
def job_page(request: HttpRequest, job_id: str) -> HttpResponse:
    """A job, its recipe, and the eval gate's verdict on the version it published (per suite)."""
    actor = actor_of(request)
    job = visible_job(actor, str(job_id))
    result = job.result_version
    if result is not None and not actor.can_read_adapter(result.adapter):
        result = None  # its creator, no longer a member of the private target's namespace
    recipe = queries.visible_recipe(actor, job.recipe)
    return render(
        request,
        "web/job.html",
        {
            "job": job,
            "recipe": recipe,
            "search": search_progress(job, recipe),
            "result": result,
            "result_url": f"{adapter_url(result.adapter)}?version={result.number}" if result else "",
            "verdict": verdict(result.validation, result.validation_reasons) if result else None,
            "verdict_reasons": _reasons(result) if result else [],
            "validation_fraction": f"{settings.VALIDATION_FRACTION:.0%}",
            "took": (job.finished_at - job.started_at).total_seconds() if job.finished_at and job.started_at else None,
            "active": job.status in (JobStatus.QUEUED, JobStatus.RUNNING),
        },
    )


@pages
@signin_required
@require_GET
def jobs(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The user's jobs, newest first, each with its status and its result's verdict."""
    mine = CompositionJob.objects.filter(created_by=request.user).select_related("result_version__adapter__namespace")[
        :50
    ]
    actor = actor_of(request)
    rows = []
    for job in mine:
        result = job.result_version
        if result is not None and not actor.can_read_adapter(result.adapter):
            result = None  # a private target whose namespace the user has left
        rows.append(
            {
                "job": job,
                "result": result,
                "verdict": verdict(result.validation, result.validation_reasons) if result else None,
            }
        )
    return render(request, "web/jobs.html", {"rows": rows})


# --- Accounts and tokens ------------------------------------------------------------------------------


class LoginView(auth_views.LoginView):
    template_name = "web/accounts/login.html"
    redirect_authenticated_user = True
    next_page = "web:catalog"


class LogoutView(auth_views.LogoutView):
    next_page = "web:catalog"


def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("web:catalog")
    form = forms.SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        services.ensure_user_namespace(user)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.get_username()}! Your namespace is /{user.get_username()}/.")
        return redirect("web:catalog")
    return render(request, "web/accounts/signup.html", {"form": form}, status=400 if form.errors else 200)


NEW_TOKEN_KEY = "web:new-token"


@pages
@signin_required
def tokens(request: AuthenticatedHttpRequest) -> HttpResponse:
    """List, create (the secret is shown once, right after) and revoke API tokens."""
    form = forms.TokenForm(request.POST or None, user=request.user)
    if request.method == "POST":
        if form.is_valid():
            try:
                issued = services.issue_token(
                    user=request.user,
                    name=form.cleaned_data["name"],
                    scope=form.cleaned_data["scope"],
                    namespace=form.cleaned_data["namespace"] or None,
                    expires_at=form.expires_at(),
                )
            except RegistryError as exc:
                form.add_error(None, exc.message)
            else:
                # Shown on the next page load only: a refresh or the back button never shows it again.
                request.session[NEW_TOKEN_KEY] = {"id": issued.token.pk, "secret": issued.secret}
                return redirect("web:tokens")
    new = request.session.pop(NEW_TOKEN_KEY, None)
    mine = request.user.api_tokens.select_related("namespace").all()
    return render(
        request, "web/tokens.html", {"form": form, "tokens": mine, "new": new}, status=400 if form.errors else 200
    )


@pages
@signin_required
@require_POST
def token_revoke(request: AuthenticatedHttpRequest, token_id: int) -> HttpResponse:
    services.revoke_token(user=request.user, token_id=token_id)
    messages.success(request, "Token revoked: it no longer works.")
    return redirect("web:tokens")

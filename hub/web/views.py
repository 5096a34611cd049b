"""The web catalog's pages: parse the request, call the registry, render a template.

Every read goes through `registry.access` / `registry.selectors`, so private adapters stay
invisible exactly as in the API; every write calls a `registry` service with the session's Actor.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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
from django.views.decorators.http import require_GET, require_POST

import composer
from hub.web import forms, queries, svg
from hub.web.compose import check_composition
from hub.web.display import Card, adapter_url, ago, make_cards
from hub.web.modelcard import render_card
from registry import push, search, services
from registry.access import Actor, access_adapter, access_base_model, access_namespace, visible_adapters
from registry.api.errors import status_of
from registry.api.pagination import CountedPaginator
from registry.compositions import submit_composition, version_lineage, visible_job
from registry.exceptions import NotAuthenticated, NotFound, RegistryError
from registry.methods import method_details
from registry.models import (
    LORA_FAMILY,
    Adapter,
    AdapterVersion,
    CompositionJob,
    EvalSuite,
    JobStatus,
    Namespace,
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
        href=f"{adapter_url(adapter)}?version={version.number}",
        weight=weight,
        negated=negated,
        yanked=version.yanked,
        note=note,
    )


def _charts(adapter: Adapter) -> list[dict[str, Any]]:
    """One chart per metric (suites sharing a metric share a scale), a polyline per suite."""
    by_metric: dict[tuple[str, bool | None], list[svg.Series]] = {}
    for (suite, metric, higher), points in queries.score_history(adapter).items():
        by_metric.setdefault((metric, higher), []).append(svg.Series(suite, points))
    return [
        {"metric": metric, "svg": svg.score_chart(series, metric=metric, higher_is_better=higher)}
        for (metric, higher), series in sorted(by_metric.items(), key=lambda item: item[0][0])
    ]


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


@pages
@require_GET
def adapter_page(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    actor = actor_of(request)
    adapter = access_adapter(actor, namespace, name)
    versions = list(list_versions(adapter, include_yanked=True))
    version = _pick_version(adapter, versions, request.GET.get("version", "").strip())
    context: dict[str, Any] = {
        "adapter": adapter,
        "tags": [t.name for t in adapter.tags.all()],
        "versions": versions,
        "version": version,
        "card_html": render_card(adapter.card),
        "updated_ago": ago(adapter.updated_at, timezone.now()),
        "can_write": actor.can_write(adapter.namespace),
        "charts": _charts(adapter),
        "is_lora": adapter.method in LORA_FAMILY,
    }
    if version is not None:
        lineage = version_lineage(actor, version)
        job = version.composition_jobs.order_by("created_at").first()
        context.update(
            files=[
                {
                    "file": f,
                    "url": reverse(
                        "api:version-file",
                        kwargs={"namespace": namespace, "name": name, "ref": str(version.number), "path": f.path},
                    ),
                }
                for f in version.files.all()
            ],
            scores=version_scores(version),
            method_details=method_details(version.config),
            snippets=_snippets(request, adapter, version),
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
            recipe=job.recipe if job is not None and lineage.parents else None,
            validation_reasons=_reasons(version),
            show_validation=version.validation != Validation.NONE,
        )
    return render(request, "web/adapter.html", context)


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
        },
    )


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
    boards = [{"suite": suite, "rows": leaderboard(actor, suite, limit=10)} for suite in suites_of(base)]
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
    return forms.ComposeForm(data, namespaces=forms.writable_namespaces(request.user))


@pages
@signin_required
def compose(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The compose form; POST submits the job and goes to its page."""
    actor = actor_of(request)
    check = None
    status = 200
    if request.method == "POST":
        form = _compose_form(request, request.POST)
        if form.is_valid():
            if request.POST.get("action") == "check":
                check = check_composition(actor, form.to_request())
            else:
                try:
                    result = submit_composition(actor=actor, request=form.to_request())
                except RegistryError as exc:
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
    while len(rows) < 2:
        rows.append({"adapter": "", "version": "", "weight": "1"})
    return render(
        request,
        "web/compose.html",
        {"form": form, "rows": rows, "check": check, "methods": composer.METHODS},
        status=status,
    )


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
def compose_search(request: HttpRequest) -> HttpResponse:
    """Composable (LoRA-family) adapters the user can see that match `q`, as an HTML fragment."""
    q = request.GET.get("q", "").strip()
    adapters = list(search_adapters(actor_of(request), AdapterQuery(q=q, methods=tuple(LORA_FAMILY)))[:8]) if q else []
    latest = queries.latest_versions([a.pk for a in adapters])
    results = [Card(a, latest.get(a.pk), None, timezone.now()) for a in adapters]
    return render(request, "web/partials/compose_search.html", {"results": results, "q": q})


@pages
@signin_required
@require_GET
def job_page(request: HttpRequest, job_id: str) -> HttpResponse:
    job = visible_job(actor_of(request), str(job_id))
    result = job.result_version
    return render(
        request,
        "web/job.html",
        {
            "job": job,
            "submitted_ago": ago(job.created_at, timezone.now()),
            "result_url": f"{adapter_url(result.adapter)}?version={result.number}" if result else "",
            "active": job.status in (JobStatus.QUEUED, JobStatus.RUNNING),
        },
    )


@pages
@signin_required
@require_GET
def jobs(request: AuthenticatedHttpRequest) -> HttpResponse:
    mine = CompositionJob.objects.filter(created_by=request.user).select_related("result_version__adapter__namespace")[
        :50
    ]
    return render(request, "web/jobs.html", {"jobs": mine})


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

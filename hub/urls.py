from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from hub.middleware import api_not_found


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


# The API docs load everything from this hub: Swagger UI and ReDoc come from drf-spectacular-sidecar,
# and this policy stops what their bundles would still fetch from elsewhere (ReDoc's "powered by" logo
# from its CDN), so the docs work the same offline and leak nothing about who reads them.
SAME_ORIGIN_ONLY = (
    "default-src 'self'; img-src 'self' data: blob:; font-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline' blob:; worker-src 'self' blob:; connect-src 'self'"
)


def same_origin_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response["Content-Security-Policy"] = SAME_ORIGIN_ONLY
        return response

    return wrapped


urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("registry.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", same_origin_only(SpectacularSwaggerView.as_view(url_name="schema")), name="api-docs"),
    path("api/redoc/", same_origin_only(SpectacularRedocView.as_view(url_name="schema")), name="api-redoc"),
    path("healthz", healthz, name="healthz"),
    path("", include("registry.hf.urls")),
    # Unknown API routes answer JSON, before the catalog's `/{ns}/{name}/` pages could take them.
    re_path(r"^api(/|$)", api_not_found, name="api-not-found"),
    path("", include("hub.web.urls")),
]

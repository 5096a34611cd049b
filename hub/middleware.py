"""JSON errors for machine clients outside the views that already answer JSON.

A request to `/api/...` (the REST API and the HF protocol) or to a file route of the HF protocol
never gets Django's HTML error pages: an exception no view handled answers JSON 503 for an
infrastructure failure (with its stable code) or 500 `internal_error`, with nothing internal in it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from registry.api.errors import status_of
from registry.infrastructure import unhandled

MACHINE_PATHS = re.compile(r"^/(api/|[^/]+/[^/]+/resolve/)")


def wants_json(request: HttpRequest) -> bool:
    return bool(MACHINE_PATHS.match(request.path))


def json_error(status: int, code: str, message: str) -> JsonResponse:
    response = JsonResponse({"code": code, "message": message, "error": message}, status=status)
    response["X-Error-Code"] = code
    return response


class JsonErrorsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not wants_json(request):
            return None
        from django.core.exceptions import PermissionDenied, SuspiciousOperation
        from django.http import Http404

        if isinstance(exception, Http404):
            return json_error(404, "not_found", "no such route or object")
        if isinstance(exception, SuspiciousOperation):
            return json_error(400, "malformed_request", "the request was refused as malformed")
        if isinstance(exception, PermissionDenied):
            return json_error(403, "forbidden", "forbidden")
        answer = unhandled(exception, request.path)
        return json_error(status_of(answer), answer.code, answer.message)


@csrf_exempt  # machine clients send no CSRF token; without this a POST would get an HTML 403
def api_not_found(request: HttpRequest, *args: object, **kwargs: object) -> JsonResponse:
    """Any `/api/...` path no route claims: a JSON 404, not the catalog's HTML page."""
    return json_error(404, "not_found", f"no API route {request.path}")

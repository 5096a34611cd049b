"""One exception handler: every error is JSON `{"code", "message"}` with the right status."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFilesSent
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

from adaptercheck import AdapterValidationError, Kind
from registry.exceptions import (
    AccessDenied,
    InternalError,
    InvalidContent,
    InvalidRequest,
    NotAuthenticated,
    NotFound,
    RateLimited,
    RegistryError,
    StateConflict,
    TooLarge,
)
from registry.infrastructure import ServiceDown, unhandled

# The one place domain errors become HTTP statuses (the HF layer and the web pages use it too).
HTTP_STATUS: dict[type[RegistryError], int] = {
    InvalidRequest: 400,
    NotAuthenticated: 401,
    AccessDenied: 403,
    NotFound: 404,
    StateConflict: 409,
    TooLarge: 413,
    InvalidContent: 422,
    RateLimited: 429,
    InternalError: 500,
    ServiceDown: 503,
}
# What an adapter check's refusal kind means over HTTP.
KIND_STATUS: dict[Kind, int] = {"request": 400, "conflict": 409, "size": 413, "content": 422}


def status_of(exc: RegistryError | AdapterValidationError) -> int:
    if isinstance(exc, AdapterValidationError):
        return KIND_STATUS[exc.kind]
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 400


_DRF_CODES: dict[type[exceptions.APIException], str] = {
    exceptions.ParseError: "malformed_request",
    exceptions.AuthenticationFailed: "bad_token",
    exceptions.NotAuthenticated: "auth_required",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ValidationError: "invalid",
}


def error_response(status_code: int, code: str, message: str, **extra: Any) -> Response:
    return Response({"code": code, "message": message, **extra}, status=status_code)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, RegistryError):
        response = error_response(status_of(exc), exc.code, exc.message, **{k: v for k, v in exc.extra.items() if v})
        if isinstance(exc, RateLimited) and exc.retry_after:
            response["Retry-After"] = str(exc.retry_after)
        return response
    if isinstance(exc, AdapterValidationError):
        return error_response(status_of(exc), exc.code, exc.message, **({"path": exc.path} if exc.path else {}))
    if isinstance(exc, RequestDataTooBig):
        return error_response(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "too_large", str(exc))
    if isinstance(exc, TooManyFilesSent):
        return error_response(status.HTTP_400_BAD_REQUEST, "too_many_files", str(exc))
    if isinstance(exc, Http404):
        return error_response(status.HTTP_404_NOT_FOUND, "not_found", str(exc) or "not found")
    if isinstance(exc, DjangoPermissionDenied):
        return error_response(status.HTTP_403_FORBIDDEN, "forbidden", str(exc) or "forbidden")
    if isinstance(exc, exceptions.APIException):
        code = next((c for kind, c in _DRF_CODES.items() if isinstance(exc, kind)), "error")
        if isinstance(exc, exceptions.ValidationError):
            return error_response(exc.status_code, code, _first_message(exc.detail), errors=exc.detail)
        response = error_response(exc.status_code, code, str(exc.detail))
        # DRF's view put the challenge on the exception (and chose 401 over 403) before calling us.
        if auth_header := getattr(exc, "auth_header", None):
            response["WWW-Authenticate"] = auth_header
        if wait := getattr(exc, "wait", None):
            response["Retry-After"] = str(int(wait))
        return response
    # An outage, or a bug: JSON too, with nothing internal in it (the log has the traceback).
    answer = unhandled(exc, type(context.get("view")).__name__)
    return error_response(status_of(answer), answer.code, answer.message)


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        for field, value in detail.items():
            return f"{field}: {_first_message(value)}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)

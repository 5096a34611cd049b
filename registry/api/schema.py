"""The OpenAPI schema's conventions, declared once: the bearer token scheme, the error envelope on
every operation, and the paginated envelope of list views.

drf-spectacular reads the views' own declarations (serializers, `extend_schema`); what holds for
every operation lives here rather than repeated on forty views. tests/registry/test_openapi.py
keeps the schema free of warnings, and the schemathesis run checks the hub answers as it says.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# What each error status means on this API; every error body is {"code", "message"}
# (registry/api/errors.py, the one place errors become statuses).
ERROR_MEANINGS: dict[int, str] = {
    400: "The request is malformed or a parameter is invalid (`code` says which rule it broke).",
    401: "No valid credentials: the token is unknown, revoked or expired, or the operation needs one.",
    403: "Authenticated, but the token's scope or the user's role does not allow this.",
    404: "Not found, or not visible to you (private adapters are invisible to non-members).",
    409: "Conflicts with the current state (a name taken, a version yanked, an upload already completed).",
    413: "The upload exceeds a size limit.",
    422: "The content is refused: not a valid adapter, or it does not fit its base model.",
    429: "Too many requests or too many active jobs; `Retry-After` says when to try again.",
    503: "A service the hub needs (database, blob store, broker) is unavailable; nothing was changed.",
}
READ_ERRORS = (400, 401, 403, 404, 429, 503)
WRITE_ERRORS = (*READ_ERRORS, 409, 413, 422)


class ErrorSerializer(serializers.Serializer[Any]):
    """Every error the API answers, whatever its status."""

    code = serializers.CharField(help_text="A stable, machine-readable name of what happened, e.g. `bad_token`.")
    message = serializers.CharField(help_text="What happened, for people.")
    # A declared field (SerializerMetaclass pops it off the class), not Serializer.errors, which the stubs see.
    errors = serializers.DictField(  # type: ignore[assignment]
        required=False, help_text="With `code: invalid`: the messages of each invalid field."
    )
    path = serializers.CharField(required=False, help_text="The file at fault, for a refused adapter file.")


class HubAutoSchema(AutoSchema):
    """drf-spectacular's schema, plus the error responses every operation can give."""

    def _get_paginator(self) -> Any:
        # Only GET lists are paginated: a POST that answers with a list (the evaluations it queued)
        # returns it whole.
        return super()._get_paginator() if self.method == "GET" else None

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        for status in WRITE_ERRORS if self.method in WRITE_METHODS else READ_ERRORS:
            if str(status) not in responses:
                response = self._get_response_for_code(ErrorSerializer, str(status), direction=direction)
                responses[str(status)] = {**response, "description": ERROR_MEANINGS[status]}
        return responses


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """`Authorization: Bearer ahub_…`, the hub's API tokens (Swagger's Authorize button takes one)."""

    target_class = "registry.api.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "ahub_<secret>",
            "description": "An API token from /settings/tokens or `ahub login`.",
        }

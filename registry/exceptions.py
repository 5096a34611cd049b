"""Domain errors: each carries a stable `code`, a human message and its HTTP status.

The API's exception handler turns them into `{"code": ..., "message": ...}` responses.
"""

from __future__ import annotations

from typing import Any


class RegistryError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.extra = extra


class BadRequest(RegistryError):
    status = 400
    code = "bad_request"


class Unauthorized(RegistryError):
    status = 401
    code = "unauthorized"


class Forbidden(RegistryError):
    status = 403
    code = "forbidden"


class NotFound(RegistryError):
    status = 404
    code = "not_found"


class Conflict(RegistryError):
    status = 409
    code = "conflict"


class PayloadTooLarge(RegistryError):
    status = 413
    code = "too_large"


class Unprocessable(RegistryError):
    status = 422
    code = "invalid_content"

"""Domain errors, named after what happened. Each carries a stable `code` (what clients key on)
and a sentence for people; none knows HTTP. The REST API's exception handler and the HF error
layer map them to statuses (registry/api/errors.py: HTTP_STATUS), the web pages to error pages.
"""

from __future__ import annotations

from typing import Any


class RegistryError(Exception):
    code = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.extra = extra


class InvalidRequest(RegistryError):
    """The request itself is malformed: a missing or unknown field, a bad name or reference."""

    code = "bad_request"


class NotAuthenticated(RegistryError):
    """No caller could be identified where one is needed: no token, a bad or expired one."""

    code = "unauthorized"


class AccessDenied(RegistryError):
    """The caller is known but may not do this (scope, role, namespace)."""

    code = "forbidden"


class NotFound(RegistryError):
    """What the request names does not exist, or the caller may not know that it does."""

    code = "not_found"


class StateConflict(RegistryError):
    """The request contradicts what the hub holds now: a taken name or label, a job in progress."""

    code = "conflict"


class TooLarge(RegistryError):
    """A size or count limit is exceeded."""

    code = "too_large"


class InvalidContent(RegistryError):
    """The request is well formed but what it carries is refused: adapter files, an expression, a suite."""

    code = "invalid_content"


class RateLimited(RegistryError):
    """The caller has sent too much, or has too much queued; `retry_after` seconds, when known."""

    code = "throttled"

    def __init__(self, message: str, *, code: str | None = None, retry_after: int | None = None, **extra: Any) -> None:
        super().__init__(message, code=code, **extra)
        self.retry_after = retry_after


class InternalError(RegistryError):
    """A bug: the hub failed to answer (the log has the traceback, the answer shows nothing internal)."""

    code = "internal_error"

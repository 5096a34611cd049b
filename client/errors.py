"""Errors the client raises: the hub's refusals keep its stable `code` and human `message`."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import requests

    from client.types import Job


class HubError(Exception):
    """A refusal or failure. `code` is stable (the hub's error code), `message` is for humans,
    `status` is the HTTP status (None for errors found locally)."""

    def __init__(
        self, message: str, *, code: str = "error", status: int | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.details = details or {}

    def __str__(self) -> str:
        return self.message

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "status": self.status, **self.details}


class AuthenticationError(HubError):
    """401: no token, or a token that is unknown, revoked or expired."""


class PermissionDenied(HubError):
    """403: the token or user may not do this (a read-only token pushing, another namespace...)."""


class NotFound(HubError):
    """404: absent, or private and not yours."""


class Conflict(HubError):
    """409: a label taken, a base model change, an upload still incomplete..."""


class ValidationError(HubError):
    """The adapter or request is refused (400, 413, 422), by the hub or by the same checks run
    locally before anything is sent (then status is None). `path` names the file at fault."""

    @property
    def path(self) -> str | None:
        path = self.details.get("path")
        return str(path) if path else None


class ChecksumMismatch(HubError):
    """Downloaded bytes do not hash to the sha256 the hub lists for the file."""


class JobFailed(HubError):
    """A composition (or evaluation) job ended in failure; `job` holds its last state."""

    def __init__(self, job: Job) -> None:
        error = job.error or {}
        super().__init__(
            f"job {job.id} failed: {error.get('message', 'no reason given')}", code=error.get("code", "job_failed")
        )
        self.job = job


class ConnectionFailed(HubError):
    """The hub (or the storage it redirects to) could not be reached."""


class TimedOut(HubError):
    """Waiting (for a job, evaluations or a verdict) took longer than the timeout given; the work
    itself goes on on the hub. `code` is "timeout"."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="timeout")


_BY_STATUS: dict[int, type[HubError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    410: Conflict,
    413: ValidationError,
    422: ValidationError,
}


_QUERY = re.compile(r"\?[^\s'\")>]*")


def scrubbed(detail: object) -> str:
    """An error's text without URL query strings: presigned URLs carry credentials (the
    signature, the key id) that must not end up in a terminal or a CI log."""
    return _QUERY.sub("?…", str(detail))


def error_from_response(response: requests.Response, *, what: str = "the hub") -> HubError:
    """The error a non-2xx answer stands for; hub answers are JSON `{"code", "message", ...}`."""
    status = response.status_code
    kind = _BY_STATUS.get(status, HubError)
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError):
        body = None
    if isinstance(body, dict) and "message" in body:
        details = {k: v for k, v in body.items() if k not in ("code", "message")}
        return kind(str(body["message"]), code=str(body.get("code", "error")), status=status, details=details)
    text = scrubbed(" ".join((response.text or "").split())[:300])
    reason = response.reason or ""
    return kind(f"{what} answered {status} {reason}: {text}".rstrip(": "), code=f"http_{status}", status=status)

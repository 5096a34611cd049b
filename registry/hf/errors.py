"""Errors in the shape `huggingface_hub.utils.hf_raise_for_status` maps to its exceptions.

The client keys on the `X-Error-Code` header, not on the status: over plain http a 404 without it
is a generic HfHubHTTPError, so `repo_exists`/`file_exists` would raise instead of returning
False. Every not-found answer therefore names its code.
"""

from __future__ import annotations

from typing import Any

from adaptercheck import AdapterValidationError
from registry.api.errors import status_of
from registry.exceptions import RegistryError

# The message huggingface_hub recognises as a bad token (it then skips its "repo not found" guess).
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"

# Registry error codes that mean "this repo / revision / file does not exist" to an HF client.
_NOT_FOUND_CODES = {
    "adapter_not_found": "RepoNotFound",
    "version_not_found": "RevisionNotFound",
    "file_not_found": "EntryNotFound",
}


class HfError(Exception):
    """An answer to send as an error: status, optional X-Error-Code, a message and extra headers."""

    status = 400
    error_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_code: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if error_code is not None:
            self.error_code = error_code
        self.headers = dict(headers or {})
        self.extra = {k: v for k, v in extra.items() if v is not None}


class RepoNotFound(HfError):
    status = 404
    error_code = "RepoNotFound"


class RevisionNotFound(HfError):
    status = 404
    error_code = "RevisionNotFound"


class EntryNotFound(HfError):
    status = 404
    error_code = "EntryNotFound"

    def __init__(self, message: str, *, commit_id: str | None = None) -> None:
        # With the commit the client caches the file's absence (.no_exist/<commit>/<path>), so
        # transformers' probes for optional files are asked once per commit, not on every load.
        super().__init__(message, headers={"X-Repo-Commit": commit_id} if commit_id else None)


def from_registry_error(exc: RegistryError | AdapterValidationError) -> HfError:
    """The HF answer for a domain error, keeping its status, code, message and file path."""
    if isinstance(exc, AdapterValidationError):
        return HfError(exc.message, status=status_of(exc), error_code=exc.code, code=exc.code, path=exc.path)
    return HfError(
        exc.message,
        status=status_of(exc),
        # The client maps only the Hub's own codes to exceptions; any other code still tells a
        # script (and a person reading the headers) what happened.
        error_code=_NOT_FOUND_CODES.get(exc.code, exc.code),
        code=exc.code,
        path=exc.extra.get("path"),
    )

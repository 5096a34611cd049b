"""Python client and CLI (`ahub`) of Adapter Hub: push, pull, search, compose and evaluate.

    from client import HubClient

    hub = HubClient()  # HUB_URL / HUB_TOKEN, or what `ahub login` saved
    version = hub.push("out/my-lora", "alice/my-lora", label="v1")
    folder = hub.pull("alice/my-lora:v1").path  # PeftModel.from_pretrained(base, folder)

It talks HTTP only (requests); nothing here imports Django or torch.
"""

from __future__ import annotations

from client.api import HubClient
from client.errors import (
    AuthenticationError,
    ChecksumMismatch,
    Conflict,
    HubError,
    JobFailed,
    NotFound,
    PermissionDenied,
    TimedOut,
    ValidationError,
)
from client.types import (
    AdapterInfo,
    AdapterSummary,
    CreatedToken,
    Evaluation,
    FileEntry,
    Job,
    Member,
    Organization,
    PulledAdapter,
    PushResult,
    Score,
    ScoreReport,
    Token,
    User,
    Version,
)
from client.version import VERSION as __version__

__all__ = [
    "AdapterInfo",
    "AdapterSummary",
    "AuthenticationError",
    "ChecksumMismatch",
    "Conflict",
    "CreatedToken",
    "Evaluation",
    "FileEntry",
    "HubClient",
    "HubError",
    "Job",
    "JobFailed",
    "Member",
    "NotFound",
    "Organization",
    "PermissionDenied",
    "PulledAdapter",
    "PushResult",
    "Score",
    "ScoreReport",
    "TimedOut",
    "Token",
    "User",
    "ValidationError",
    "Version",
    "__version__",
]

"""The registry's models, one module per area, all importable from `registry.models`."""

from __future__ import annotations

from registry.models.core import (
    LORA_FAMILY,
    SCOPE_RANK,
    SHA256_PATTERN,
    SLUG_PATTERN,
    WRITE_ROLES,
    Adapter,
    AdapterVersion,
    ApiToken,
    BaseModel,
    EvalResult,
    ImmutableVersionError,
    Membership,
    Method,
    Namespace,
    Role,
    Tag,
    TokenScope,
    VersionFile,
    Visibility,
    slug_validator,
)

__all__ = [
    "LORA_FAMILY",
    "SCOPE_RANK",
    "SHA256_PATTERN",
    "SLUG_PATTERN",
    "WRITE_ROLES",
    "Adapter",
    "AdapterVersion",
    "ApiToken",
    "BaseModel",
    "EvalResult",
    "ImmutableVersionError",
    "Membership",
    "Method",
    "Namespace",
    "Role",
    "Tag",
    "TokenScope",
    "VersionFile",
    "Visibility",
    "slug_validator",
]

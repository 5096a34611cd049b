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
    ImmutableVersionError,
    Membership,
    Method,
    Namespace,
    Role,
    Tag,
    TokenScope,
    Validation,
    VersionFile,
    Visibility,
    slug_validator,
)
from registry.models.evals import SUITE_METRICS, EvalResult, EvalSuite, EvaluationRequest, SuiteKind
from registry.models.compositions import (
    ACTIVE_STATUSES,
    CompositionJob,
    JobStatus,
    LineageRole,
    VersionParent,
)
from registry.models import uploads as uploads  # noqa: F401  (registers its models)

__all__ = [
    "ACTIVE_STATUSES",
    "SUITE_METRICS",
    "EvalSuite",
    "EvaluationRequest",
    "SuiteKind",
    "Validation",
    "CompositionJob",
    "JobStatus",
    "LineageRole",
    "VersionParent",
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

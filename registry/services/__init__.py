"""Use cases of the registry, one module per subject; views call these and nothing else, tests call
them directly. Pushing is registry/push.py, compositions and evaluations their own modules.

    namespaces  names, personal namespaces, organisations, members
    tokens      API tokens
    base_models base model records (their files: registry/base_models.py)
    adapters    adapters and their metadata
    versions    resolving, yanking, files, download counts
    staging     copying a version's files out of the store for a worker
"""

from __future__ import annotations

from registry.services.adapters import (
    MAX_DATASETS,
    MAX_TAGS,
    AdapterMetadata,
    apply_metadata,
    base_model_named,
    check_slug,
    create_adapter,
    update_adapter,
)
from registry.services.base_models import register_base_model
from registry.services.namespaces import (
    check_namespace_name,
    create_organization,
    ensure_user_namespace,
    set_membership,
)
from registry.services.staging import ADAPTER_FILES, Staged, copy_version_files, scratch_folder, stage_versions
from registry.services.tokens import IssuedToken, authenticate_token, issue_token, revoke_token
from registry.services.versions import counts_as_download, record_download, resolve_version, version_file, yank_version

__all__ = [
    "ADAPTER_FILES",
    "AdapterMetadata",
    "IssuedToken",
    "MAX_DATASETS",
    "MAX_TAGS",
    "apply_metadata",
    "authenticate_token",
    "base_model_named",
    "check_namespace_name",
    "check_slug",
    "copy_version_files",
    "scratch_folder",
    "stage_versions",
    "Staged",
    "counts_as_download",
    "create_adapter",
    "create_organization",
    "ensure_user_namespace",
    "issue_token",
    "record_download",
    "register_base_model",
    "resolve_version",
    "revoke_token",
    "set_membership",
    "update_adapter",
    "version_file",
    "yank_version",
]

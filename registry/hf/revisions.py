"""HF revisions onto immutable versions: `main`, a version number, a label, or a commit id."""

from __future__ import annotations

import re

from registry.hf.errors import RevisionNotFound
from registry.models import Adapter, AdapterVersion, VersionFile

# The moving refs. `latest` is the REST API's name for the same thing.
BRANCHES = frozenset({"main", "latest"})
# A version's commit id is digest[:40]; the full 64-hex digest is accepted too.
_COMMIT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# Version numbers are PostgreSQL integers; a longer run of digits cannot name one.
_MAX_NUMBER_DIGITS = 9


def head_version(adapter: Adapter) -> AdapterVersion | None:
    """What `main` points at: the newest version that is not yanked."""
    return adapter.versions.filter(yanked=False).order_by("-number").first()


def find_version(adapter: Adapter, revision: str | None) -> AdapterVersion | None:
    """The version a revision names; None only for a branch of a repo with no usable version yet.

    Yanked versions are not `main`, but their number, label and commit id still reach them, as
    pinned users expect. Raises RevisionNotFound for anything else.
    """
    rev = revision or "main"
    if rev in BRANCHES:
        return head_version(adapter)
    versions = adapter.versions.all()
    found: AdapterVersion | None
    if _COMMIT_ID.fullmatch(rev):
        found = versions.filter(digest__startswith=rev).order_by("number").first()
    elif rev.isdigit() and len(rev) <= _MAX_NUMBER_DIGITS:
        found = versions.filter(number=int(rev)).first()
    else:
        found = versions.filter(label=rev).first()
    if found is None:
        raise RevisionNotFound(
            f"{adapter.full_name} has no revision {rev!r}: use main, a version number, a label or a 40-hex commit id"
        )
    return found


def file_history(adapter: Adapter, version: AdapterVersion) -> tuple[list[AdapterVersion], dict[int, dict[str, str]]]:
    """The versions up to `version`, oldest first, and each one's {path: sha256}, in two queries."""
    history = list(adapter.versions.filter(number__lte=version.number).order_by("number"))
    files: dict[int, dict[str, str]] = {}
    for row in VersionFile.objects.filter(version__in=history).values("version_id", "path", "sha256"):
        files.setdefault(row["version_id"], {})[row["path"]] = row["sha256"]
    return history, files


def is_branch(revision: str | None) -> bool:
    return (revision or "main") in BRANCHES

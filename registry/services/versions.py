"""Versions: resolving a reference, yanking, a version's files, and counting downloads."""

from __future__ import annotations

from django.db.models import F
from django.utils import timezone

from registry.access import Actor, require_write
from registry.exceptions import InvalidRequest, NotFound
from registry.models import (
    Adapter,
    AdapterVersion,
    VersionFile,
)


def resolve_version(adapter: Adapter, ref: str | int | None) -> AdapterVersion:
    """A version by number or label; None or 'latest' means the newest non-yanked one."""
    versions = adapter.versions.all()
    if ref is None or ref == "latest":
        version = versions.filter(yanked=False).order_by("-number").first()
        if version is None:
            raise NotFound(f"{adapter.full_name} has no published version", code="version_not_found")
        return version
    text = str(ref)
    version = versions.filter(number=int(text)).first() if text.isdigit() else versions.filter(label=text).first()
    if version is None:
        raise NotFound(f"{adapter.full_name} has no version {text}", code="version_not_found")
    return version


def yank_version(*, actor: Actor, version: AdapterVersion, reason: str, yanked: bool = True) -> AdapterVersion:
    require_write(actor, version.adapter.namespace)
    if yanked and not reason.strip():
        raise InvalidRequest(
            "say why the version is yanked: users who pinned it will read the reason", code="missing_reason"
        )
    version.yanked = yanked
    version.yanked_reason = reason.strip() if yanked else ""
    version.yanked_at = timezone.now() if yanked else None
    version.save(update_fields=["yanked", "yanked_reason", "yanked_at"])
    return version


def version_file(version: AdapterVersion, path: str) -> VersionFile:
    found = version.files.filter(path=path).first()
    if found is None:
        raise NotFound(f"{version} has no file {path}", code="file_not_found")
    return found


def record_download(adapter: Adapter) -> None:
    # An UPDATE with F() is atomic in the database: concurrent downloads are all counted.
    Adapter.objects.filter(pk=adapter.pk).update(downloads=F("downloads") + 1)


def counts_as_download(path: str, range_start: int) -> bool:
    """One download per fetch of the weights, not per file or per resumed chunk."""
    return path.endswith(".safetensors") and range_start == 0

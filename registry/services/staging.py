"""Worker staging: copying a version's files out of the blob store for a composition or an evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from registry.blobs import get_blob_store
from registry.models import (
    AdapterVersion,
)

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def copy_version_files(version: AdapterVersion, folder: Path, paths: Sequence[str] | None = None) -> dict[str, str]:
    """Stream the version's files named in `paths` from the blob store into `folder`; by default the
    files an adapter loads from: ADAPTER_FILES, or every file of a hybrid (its parts are in subfolders).
    Returns their sha256 by path (workers load adapters from the copy)."""
    store = get_blob_store()
    copied: dict[str, str] = {}
    files = version.files.all()
    if paths is not None or not version.config.get("hybrid"):
        files = files.filter(path__in=ADAPTER_FILES if paths is None else paths)
    for f in files:
        target = folder / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            for chunk in store.read_range(f.sha256, 0, f.size):
                out.write(chunk)
        copied[f.path] = f.sha256
    return copied

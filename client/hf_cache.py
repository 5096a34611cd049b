"""huggingface_hub's cache layout, so that `ahub pull --hf-cache` fills the very cache that
huggingface_hub, transformers and PEFT read when HF_ENDPOINT points at this hub:

    <cache>/models--<ns>--<name>/
        blobs/<etag>                  a file's bytes, named by the ETag the hub answers for it
        snapshots/<commit>/<path>     relative symlinks to ../../blobs/<etag>
        refs/<revision>               the commit a revision names (no newline)
        trees/<commit>.json           the commit's file listing (read by huggingface_hub >= 2.4)
    <cache>/.locks/models--<ns>--<name>/<etag>.lock
    <cache>/CACHEDIR.TAG              tells backup tools to skip the cache (https://bford.info/cachedir/)

The names are what this hub's Hugging Face routes answer (registry/hf/downloads.py): a version's
revision is its commit id (`digest[:40]`, `X-Repo-Commit`), and every file's ETag, small files
included, is its sha256. huggingface_hub is not a dependency of the client, so the few rules
used here are written out, each beside the huggingface_hub code it follows.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from client.transfer import place
from client.types import FileEntry

COMMIT_ID = re.compile(r"[0-9a-f]{40}")
# huggingface_hub/_tree_cache.py: TREE_CACHE_FORMAT_VERSION
TREE_FORMAT_VERSION = 1
# The Cache Directory Tagging Specification's signature, which huggingface_hub writes too.
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag (a Hugging Face cache, filled by huggingface_hub and ahub).\n"
    "# For information about cache directory tags, see:\n"
    "#\thttps://bford.info/cachedir/\n"
)


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The cache huggingface_hub uses (its constants.py): HF_HUB_CACHE, else the older
    HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub, HF_HOME defaulting to $XDG_CACHE_HOME/huggingface,
    then ~/.cache/huggingface; `~` and $VARIABLES expanded."""

    def expanded(path: str | os.PathLike[str]) -> Path:
        return Path(os.path.expandvars(os.path.expanduser(os.fspath(path))))

    if override:
        return expanded(override)
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return expanded(explicit)
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    return expanded(home) / "hub"


class HfCacheRepo:
    """One model repo in a Hugging Face cache."""

    def __init__(self, cache: Path, repo_id: str) -> None:
        self.cache = cache
        # file_download.py: repo_folder_name(), "models" + the repo id's parts, joined by "--"
        self.folder_name = "--".join(["models", *repo_id.split("/")])
        self.root = cache / self.folder_name

    def blob(self, etag: str) -> Path:
        return self.root / "blobs" / etag

    def incomplete(self, etag: str) -> Path:
        """Where huggingface_hub keeps a download in progress: a resume of its partial works here."""
        return self.root / "blobs" / f"{etag}.incomplete"

    def lock(self, etag: str) -> Path:
        """huggingface_hub's lock of the same blob (a flock too), so the two never write it at once."""
        return self.cache / ".locks" / self.folder_name / f"{etag}.lock"

    def tag(self) -> None:
        """CACHEDIR.TAG at the cache's root, unless there is one (huggingface_hub's own is kept)."""
        tag = self.cache / "CACHEDIR.TAG"
        if not tag.exists():
            self.cache.mkdir(parents=True, exist_ok=True)
            _write_atomically(tag, CACHEDIR_TAG)

    def snapshot(self, commit: str) -> Path:
        return self.root / "snapshots" / commit

    def link(self, commit: str, path: PurePosixPath, blob: Path) -> Path:
        """snapshots/<commit>/<path> as a relative symlink to its blob (a copy where symlinks are
        refused, as huggingface_hub falls back); returns the snapshot's file."""
        pointer = self.snapshot(commit).joinpath(*path.parts)
        pointer.parent.mkdir(parents=True, exist_ok=True)
        target = os.path.relpath(blob, pointer.parent)
        if pointer.is_symlink() and os.readlink(pointer) == target:
            return pointer
        tmp = pointer.with_name(f".{pointer.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.symlink(target, tmp)
        except OSError:  # no symlinks on this filesystem (or Windows without the privilege)
            place(blob, pointer, link=False)
            return pointer
        try:
            os.replace(tmp, pointer)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return pointer

    def set_ref(self, name: str, commit: str) -> None:
        """refs/<name> holds the commit, with no newline: huggingface_hub reads the file whole."""
        ref = self.root / "refs" / name
        ref.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(ref, commit)

    def write_tree(self, commit: str, files: Iterable[FileEntry]) -> None:
        """trees/<commit>.json as huggingface_hub writes it from this hub's `/tree` (every file an LFS
        object whose oid is its sha256): snapshot_download then trusts the snapshot as complete
        offline and skips listing it online. A commit never changes, so an existing one is kept."""
        tree = self.root / "trees" / f"{commit}.json"
        if tree.is_file():
            return
        listing = {
            entry.path: {
                "size": entry.size,
                "blob_id": entry.sha256,
                "lfs_sha256": entry.sha256,
                "lfs_size": entry.size,
            }
            for entry in files
        }
        data = {"format_version": TREE_FORMAT_VERSION, "files": {path: listing[path] for path in sorted(listing)}}
        tree.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(tree, json.dumps(data, indent=1))


def ref_name(name: str) -> str | None:
    """A revision name usable as a file under refs/ (labels are the hub's to choose), else None."""
    parts = PurePosixPath(name).parts
    if not name or name.startswith("/") or any(part in ("", ".", "..") for part in parts):
        return None
    return name


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()

"""Where the client finds its hub, token and cache.

Order of precedence: arguments, then HUB_URL / HUB_TOKEN, then the file `ahub login` writes
($HUB_CONFIG, else $XDG_CONFIG_HOME/adapter-hub/config.json, else ~/.config/adapter-hub/config.json),
then HF_ENDPOINT / HF_TOKEN: a shell set up for huggingface_hub and PEFT against this hub works as it is.
The cache is $HUB_CACHE, else $XDG_CACHE_HOME/adapter-hub, else ~/.cache/adapter-hub.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"


def config_path() -> Path:
    explicit = os.environ.get("HUB_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "adapter-hub" / "config.json"


def load_config() -> dict[str, Any]:
    path = config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the hub configuration {path}: {exc}") from None
    return data if isinstance(data, dict) else {}


def save_config(**values: Any) -> Path:
    """Merge values into the configuration file (None removes a key); it is readable by its owner
    only, since it holds a token."""
    path = config_path()
    data = {**load_config(), **values}
    data = {k: v for k, v in data.items() if v is not None}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def resolve(url: str | None = None, token: str | None = None) -> tuple[str, str | None]:
    """The hub URL (without a trailing slash) and token to use."""
    saved: dict[str, Any] | None = None

    def from_file(key: str) -> Any:
        nonlocal saved
        if saved is None:
            saved = load_config()
        return saved.get(key)

    url = url or os.environ.get("HUB_URL") or from_file("url") or os.environ.get("HF_ENDPOINT") or DEFAULT_URL
    token = token or os.environ.get("HUB_TOKEN") or from_file("token") or os.environ.get("HF_TOKEN") or None
    return str(url).rstrip("/"), token


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    if override:
        return Path(override).expanduser()
    explicit = os.environ.get("HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "adapter-hub"

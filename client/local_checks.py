"""The hub's push checks, run on the user's machine before a byte is sent.

They are `adaptercheck` itself (the package the hub's push pipeline runs: torch-free and
Django-free, so importing it costs numpy only), plus the base-model resolution the pipeline makes
around it, with the same codes and messages.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import adaptercheck as validation
from client.errors import Conflict, ValidationError

CONFIG_NAME = validation.CONFIG_NAME
# The hub's base model of an empty repo (HF create_repo) until its first push names one.
PENDING_BASE_MODEL = "pending:first-commit"


@dataclass(frozen=True)
class ExistingAdapter:
    """What the hub says of the target adapter, when it exists: it fixes base model and method."""

    full_name: str
    base_model: str
    method: str


def _refusal(exc: validation.AdapterValidationError) -> ValidationError | Conflict:
    kind = Conflict if exc.kind == "conflict" else ValidationError
    return kind(exc.message, code=exc.code, details={"path": exc.path} if exc.path else None)


def check_adapter(
    files: Mapping[str, Path],
    *,
    existing: ExistingAdapter | None,
    base_model: str | None,
    method: str | None,
    manifest_of: Callable[[str], BaseModelLookup],
    manifests: Callable[[], Mapping[str, Mapping[str, Any]]],
) -> Any:
    """Validate the files (path in the version -> local file) exactly as the hub will.

    1. File names, sizes and the config's presence (adaptercheck.check_file_list), as the
       hub's push pipeline checks them (the hub's size limits are checked there).
    2. adaptercheck.validate_adapter, streaming every file (the NaN check reads all weights).
    3. The base model, resolved as the hub resolves it: the existing adapter's; else the one
       given, the model card's `base_model`, or the config's base_model_name_or_path. A local
       path is matched by shapes against the hub's base models (fetched through `manifests`), a
       name must be registered (fetched through `manifest_of`) unless the hub admits others.
    4. The adapter's shapes against that base model's manifest.
    Returns the ValidatedAdapter; raises ValidationError or Conflict with the hub's message.
    """
    try:
        validation.check_file_list([(path, local.stat().st_size) for path, local in files.items()])
    except validation.AdapterValidationError as exc:
        raise _refusal(exc) from None
    normalized = {validation.normalize_filename(raw): local for raw, local in files.items()}
    with contextlib.ExitStack() as stack:
        opened: dict[str, tuple[BinaryIO, int]] = {}
        for path, local in normalized.items():
            stream = stack.enter_context(open(local, "rb"))
            opened[path] = (stream, local.stat().st_size)
        try:
            validated = validation.validate_adapter(opened, method=method or (existing.method if existing else None))
        except validation.AdapterValidationError as exc:
            raise _refusal(exc) from None
    config_base = (validated.base_model or "").strip() or None
    card_base = card_base_model(normalized["README.md"]) if "README.md" in normalized else None
    try:
        name = _resolve_base(validated, existing, base_model, card_base, config_base, manifests)
        if name is not None:
            lookup = manifest_of(name)
            if lookup.manifest:
                validation.check_base_shapes(validated, lookup.manifest)
            elif not lookup.found and not lookup.unregistered_allowed:
                fitting = sorted(n for n, m in manifests().items() if m and validation.fits_base(validated, m))
                raise validation.AdapterValidationError(
                    "unknown_base_model",
                    f"base model {name!r} is not registered on this hub. {validation.how_to_choose_base(fitting)}",
                    candidates=fitting[:10],
                )
    except validation.AdapterValidationError as exc:
        raise _refusal(exc) from None
    return validated


@dataclass(frozen=True)
class BaseModelLookup:
    """What the hub says of a base model name: found (with its manifest, maybe empty), or not,
    and whether the hub admits unregistered base models."""

    found: bool
    manifest: Mapping[str, Any] | None = None
    unregistered_allowed: bool = False


def _resolve_base(
    validated: Any,
    existing: ExistingAdapter | None,
    explicit: str | None,
    card: str | None,
    config: str | None,
    manifests: Callable[[], Mapping[str, Mapping[str, Any]]],
) -> str | None:
    """The base model name the hub will file the push under (push.resolve_base_model's rules)."""
    kept = existing.base_model if existing is not None and existing.base_model != PENDING_BASE_MODEL else None
    chosen = str(
        validation.declared_base_model(
            existing=(existing.full_name, kept) if existing is not None and kept is not None else None,
            explicit=explicit,
            card=card,
            config=config,
        )
    )
    if kept is not None:
        return kept
    if validation.looks_like_path(chosen):
        return str(validation.match_base_model(chosen, validated, manifests()))
    return chosen


_FRONT_BASE = re.compile(r"^base_model:[ \t]*(?P<value>[^\s#][^#]*?)[ \t]*(?:#.*)?$", re.MULTILINE)


def card_base_model(readme: Path) -> str | None:
    """The `base_model:` of a README's YAML front matter when it is a plain scalar (the client
    does without a YAML parser; a list of several is no single base model, as on the hub)."""
    text = readme.read_bytes()[: 1024 * 1024].decode("utf-8", errors="replace").lstrip("\ufeff")
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    end = next((i for i, line in enumerate(lines[1:], start=1) if line.strip() == "---"), None)
    if end is None:
        return None
    front = "\n".join(lines[1:end])
    match = _FRONT_BASE.search(front)
    if match is None:
        items = re.search(r"^base_model:\s*\n((?:[ \t]*-[ \t]*\S.*\n?)+)", front + "\n", re.MULTILINE)
        values = re.findall(r"-[ \t]*(\S[^#\n]*?)[ \t]*(?:#.*)?$", items.group(1), re.MULTILINE) if items else []
        return _unquoted(values[0]) if len(values) == 1 else None
    value = match.group("value")
    if value.startswith("["):
        inner = [v.strip() for v in value.strip("[]").split(",") if v.strip()]
        return _unquoted(inner[0]) if len(inner) == 1 else None
    return _unquoted(value) or None


def _unquoted(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value

"""The hub's push checks, run on the user's machine before a byte is sent.

They are `composer/validation.py` itself (the module the hub runs), plus the few checks that
`registry.services.check_push` makes around it, with the same codes and messages. The module is
loaded from its file under a private name rather than imported as `composer.validation`: importing
the `composer` package pulls in torch, which costs seconds on every `ahub` call, while
validation.py needs only numpy. Inside a process that imported composer already (the hub, tests),
that module is reused.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO

from client.errors import Conflict, ValidationError

_PRIVATE_NAME = "_ahub_composer_validation"
CONFIG_NAME = "adapter_config.json"


def validation_module() -> ModuleType:
    loaded = sys.modules.get("composer.validation") or sys.modules.get(_PRIVATE_NAME)
    if loaded is not None:
        return loaded
    # find_spec of a top-level name locates the package without running its __init__.
    package = importlib.util.find_spec("composer")
    if package is None or not package.submodule_search_locations:
        raise ImportError("the composer package (composer/validation.py) is not installed")
    path = Path(next(iter(package.submodule_search_locations))) / "validation.py"
    spec = importlib.util.spec_from_file_location(_PRIVATE_NAME, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_PRIVATE_NAME] = module  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_PRIVATE_NAME]
        raise
    return module


@dataclass(frozen=True)
class ExistingAdapter:
    """What the hub says of the target adapter, when it exists: it fixes base model and method."""

    full_name: str
    base_model: str
    method: str


def _refusal(exc: Any) -> ValidationError:
    return ValidationError(exc.message, code=exc.code, details={"path": exc.path} if exc.path else None)


def check_adapter(
    files: Mapping[str, Path],
    *,
    existing: ExistingAdapter | None,
    base_model: str | None,
    method: str | None,
    manifest_of: Callable[[str], Mapping[str, Any] | None],
) -> Any:
    """Validate the files (path in the version -> local file) exactly as the hub will.

    1. File names, as check_push normalizes them.
    2. The base model: the existing adapter's, else the one given, else the config's.
    3. composer.validation.validate_adapter with that base model's manifest (fetched through
       manifest_of) and the method, streaming every file (the NaN check reads all weights).
    Returns the ValidatedAdapter; raises ValidationError or Conflict with the hub's message.
    """
    validation = validation_module()
    normalized: dict[str, Path] = {}
    for raw, local in files.items():
        try:
            path = validation.normalize_filename(raw)
        except validation.AdapterValidationError as exc:
            raise _refusal(exc) from None
        if path in normalized:
            raise ValidationError(f"file {path} was sent twice", code="duplicate_file")
        normalized[path] = local
    config_file = normalized.get(CONFIG_NAME)
    if config_file is None:
        raise ValidationError(
            "adapter_config.json is missing: push the whole folder that save_pretrained wrote", code="missing_config"
        )
    try:
        config = validation.validate_adapter_config(config_file.read_bytes())
    except validation.AdapterValidationError as exc:
        raise _refusal(exc) from None
    config_name = config.get("base_model_name_or_path") or None
    if existing is not None:
        if base_model and base_model != existing.base_model:
            raise Conflict(
                f"{existing.full_name} is an adapter of {existing.base_model}, not {base_model}",
                code="base_model_change",
            )
        base_model = existing.base_model
    else:
        base_model = base_model or config_name
    if not base_model:
        raise ValidationError(
            "the base model is unknown: send a 'base_model' field or set base_model_name_or_path in "
            "adapter_config.json",
            code="missing_base_model",
        )
    manifest = manifest_of(base_model)
    with contextlib.ExitStack() as stack:
        opened: dict[str, tuple[BinaryIO, int]] = {}
        for path, local in normalized.items():
            stream = stack.enter_context(open(local, "rb"))
            opened[path] = (stream, local.stat().st_size)
        try:
            return validation.validate_adapter(
                opened,
                method=method or (existing.method if existing else None),
                manifest=manifest or None,
                base_model=base_model,
            )
        except validation.AdapterValidationError as exc:
            raise _refusal(exc) from None

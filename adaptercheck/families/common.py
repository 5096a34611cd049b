"""What every family's shape rules share: PEFT's module selection semantics and the grouping of tensors by module."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adaptercheck._util import shape_str
from adaptercheck.errors import AdapterValidationError, refuse
from adaptercheck.limits import CONFIG_NAME
from adaptercheck.safetensors_header import TensorInfo

PEFT_PREFIX = "base_model.model."
# --------------------------------------------------------------------------------------------------
# PEFT module selection semantics (mirrors peft's check_target_module_exists and get_pattern_key)


def spec_matches(spec: list[str] | str | None, key: str) -> bool:
    if spec is None:
        return False
    if isinstance(spec, str):
        if spec.lower() == "all-linear":
            return True
        return re.fullmatch(spec, key) is not None
    return key in spec or any(key.endswith(f".{target}") for target in spec)


def _layer_index(config: Mapping[str, Any], key: str) -> int | None:
    patterns = config.get("layers_pattern")
    if not patterns:
        # Lazy match: the first numbered segment is the layer index, not e.g. a nested expert index.
        match = re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", key)
    else:
        match = None
        for pattern in [patterns] if isinstance(patterns, str) else patterns:
            match = re.match(rf"(?:^|.*?\.){pattern}\.(?P<idx>\d+)\.", key)
            if match is not None:
                break
    return int(match.group("idx")) if match else None


def _untargeted_reason(config: Mapping[str, Any], key: str) -> str | None:
    """Why peft would not have put an adapter on module ``key``, or None if it would."""
    exclude = config.get("exclude_modules")
    if exclude:
        if isinstance(exclude, str):
            if re.fullmatch(exclude, key):
                return f"it matches exclude_modules={exclude!r}"
        elif key in exclude or any(key.endswith(f".{e}") for e in exclude):
            return f"it matches exclude_modules={exclude!r}"
    # peft never puts an adapter on a module that is saved whole.
    for saved in config.get("modules_to_save") or ():
        if re.match(rf"(^|.*\.){saved}($|\..*)", key):
            return f"it is saved whole through modules_to_save entry {saved!r}"
    spec = config.get("target_modules")
    if not spec_matches(spec, key):
        return f"it is not selected by target_modules={spec!r}"
    layers = config.get("layers_to_transform")
    if isinstance(spec, list) and layers is not None and (not isinstance(layers, list) or layers):
        index = _layer_index(config, key)
        if index is None or (index != layers if isinstance(layers, int) else index not in layers):
            return f"its layer index ({index}) is not in layers_to_transform={layers!r}"
    return None


def _pattern_value(patterns: Mapping[str, Any] | None, key: str) -> tuple[str | None, Any]:
    for pattern, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", key):
            return pattern, value
    return None, None


def rank_for(config: Mapping[str, Any], module: str) -> tuple[int, str]:
    pattern, value = _pattern_value(config.get("rank_pattern"), module)
    if pattern is not None:
        return int(value), f"rank_pattern[{pattern!r}]={value}"
    return int(config["r"]), f"r={config['r']}"


def _is_saved_whole(config: Mapping[str, Any], local_name: str) -> bool:
    return any(re.match(rf"(^|.*\.){m}($|\..*)", local_name) for m in config.get("modules_to_save") or ())


_TRAINABLE_TOKENS_RE = re.compile(r"(?P<module>.+)\.token_adapter\.trainable_tokens_delta(?:\.[^.]+)?")


def is_allowed_extra(config: Mapping[str, Any], local_name: str) -> bool:
    """Tensors PEFT saves beside the adapter itself: modules_to_save copies and trainable-token deltas."""
    if _is_saved_whole(config, local_name):
        return True
    if config.get("trainable_token_indices") is None:
        return False
    return _TRAINABLE_TOKENS_RE.fullmatch(local_name) is not None


# --------------------------------------------------------------------------------------------------
# Tensor checks per peft_type


@dataclass
class Ctx:
    config: dict[str, Any]
    tensors: dict[str, TensorInfo]
    path: str
    config_path: str = CONFIG_NAME

    def local(self, name: str) -> str:
        return name[len(PEFT_PREFIX) :] if name.startswith(PEFT_PREFIX) else name

    def unexpected(self, name: str, expected: str) -> AdapterValidationError:
        return refuse(
            "unexpected_tensor",
            f"{self.path}: tensor {name!r} is not part of a {self.config.get('peft_type') or 'this'} adapter "
            f"(expected {expected}, or a module listed in modules_to_save).",
            self.path,
        )

    def check_targeted(self, module: str) -> None:
        reason = _untargeted_reason(self.config, module)
        if reason is not None:
            raise refuse(
                "untargeted_module",
                f"{self.path}: module {module!r} has adapter weights but {self.config_path} would not adapt it: "
                f"{reason}.",
                self.path,
            )

    def shape_error(
        self, module: str, part: str, expected: str, found: Sequence[int], why: str
    ) -> AdapterValidationError:
        return refuse(
            "shape_mismatch",
            f"{self.path}: module {module!r}: {part} should be {expected} ({why}) but is {shape_str(found)}.",
            self.path,
        )


def group(
    ctx: Ctx, pattern: re.Pattern[str], expected: str, *, part_of: Callable[[re.Match[str]], str] | None = None
) -> dict[str, dict[str, TensorInfo]]:
    """Group tensors by module using ``pattern`` (groups: module, kind); other tensors must be allowed extras."""
    modules: dict[str, dict[str, TensorInfo]] = {}
    for name, info in ctx.tensors.items():
        local = ctx.local(name)
        match = pattern.fullmatch(local)
        if match is None:
            if is_allowed_extra(ctx.config, local):
                continue
            raise ctx.unexpected(name, expected)
        part = part_of(match) if part_of else match.group("kind")
        parts = modules.setdefault(match.group("module"), {})
        if part in parts:
            raise refuse(
                "duplicate_tensor",
                f"{ctx.path}: module {match.group('module')!r} has two {part} tensors ({parts[part].name!r} and "
                f"{name!r}).",
                ctx.path,
            )
        parts[part] = info
    if not modules:
        raise refuse(
            "empty_adapter",
            f"{ctx.path} holds no {ctx.config.get('peft_type')} adapter tensors ({expected}).",
            ctx.path,
        )
    return modules


def require_parts(ctx: Ctx, module: str, parts: Mapping[str, TensorInfo], needed: Sequence[str], family: str) -> None:
    missing = [p for p in needed if p not in parts]
    if missing:
        have = ", ".join(sorted(parts)) or "nothing"
        raise refuse(
            "unpaired_lora",
            f"{ctx.path}: {family} module {module!r} has {have} but no {' / '.join(missing)}; each adapted module "
            f"needs {' and '.join(needed)}.",
            ctx.path,
        )


def require_2d(ctx: Ctx, module: str, parts: Mapping[str, TensorInfo], names: Sequence[str]) -> None:
    for part in names:
        if part in parts and len(parts[part].shape) != 2:
            shape = parts[part].shape
            what = "convolution" if len(shape) in (3, 4, 5) else f"{len(shape)}-D"
            raise refuse(
                "unsupported_layer",
                f"{ctx.path}: module {module!r}: {part} has shape {shape_str(shape)}, which looks like a {what} "
                "adapter; only Linear and Embedding layers are supported.",
                ctx.path,
            )

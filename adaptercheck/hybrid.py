"""Hybrid adapters: several PEFT adapters of different methods, each a normal PEFT folder in a
subfolder of the version, and `hybrid.json` saying which parts there are and in which order they
apply:

    hybrid.json       {"parts": [{"path": "lora"}, {"path": "prompt"}]}
    lora/             adapter_config.json, adapter_model.safetensors   (a weight-delta method)
    prompt/           adapter_config.json, adapter_model.safetensors   (prompt tuning, p-tuning or prefix)

Weight-delta parts apply first, in the listed order (each merged into the base), then at most one
prompt-family part wraps the result: a prompt part, if any, is last. Every part is validated as the
upload it would be alone, and all name the same base model. Each loads with stock PEFT:
`PeftModel.from_pretrained(base, "ns/name", subfolder="lora")`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import IO, Any

from adaptercheck._util import read_exact
from adaptercheck.base_model import looks_like_path, same_base_model
from adaptercheck.config_schema import PROMPT_TYPES
from adaptercheck.errors import refuse
from adaptercheck.limits import CONFIG_NAME, HYBRID_FILE, MAX_CONFIG_SIZE, Limits
from adaptercheck.validated import ValidatedAdapter

MAX_PARTS = 8
# Files of the version itself, beside the parts' folders.
_TOP_LEVEL = frozenset({HYBRID_FILE, "README.md", ".gitattributes", "composition.json"})

Files = Mapping[str, tuple[IO[bytes], int]]
PartValidator = Callable[..., ValidatedAdapter]


def _bad(message: str) -> Exception:
    return refuse("bad_hybrid", f"{HYBRID_FILE}: {message}", HYBRID_FILE)


def read_hybrid(files: Files) -> list[str]:
    """The parts' folders, in the order they apply."""
    fileobj, size = files[HYBRID_FILE]
    if size > MAX_CONFIG_SIZE:
        raise refuse("config_too_large", f"{HYBRID_FILE} is {size} bytes; at most {MAX_CONFIG_SIZE}.", HYBRID_FILE)
    fileobj.seek(0)
    try:
        spec = json.loads(read_exact(fileobj, size).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise refuse("config_not_json", f"{HYBRID_FILE} is not valid JSON ({exc}).", HYBRID_FILE) from None
    finally:
        fileobj.seek(0)
    parts = spec.get("parts") if isinstance(spec, dict) else None
    if not isinstance(parts, list) or not 2 <= len(parts) <= MAX_PARTS:
        raise _bad(f'\'parts\' must list 2 to {MAX_PARTS} parts, each {{"path": "<folder>"}}.')
    paths = []
    for part in parts:
        path = part.get("path") if isinstance(part, dict) else None
        if not isinstance(path, str) or not path or "/" in path or path.startswith("."):
            raise _bad(f"each part's path is one folder name of the version, got {path!r}.")
        if path in paths:
            raise _bad(f"the part {path!r} is listed twice.")
        paths.append(path)
    return paths


def validate_hybrid(
    files: Files, *, method: str | None, limits: Limits, validate_part: PartValidator
) -> ValidatedAdapter:
    """Each part validated alone (`validate_part`, the single-adapter checks), then the whole: one base
    model, a prompt part only last, no file outside the parts but the version's own."""
    if method not in (None, "hybrid"):
        raise refuse(
            "method_mismatch", f"Method {method!r} was declared but the upload is a hybrid ({HYBRID_FILE}).", None
        )
    paths = read_hybrid(files)
    for name in files:
        folder = name.split("/", 1)[0]
        if name not in _TOP_LEVEL and ("/" not in name or folder not in paths):
            raise _bad(f"{name!r} belongs to no part; parts are {', '.join(paths)}.")
    parts: list[tuple[str, ValidatedAdapter]] = []
    for path in paths:
        sub = {name[len(path) + 1 :]: entry for name, entry in files.items() if name.startswith(path + "/")}
        if CONFIG_NAME not in sub:
            raise _bad(f"the part {path!r} has no {path}/{CONFIG_NAME}.")
        if HYBRID_FILE in sub:
            raise _bad(f"the part {path!r} is itself a hybrid; parts are plain PEFT adapters.")
        validated = validate_part(sub, sum(size for _, size in sub.values()), method=None, limits=limits)
        if not validated.peft_type or not validated.peft_layout:
            raise _bad(f"the part {path!r} is a {validated.method} adapter; parts are PEFT adapters.")
        parts.append((path, validated))
    prompts = [path for path, v in parts if v.peft_type in PROMPT_TYPES]
    if len(prompts) > 1 or (prompts and prompts[0] != paths[-1]):
        raise _bad(
            "a prompt part (prompt tuning, p-tuning, prefix tuning) wraps the model after the weight changes: "
            "at most one, listed last."
        )
    bases = {v.base_model for _, v in parts if v.base_model}
    first = next(iter(sorted(bases)), None)
    # A part trained from a local folder records its path: like one push, it matches by its last segment.
    if first is not None and any(not (same_base_model(o, first) or same_base_model(first, o)) for o in bases):
        raise refuse(
            "base_model_mismatch", f"the parts name different base models: {', '.join(sorted(bases))}.", HYBRID_FILE
        )
    return _whole(paths, parts, files)


def _whole(paths: list[str], parts: list[tuple[str, ValidatedAdapter]], files: Files) -> ValidatedAdapter:
    """What the hub records of a hybrid: its parts in order, each with its method and rank."""
    tasks = {v.config.get("task_type") for _, v in parts} - {None}
    config: dict[str, Any] = {
        "hybrid": True,
        "task_type": tasks.pop() if len(tasks) == 1 else None,
        "parts": [
            {
                "path": path,
                "method": v.method,
                "peft_type": v.peft_type,
                "rank": v.rank,
                "base_model_name_or_path": v.base_model,
                "num_virtual_tokens": v.config.get("num_virtual_tokens"),
            }
            for path, v in parts
        ],
    }
    modules: dict[str, tuple[int, int]] = {}
    scaled: dict[str, tuple[str, int]] = {}
    requires: dict[str, dict[str, int]] = {}
    for _, v in parts:
        modules.update(v.modules)
        scaled.update(v.scaled)
        requires.update(v.requires)
    ranks = [v.rank for _, v in parts if v.rank is not None]
    targets = sorted({t for _, v in parts if isinstance(v.target_modules, list) for t in v.target_modules})
    named = [v.base_model for _, v in parts if v.base_model]
    base = next((b for b in named if not looks_like_path(b)), named[0] if named else None)
    return ValidatedAdapter(
        config=config,
        peft_type="",
        method="hybrid",
        rank=max(ranks) if ranks else None,
        lora_alpha=None,
        target_modules=targets or None,
        base_model=base,
        tensors={f"{path}/{name}": info for path, v in parts for name, info in v.tensors.items()},
        modules=modules,
        total_size=sum(size for _, size in files.values()),
        files=tuple(sorted(files)),
        scaled=scaled,
        requires=requires,
        config_paths=tuple(f"{path}/{CONFIG_NAME}" for path in paths),
    )

"""The whole upload: file names, config, every tensor file, the family's shape rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import IO

from adaptercheck._util import is_int, read_exact
from adaptercheck.base_model import check_base_shapes, same_base_model
from adaptercheck.config_schema import HUB_BITFIT, PROMPT_TYPES, resolve_method, validate_adapter_config
from adaptercheck.errors import refuse
from adaptercheck.families.adalora import check_adalora
from adaptercheck.families.bitfit import check_bitfit
from adaptercheck.families.bottleneck import (
    HEAD_CONFIG,
    HEAD_WEIGHTS,
    LIBRARY_WEIGHTS,
    check_bottleneck,
    check_head,
    check_library_config,
    is_library_config,
    library_base_model,
)
from adaptercheck.families.common import Ctx
from adaptercheck.families.ia3 import check_ia3
from adaptercheck.families.layers import check_adaption_prompt, check_ln_tuning
from adaptercheck.families.loha import check_loha
from adaptercheck.families.lokr import check_lokr
from adaptercheck.families.lora import check_lora
from adaptercheck.families.orthogonal import check_boft, check_oft
from adaptercheck.families.prompt import check_prompt
from adaptercheck.families.vectors import check_fourierft, check_vera
from adaptercheck.filenames import normalize_filename
from adaptercheck.hybrid import HYBRID_FILE, validate_hybrid
from adaptercheck.limits import (
    CONFIG_NAME,
    MAX_CONFIG_SIZE,
    OTHER_PICKLE_CAPABLE,
    PICKLE_EXTENSIONS,
    WEIGHTS_NAME,
    Limits,
)
from adaptercheck.safetensors_header import FLOAT_DTYPES, check_finite, parse_header
from adaptercheck.validated import ValidatedAdapter

# --------------------------------------------------------------------------------------------------
# The whole upload


def validate_adapter(
    files: Mapping[str, tuple[IO[bytes], int]],
    *,
    method: str | None = None,
    manifest: Mapping[str, Sequence[int]] | None = None,
    base_model: str | None = None,
    limits: Limits = Limits(),
) -> ValidatedAdapter:
    """Validate a complete adapter upload; every file object is rewound to 0 afterwards, pass or fail."""
    try:
        return _validate_adapter(files, method=method, manifest=manifest, base_model=base_model, limits=limits)
    finally:
        for fileobj, _ in files.values():
            try:
                fileobj.seek(0)
            except (OSError, ValueError):
                pass


def _validate_adapter(
    files: Mapping[str, tuple[IO[bytes], int]],
    *,
    method: str | None,
    manifest: Mapping[str, Sequence[int]] | None,
    base_model: str | None,
    limits: Limits,
) -> ValidatedAdapter:
    # 1. Names and sizes, before reading a single byte of content.
    if len(files) > limits.max_files:
        raise refuse(
            "too_many_files",
            f"The upload has {len(files)} files; at most {limits.max_files} are allowed per version.",
            None,
            "size",
        )
    normalized: dict[str, tuple[IO[bytes], int]] = {}
    folded: dict[str, str] = {}
    total = 0
    for raw_name, (fileobj, size) in files.items():
        name = normalize_filename(raw_name)
        # Case-insensitive file systems would merge these on download.
        if name.casefold() in folded:
            raise refuse(
                "duplicate_filename",
                f"Files {folded[name.casefold()]!r} and {raw_name!r} name the same path.",
                name,
                "request",
            )
        folded[name.casefold()] = raw_name
        if not is_int(size) or size < 0:
            raise refuse(
                "file_size_mismatch",
                f"{name}: declared size {size!r} is not a non-negative integer.",
                name,
                "request",
            )
        if size > limits.max_file_size:
            raise refuse(
                "file_too_large",
                f"{name} is {size} bytes; at most {limits.max_file_size} bytes are allowed per file.",
                name,
                "size",
            )
        total += size
        if total > limits.max_version_size:
            raise refuse(
                "version_too_large",
                f"The upload is over {limits.max_version_size} bytes in total (reached {total} at {name}); that is "
                "the per-version limit.",
                name,
                "size",
            )
        fileobj.seek(0, 2)
        actual = fileobj.tell()
        if actual != size:
            raise refuse(
                "file_size_mismatch",
                f"{name}: {size} bytes were declared but {actual} were received.",
                name,
                "request",
            )
        fileobj.seek(0)
        normalized[name] = (fileobj, size)

    # 2. Formats that execute code on load never get further.
    for name in normalized:
        lower = name.lower()
        if lower.endswith(PICKLE_EXTENSIONS + OTHER_PICKLE_CAPABLE):
            # The `adapters` library (AdapterHub) names its pickles so; its own way out differs from PEFT's.
            advice = (
                "`model.save_adapter(path, name, use_safetensors=True)` (the adapters library)"
                if lower.rsplit("/", 1)[-1] in ("pytorch_adapter.bin", "pytorch_model_head.bin")
                else "`model.save_pretrained(path, safe_serialization=True)` and upload adapter_model.safetensors"
            )
            raise refuse(
                "pickle_refused",
                f"{name} is a pickle-based format, which can run arbitrary code when loaded; re-save the adapter "
                f"with {advice} instead.",
                name,
                "request",
            )
    for name, (fileobj, size) in normalized.items():
        if name.lower().endswith(".safetensors") and size >= 9:
            head = read_exact(fileobj, 9)
            fileobj.seek(0)
            # A real header starts with '{' at byte 8; pickle protocol 2-5 and torch's zip start differently.
            disguised = (head[0] == 0x80 and 2 <= head[1] <= 5) or head.startswith(b"PK\x03\x04")
            if disguised and head[8:9] != b"{":
                raise refuse(
                    "pickle_refused",
                    f"{name} is named .safetensors but contains a pickle or torch.save archive; re-save with "
                    "`model.save_pretrained(path, safe_serialization=True)`.",
                    name,
                    "request",
                )

    if HYBRID_FILE in normalized:
        validated = validate_hybrid(normalized, method=method, limits=limits, validate_part=_validate_content)
    else:
        validated = _validate_content(normalized, total, method=method, limits=limits)
    declared = validated.base_model
    if base_model and declared and not same_base_model(declared, base_model):
        raise refuse(
            "base_model_mismatch",
            f"{CONFIG_NAME} says the adapter was trained on {declared!r}, but it is being registered for "
            f"{base_model!r}.",
            CONFIG_NAME,
        )
    if manifest is not None:
        check_base_shapes(validated, manifest)
    return validated


def _validate_content(
    normalized: Mapping[str, tuple[IO[bytes], int]], total: int, *, method: str | None, limits: Limits
) -> ValidatedAdapter:
    """Steps 3-5 on files already named and sized (a whole upload, or one part of a hybrid)."""
    # 3. Required files: the config says which layout (PEFT's or the `adapters` library's) names the weights.
    if CONFIG_NAME not in normalized:
        nested = [n for n in normalized if n.endswith("/" + CONFIG_NAME)]
        hint = f" Found {nested[0]!r}: upload the adapter folder's contents, not the folder." if nested else ""
        raise refuse("missing_config", f"The upload has no {CONFIG_NAME}.{hint}", CONFIG_NAME, "request")
    config_obj, config_size = normalized[CONFIG_NAME]
    config_obj.seek(0)
    config = validate_adapter_config(read_exact(config_obj, min(config_size, MAX_CONFIG_SIZE + 1)), path=CONFIG_NAME)
    library = is_library_config(config)
    weights_name = LIBRARY_WEIGHTS if library else WEIGHTS_NAME
    if weights_name not in normalized:
        nested = [n for n in normalized if n.endswith("/" + weights_name)]
        hint = f" Found {nested[0]!r}: upload the adapter folder's contents, not the folder." if nested else ""
        how = (
            "`model.save_adapter(path, name, use_safetensors=True)`"
            if library
            else "`save_pretrained(path, safe_serialization=True)`"
        )
        raise refuse(
            "missing_weights",
            f"The upload has no {weights_name}; save the adapter with {how}.{hint}",
            weights_name,
            "request",
        )

    # 4. Content: config, then every safetensors header, then the weights' values.
    if library:
        check_library_config(config, CONFIG_NAME)
        declared_base = library_base_model(config)
        if method not in (None, "bottleneck"):
            raise refuse(
                "method_mismatch",
                f"Method {method!r} was declared but {CONFIG_NAME} describes an `adapters` library bottleneck adapter.",
                CONFIG_NAME,
            )
        resolved = "bottleneck"
    else:
        declared_base = config.get("base_model_name_or_path")
        resolved = resolve_method(config, method, CONFIG_NAME)

    weights_obj, weights_size = normalized[weights_name]
    tensors, data_offset = parse_header(weights_obj, weights_size, limits, weights_name)
    others = {
        name: parse_header(fileobj, size, limits, name)[0]
        for name, (fileobj, size) in normalized.items()
        if name != weights_name and name.lower().endswith(".safetensors")
    }
    if not tensors:
        raise refuse("empty_adapter", f"{weights_name} contains no tensors.", weights_name)
    for info in tensors.values():
        # Adapter weights are trained parameters: an integer or boolean tensor is no adapter's.
        if info.dtype not in FLOAT_DTYPES:
            raise refuse(
                "bad_dtype",
                f"{weights_name}: tensor {info.name!r} has dtype {info.dtype}; adapter weights are floating point "
                f"({', '.join(sorted(FLOAT_DTYPES))}).",
                weights_name,
            )
    check_finite(weights_obj, tensors, path=weights_name, data_offset=data_offset)

    # 5. Tensors against the config, then against the base model.
    ctx = Ctx(config=config, tensors=tensors, path=weights_name)
    peft_type = config.get("peft_type") or ""
    modules: dict[str, tuple[int, int]] = {}
    scaled: dict[str, tuple[str, int]] = {}
    requires: dict[str, dict[str, int]] = {}
    rank: int | None = None
    alpha: float | None = None
    if library:
        requires, rank = check_bottleneck(ctx)
        if HEAD_WEIGHTS in others:
            check_head_config(normalized, limits)
            hidden = next(iter(requires.values()))["layer"]
            requires = {**requires, **check_head(others[HEAD_WEIGHTS], HEAD_WEIGHTS, hidden)}
    elif peft_type == "LORA":
        modules = check_lora(ctx)
        rank = max([int(config["r"]), *(int(v) for v in (config.get("rank_pattern") or {}).values())])
        alpha = float(config["lora_alpha"])
    elif peft_type == "ADALORA":
        modules, stored_rank = check_adalora(ctx)
        # Saved after its rank budget was allocated (rank_pattern), AdaLoRA stores the ranks it kept:
        # the largest is its rank. Saved before, every module holds init_r ranks, most of which it would
        # prune: its rank is the target it trains towards.
        rank = stored_rank if config.get("rank_pattern") else int(config.get("target_r") or stored_rank)
        alpha = float(config["lora_alpha"])
    elif peft_type in ("LOHA", "LOKR"):
        modules = check_loha(ctx) if peft_type == "LOHA" else check_lokr(ctx)
        rank = max([int(config["r"]), *(int(v) for v in (config.get("rank_pattern") or {}).values())])
        alpha = float(config["alpha"])
    elif peft_type == "IA3":
        scaled = check_ia3(ctx)
    elif peft_type in PROMPT_TYPES:
        check_prompt(ctx)
    elif peft_type == "OFT":
        requires = check_oft(ctx)
    elif peft_type == "BOFT":
        requires = check_boft(ctx)
    elif peft_type == "VERA":
        requires = check_vera(ctx)
        rank = int(config["r"])
    elif peft_type == "FOURIERFT":
        requires = check_fourierft(ctx)
    elif peft_type == "LN_TUNING":
        requires = {module: {"norm": size} for module, size in check_ln_tuning(ctx).items()}
    elif peft_type == "ADAPTION_PROMPT":
        requires = check_adaption_prompt(ctx)
    elif peft_type == HUB_BITFIT:
        requires = check_bitfit(ctx)

    validated = ValidatedAdapter(
        config=config,
        peft_type=peft_type,
        method=resolved,
        rank=rank,
        lora_alpha=alpha,
        target_modules=config.get("target_modules"),
        base_model=declared_base,
        tensors=tensors,
        modules=modules,
        total_size=total,
        files=tuple(sorted(normalized)),
        scaled=scaled,
        requires=requires,
        weights=weights_name,
        config_paths=() if library else (CONFIG_NAME,),
    )
    return validated


def check_head_config(files: Mapping[str, tuple[IO[bytes], int]], limits: Limits) -> None:
    """A saved head comes with its head_config.json, a JSON object the library reads on load."""
    if HEAD_CONFIG not in files:
        raise refuse(
            "missing_config",
            f"{HEAD_WEIGHTS} comes without its {HEAD_CONFIG}; upload the folder `save_adapter` wrote, whole.",
            HEAD_CONFIG,
            "request",
        )
    fileobj, size = files[HEAD_CONFIG]
    fileobj.seek(0)
    head = validate_adapter_config(read_exact(fileobj, min(size, MAX_CONFIG_SIZE + 1)), path=HEAD_CONFIG)
    fileobj.seek(0)
    if head.get("peft_type") is not None:
        raise refuse("bad_config", f"{HEAD_CONFIG} is not a head configuration of the adapters library.", HEAD_CONFIG)

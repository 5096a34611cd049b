"""adapter_config.json: strict JSON, the keys PEFT reads, and the method it describes."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from adaptercheck._util import DuplicateKey, check_regex, is_int, is_number, strict_json_loads
from adaptercheck.errors import AdapterValidationError, refuse
from adaptercheck.limits import CONFIG_NAME, MAX_CONFIG_SIZE, METHODS

# Every peft_type PEFT knows (PeftType in peft 0.21). A type outside this set is a typo or a forgery;
# a known type outside _SUPPORTED_PEFT_TYPES is real but cannot be registered here.
KNOWN_PEFT_TYPES = frozenset(
    {
        "PROMPT_TUNING", "MULTITASK_PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "LORA", "ADALORA", "ADAMSS",
        "BOFT", "ADAPTION_PROMPT", "IA3", "BEFT", "LILY", "LOHA", "LOKR", "OFT", "POLY", "LN_TUNING", "VERA",
        "FROD", "PVERA", "FOURIERFT", "GLORA", "XLORA", "HRA", "VBLORA", "UNILORA", "CPT", "MISS", "RANDLORA",
        "ROAD", "TRAINABLE_TOKENS", "HIRA", "SHIRA", "C3A", "WAVEFT", "OSF", "DELORA", "GRALORA", "CARTRIDGE",
        "TINYLORA", "PSOFT", "PEANUT", "SHADOW", "SUPERTUNING", "DEFT",
    }
)  # fmt: skip
_PEFT_TYPE_METHOD = {
    "LORA": "lora",
    "ADALORA": "adalora",
    "IA3": "ia3",
    "LOHA": "loha",
    "LOKR": "lokr",
    "PROMPT_TUNING": "prompt_tuning",
    "PREFIX_TUNING": "prefix_tuning",
    "P_TUNING": "p_tuning",
    "OFT": "oft",
    "BOFT": "boft",
    "VERA": "vera",
    "FOURIERFT": "fourierft",
    "LN_TUNING": "ln_tuning",
    "ADAPTION_PROMPT": "llama_adapter",
    "BITFIT": "bitfit",
}
PROMPT_TYPES = frozenset({"PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING"})
# The hub's own format for BitFit (composer/bitfit.py): PEFT has none, so its config names this type.
HUB_BITFIT = "BITFIT"
# --------------------------------------------------------------------------------------------------
# adapter_config.json


def _cfgrefuse(path: str, message: str) -> AdapterValidationError:
    return refuse("bad_config", f"{path}: {message}", path)


def _check_pos_int(cfg: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> None:
    value = cfg.get(key)
    if value is None:
        if required:
            raise _cfgrefuse(path, f"'{key}' is required for peft_type {cfg.get('peft_type')}.")
        return
    if not is_int(value) or value <= 0:
        raise _cfgrefuse(path, f"'{key}' must be a positive integer, got {value!r}.")


def _check_pos_number(cfg: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> None:
    value = cfg.get(key)
    if value is None:
        if required:
            raise _cfgrefuse(path, f"'{key}' is required for peft_type {cfg.get('peft_type')}.")
        return
    if not is_number(value) or value <= 0:
        raise _cfgrefuse(path, f"'{key}' must be a positive number, got {value!r}.")


def _check_non_negative_int(cfg: Mapping[str, Any], key: str, path: str) -> None:
    value = cfg.get(key)
    if value is not None and (not is_int(value) or value < 0):
        raise _cfgrefuse(path, f"'{key}' must be an integer >= 0, got {value!r}.")


def _check_bool(cfg: Mapping[str, Any], key: str, path: str) -> None:
    value = cfg.get(key)
    if value is not None and not isinstance(value, bool):
        raise _cfgrefuse(path, f"'{key}' must be true or false, got {value!r}.")


def _check_fraction(cfg: Mapping[str, Any], key: str, path: str) -> None:
    value = cfg.get(key)
    if value is not None and (not is_number(value) or not 0 <= value < 1):
        raise _cfgrefuse(path, f"'{key}' must be a number in [0, 1), got {value!r}.")


def _check_module_spec(cfg: Mapping[str, Any], key: str, path: str, *, required: bool) -> None:
    """A PEFT module selector: a list of names (suffix match) or one regex string (full match)."""
    value = cfg.get(key)
    if value is None:
        if required:
            raise _cfgrefuse(
                path,
                f"'{key}' is required for peft_type {cfg.get('peft_type')}: list the module names or give a regular "
                "expression.",
            )
        return
    if isinstance(value, str):
        if not value:
            raise _cfgrefuse(path, f"'{key}' must not be an empty string.")
        check_regex(value, f"'{key}'", path)
        return
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _cfgrefuse(
            path,
            f"'{key}' must be a list of non-empty module names or a regular expression string, got {value!r}.",
        )
    if required and not value:
        raise _cfgrefuse(path, f"'{key}' must not be an empty list.")


def _check_str_list(cfg: Mapping[str, Any], key: str, path: str, *, regex_each: bool = False) -> None:
    value = cfg.get(key)
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _cfgrefuse(path, f"'{key}' must be a list of non-empty strings, got {value!r}.")
    if regex_each:
        for item in value:
            check_regex(item, f"'{key}' entry", path, wrap=lambda p: rf"(^|.*\.){p}($|\..*)")


def _check_pattern_dict(cfg: Mapping[str, Any], key: str, path: str, kind: str) -> None:
    value = cfg.get(key)
    if value is None:
        return
    if not isinstance(value, dict):
        raise _cfgrefuse(
            path,
            f"'{key}' must be an object mapping module patterns to values, got {type(value).__name__}.",
        )
    for pattern, item in value.items():
        if not pattern:
            raise _cfgrefuse(path, f"'{key}' has an empty pattern.")
        check_regex(pattern, f"'{key}' key", path, wrap=lambda p: rf"(.*\.)?({p})$")
        if kind == "int" and (not is_int(item) or item <= 0):
            raise _cfgrefuse(path, f"'{key}'[{pattern!r}] must be a positive integer, got {item!r}.")
        if kind == "number" and (not is_number(item) or item <= 0):
            raise _cfgrefuse(path, f"'{key}'[{pattern!r}] must be a positive number, got {item!r}.")
        if kind == "mask" and not (isinstance(item, list) and all(isinstance(b, bool) or b in (0, 1) for b in item)):
            raise _cfgrefuse(path, f"'{key}'[{pattern!r}] must be a list of booleans (an AdaLoRA rank mask).")


def _check_common_selectors(cfg: Mapping[str, Any], path: str) -> None:
    _check_str_list(cfg, "modules_to_save", path, regex_each=True)
    exclude = cfg.get("exclude_modules")
    if isinstance(exclude, str):
        check_regex(exclude, "'exclude_modules'", path)
    else:
        _check_str_list(cfg, "exclude_modules", path)
    layers = cfg.get("layers_to_transform")
    if layers is not None and not (
        (is_int(layers) and layers >= 0) or (isinstance(layers, list) and all(is_int(i) and i >= 0 for i in layers))
    ):
        raise _cfgrefuse(
            path,
            f"'layers_to_transform' must be a non-negative integer or a list of them, got {layers!r}.",
        )
    pattern = cfg.get("layers_pattern")
    if isinstance(pattern, str):
        check_regex(pattern, "'layers_pattern'", path)
    else:
        _check_str_list(cfg, "layers_pattern", path, regex_each=True)
    _check_bool(cfg, "fan_in_fan_out", path)
    _check_bool(cfg, "inference_mode", path)


def validate_adapter_config(raw: bytes, *, path: str = CONFIG_NAME) -> dict[str, Any]:
    """Parse adapter_config.json and check the fields its peft_type depends on.

    Codes: ``config_too_large`` (kind size), ``config_not_json``, ``unknown_peft_type``, ``bad_config``.
    A config without peft_type is returned as-is (non-PEFT methods such as bottleneck or bitfit);
    unknown extra keys are allowed because PEFT adds new ones every release.
    """
    if len(raw) > MAX_CONFIG_SIZE:
        raise refuse(
            "config_too_large",
            f"{path} is {len(raw)} bytes; at most {MAX_CONFIG_SIZE} are allowed.",
            path,
            "size",
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise refuse("config_not_json", f"{path} is not valid UTF-8 ({exc}).", path) from None
    try:
        cfg = strict_json_loads(text)
    except DuplicateKey as exc:
        raise refuse("config_not_json", f"{path} lists the key {exc.key!r} more than once.", path) from None
    except (ValueError, RecursionError) as exc:
        raise refuse("config_not_json", f"{path} is not valid JSON ({exc}).", path) from None
    if not isinstance(cfg, dict):
        raise refuse("config_not_json", f"{path} must contain a JSON object, not {type(cfg).__name__}.", path)

    for key in ("base_model_name_or_path", "task_type", "revision"):
        if cfg.get(key) is not None and not isinstance(cfg[key], str):
            raise _cfgrefuse(path, f"'{key}' must be a string or null, got {cfg[key]!r}.")
    peft_type = cfg.get("peft_type")
    if peft_type is None:
        return cfg
    if not isinstance(peft_type, str) or peft_type not in KNOWN_PEFT_TYPES | {HUB_BITFIT}:
        hint = ""
        if isinstance(peft_type, str):
            close = difflib.get_close_matches(peft_type.upper(), sorted(KNOWN_PEFT_TYPES), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise refuse("unknown_peft_type", f"{path}: peft_type {peft_type!r} is not a PEFT method{hint}.", path)

    if peft_type in ("LORA", "ADALORA"):
        _check_pos_int(cfg, "r", path, required=True)
        _check_pos_number(cfg, "lora_alpha", path, required=True)
        target = cfg.get("target_modules")
        if target is None:
            raise _cfgrefuse(
                path,
                f"'target_modules' is required for {peft_type} (adapters targeting only target_parameters are not "
                "supported).",
            )
        _check_module_spec(cfg, "target_modules", path, required=True)
        for key in ("use_rslora", "use_dora", "lora_bias"):
            _check_bool(cfg, key, path)
        _check_fraction(cfg, "lora_dropout", path)
        _check_common_selectors(cfg, path)
        if peft_type == "ADALORA":
            _check_pos_int(cfg, "init_r", path)
            _check_pos_int(cfg, "target_r", path)
            _check_pattern_dict(cfg, "rank_pattern", path, "mask")
            if cfg.get("use_dora"):
                raise _cfgrefuse(path, "AdaLoRA does not support use_dora.")
        else:
            _check_pattern_dict(cfg, "rank_pattern", path, "int")
            _check_pattern_dict(cfg, "alpha_pattern", path, "number")
    elif peft_type == "IA3":
        _check_module_spec(cfg, "target_modules", path, required=True)
        _check_module_spec(cfg, "feedforward_modules", path, required=False)
        _check_common_selectors(cfg, path)
        target, feedforward = cfg.get("target_modules"), cfg.get("feedforward_modules")
        if isinstance(target, list) and isinstance(feedforward, list):
            extra = sorted(set(feedforward) - set(target))
            if extra:
                raise _cfgrefuse(
                    path,
                    f"'feedforward_modules' must be a subset of 'target_modules'; {extra} are not targeted.",
                )
    elif peft_type in ("LOHA", "LOKR"):
        _check_pos_int(cfg, "r", path, required=True)
        _check_pos_number(cfg, "alpha", path, required=True)
        _check_module_spec(cfg, "target_modules", path, required=True)
        _check_fraction(cfg, "rank_dropout", path)
        _check_fraction(cfg, "module_dropout", path)
        for key in ("use_effective_conv2d", "decompose_both"):
            _check_bool(cfg, key, path)
        _check_common_selectors(cfg, path)
        _check_pattern_dict(cfg, "rank_pattern", path, "int")
        _check_pattern_dict(cfg, "alpha_pattern", path, "number")
    elif peft_type in ("OFT", "BOFT", "VERA", "FOURIERFT", "LN_TUNING"):
        _check_module_spec(cfg, "target_modules", path, required=True)
        _check_common_selectors(cfg, path)
        if peft_type == "OFT":
            _check_non_negative_int(cfg, "r", path)
            _check_non_negative_int(cfg, "oft_block_size", path)
            if not (cfg.get("r") or cfg.get("oft_block_size")):
                raise _cfgrefuse(path, "OFT needs 'r' (blocks) or 'oft_block_size'.")
            for key in ("block_share", "coft"):
                _check_bool(cfg, key, path)
        elif peft_type == "BOFT":
            _check_non_negative_int(cfg, "boft_block_size", path)
            _check_non_negative_int(cfg, "boft_block_num", path)
            _check_pos_int(cfg, "boft_n_butterfly_factor", path)
        elif peft_type == "VERA":
            _check_pos_int(cfg, "r", path, required=True)
            _check_bool(cfg, "save_projection", path)
        elif peft_type == "FOURIERFT":
            _check_pos_int(cfg, "n_frequency", path, required=True)
            _check_pattern_dict(cfg, "n_frequency_pattern", path, "int")
    elif peft_type == HUB_BITFIT:
        _check_module_spec(cfg, "target_modules", path, required=False)
    elif peft_type == "ADAPTION_PROMPT":
        _check_pos_int(cfg, "adapter_len", path, required=True)
        _check_pos_int(cfg, "adapter_layers", path, required=True)
        if not isinstance(cfg.get("target_modules"), str):
            raise _cfgrefuse(path, "'target_modules' of LLaMA-Adapter names the attention submodule (a string).")
    elif peft_type in PROMPT_TYPES:
        _check_pos_int(cfg, "num_virtual_tokens", path, required=True)
        for key in ("token_dim", "num_attention_heads", "encoder_hidden_size"):
            _check_pos_int(cfg, key, path)
        _check_pos_int(cfg, "num_layers", path, required=peft_type == "PREFIX_TUNING")
        submodules = cfg.get("num_transformer_submodules")
        if submodules is not None and (not is_int(submodules) or submodules not in (1, 2)):
            raise _cfgrefuse(path, f"'num_transformer_submodules' must be 1 or 2, got {submodules!r}.")
        _check_bool(cfg, "prefix_projection", path)
        _check_str_list(cfg, "modules_to_save", path, regex_each=True)
    return cfg


# --------------------------------------------------------------------------------------------------
# Method inference


def infer_method(config: Mapping[str, Any]) -> str | None:
    """The registry method a config describes, or None when it has no peft_type (non-PEFT method)."""
    peft_type = config.get("peft_type")
    if not peft_type:
        return None
    if peft_type == "LORA":
        if config.get("use_dora"):
            return "dora"
        if config.get("use_rslora"):
            return "rslora"
        return "lora"
    return _PEFT_TYPE_METHOD.get(peft_type)


def resolve_method(config: Mapping[str, Any], claimed: str | None, path: str) -> str:
    peft_type = config.get("peft_type") or ""
    if claimed is not None and claimed not in METHODS:
        raise refuse("unknown_method", f"Method {claimed!r} is not one of: {', '.join(METHODS)}.", None, "request")
    if peft_type and peft_type not in _PEFT_TYPE_METHOD:
        raise refuse(
            "unsupported_peft_type",
            f"{path}: peft_type {peft_type} is a PEFT method this registry does not accept; supported: "
            f"{', '.join(sorted(_PEFT_TYPE_METHOD))}.",
            path,
        )
    inferred = infer_method(config)
    if inferred is None:
        # Without a peft_type, nothing tells which tensors to expect: a non-PEFT method is known by
        # its own layout (the adapters library's config, or BitFit's peft_type), never by a claim alone.
        raise refuse(
            "missing_peft_type" if claimed is None else "method_mismatch",
            f"{path} has no peft_type, so it is no PEFT adapter"
            + (f" of method {claimed!r}" if claimed else "")
            + ". Save PEFT adapters with `save_pretrained`; a bottleneck adapter as the `adapters` library saves it "
            "(`model.save_adapter(path, name, use_safetensors=True)`); a BitFit adapter with "
            "`composer.bitfit.save_bitfit`, whose config says peft_type BITFIT.",
            path,
        )
    if claimed is None or claimed == inferred:
        return inferred
    if claimed == "qlora" and peft_type == "LORA":
        # QLoRA adapters are LoRA adapters trained on a quantized base: the files look the same.
        return claimed
    variant = {"dora": "use_dora=true", "rslora": "use_rslora=true"}.get(inferred, f"peft_type {peft_type}")
    raise refuse(
        "method_mismatch",
        f"Method {claimed!r} was declared but {path} describes a {inferred!r} adapter ({variant}).",
        path,
    )

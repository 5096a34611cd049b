"""What matters about each method's configuration, for people: the fields the catalog and the API
show beside a version (rank and alpha mean nothing to a prompt or an OFT adapter)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adaptercheck.families.bottleneck import architecture_of, is_library_config

# (config key, what people call it), per peft_type, in the order shown.
_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "LORA": (("r", "Rank"), ("lora_alpha", "Alpha"), ("lora_dropout", "Dropout"), ("use_rslora", "rsLoRA scaling"),
             ("use_dora", "DoRA"), ("lora_bias", "Bias trained")),
    "ADALORA": (("target_r", "Target rank"), ("init_r", "Initial rank"), ("lora_alpha", "Alpha")),
    "LOHA": (("r", "Rank"), ("alpha", "Alpha"), ("rank_dropout", "Rank dropout")),
    "LOKR": (("r", "Rank"), ("alpha", "Alpha"), ("decompose_both", "Both factors decomposed")),
    "IA3": (("feedforward_modules", "Feed-forward modules"),),
    "PROMPT_TUNING": (("num_virtual_tokens", "Virtual tokens"), ("prompt_tuning_init", "Initialised from")),
    "PREFIX_TUNING": (("num_virtual_tokens", "Virtual tokens"), ("num_layers", "Layers"),
                      ("prefix_projection", "Prefix projection")),
    "P_TUNING": (("num_virtual_tokens", "Virtual tokens"), ("encoder_reparameterization_type", "Prompt encoder"),
                 ("encoder_hidden_size", "Encoder hidden size")),
    "OFT": (("oft_block_size", "Block size"), ("r", "Blocks"), ("block_share", "Blocks shared"), ("coft", "Constrained")),
    "BOFT": (("boft_block_size", "Block size"), ("boft_block_num", "Blocks"),
             ("boft_n_butterfly_factor", "Butterfly factor")),
    "VERA": (("r", "Rank"), ("save_projection", "Projections saved")),
    "FOURIERFT": (("n_frequency", "Frequencies"), ("scaling", "Scaling")),
    "LN_TUNING": (),
    "ADAPTION_PROMPT": (("adapter_len", "Prompt length"), ("adapter_layers", "Adapted layers")),
}  # fmt: skip


def method_details(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) of the configuration fields that matter for the config's method; fields
    left unset, zero or false are skipped."""
    if is_library_config(config):
        return _bottleneck_details(config["config"])
    if config.get("hybrid"):
        return _hybrid_details(config.get("parts") or [])
    details = []
    for key, label in _FIELDS.get(str(config.get("peft_type") or ""), ()):
        value = config.get(key)
        if value in (None, "", 0, False, [], {}):
            continue
        if value is True:
            value = "yes"
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        details.append((label, str(value)))
    return details


def _bottleneck_details(settings: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The `adapters` library's settings that tell its bottleneck adapters apart."""
    details = [("Architecture", architecture_of(settings))]
    for key, label in (("reduction_factor", "Reduction factor"), ("non_linearity", "Non-linearity"),
                       ("scaling", "Scaling"), ("inv_adapter", "Invertible adapter")):  # fmt: skip
        value = settings.get(key)
        if value not in (None, "", False, {}, []):
            text = ", ".join(f"{k}: {v}" for k, v in value.items()) if isinstance(value, dict) else str(value)
            details.append((label, text))
    return details


def _hybrid_details(parts: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """One line per part, in the order they apply, with the field that matters most for it."""
    details = []
    for index, part in enumerate(parts, start=1):
        what = str(part.get("method"))
        if part.get("num_virtual_tokens"):
            what += f", {part['num_virtual_tokens']} virtual tokens"
        elif part.get("rank"):
            what += f", rank {part['rank']}"
        details.append((f"Part {index}: {part.get('path')}/", what))
    return details

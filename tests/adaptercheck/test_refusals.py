"""Each kind of bad upload is refused with its own code, kind and a message naming the culprit."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from adaptercheck import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    AdapterValidationError,
    Limits,
    validate_adapter,
)
from tests.adaptercheck.builders import (
    BASE_NAME,
    adapter,
    as_files,
    edit_config,
    edit_weights,
    raw_safetensors,
    with_weights,
)

Q0 = "base_model.model.model.layers.0.self_attn.q_proj"
V1 = "base_model.model.model.layers.1.self_attn.v_proj"
MANIFEST = {
    f"model.layers.{i}.self_attn.{p}": shape
    for i in range(2)
    for p, shape in (("q_proj", [64, 64]), ("k_proj", [32, 64]), ("v_proj", [32, 64]), ("o_proj", [64, 64]))
}


@dataclass
class Case:
    code: str
    kind: str
    build: Callable[[], dict[str, bytes]]
    kwargs: dict[str, Any]
    mentions: str


def _torch_save_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buffer)
    return buffer.getvalue()


def _set(name: str, value: torch.Tensor) -> Callable[[dict[str, torch.Tensor]], None]:
    return lambda tensors: tensors.__setitem__(name, value)


def _poison(name: str, value: float, dtype: torch.dtype) -> Callable[[dict[str, torch.Tensor]], None]:
    def change(tensors: dict[str, torch.Tensor]) -> None:
        for key in tensors:
            tensors[key] = tensors[key].to(dtype)
        tensors[name] = tensors[name].clone()
        tensors[name][1, 3] = value

    return change


F32x2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}

CASES: dict[str, Case] = {
    # --- safetensors structure
    "truncated_header": Case("truncated_header", "content", lambda: with_weights(b"\x10\x00\x00"), {}, WEIGHTS_NAME),
    "header_over_cap": Case(
        "header_too_large", "size", lambda: adapter("lora"), {"limits": Limits(max_header_size=64)}, "64-byte limit"
    ),
    "header_beyond_file": Case(
        "header_length_beyond_file",
        "content",
        lambda: with_weights((10_000).to_bytes(8, "little") + b"{}"),
        {},
        "10000",
    ),
    "header_not_json": Case(
        "header_not_json",
        "content",
        lambda: with_weights(raw_safetensors(None, header_bytes=b"{not json}")),
        {},
        "JSON",
    ),
    "duplicate_key": Case(
        "duplicate_key",
        "content",
        lambda: with_weights(
            raw_safetensors(
                None,
                bytes(8),
                header_bytes=b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},'
                b' "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}',
            )
        ),
        {},
        "'a'",
    ),
    "unknown_dtype": Case(
        "unknown_dtype",
        "content",
        lambda: with_weights(raw_safetensors({"a": {**F32x2, "dtype": "F128"}}, bytes(8))),
        {},
        "F128",
    ),
    "bad_shape": Case(
        "bad_shape",
        "content",
        lambda: with_weights(raw_safetensors({"a": {**F32x2, "shape": [-2]}}, bytes(8))),
        {},
        "'a'",
    ),
    "bad_metadata": Case(
        "bad_metadata",
        "content",
        lambda: with_weights(raw_safetensors({"__metadata__": {"x": 1}, "a": F32x2}, bytes(8))),
        {},
        "__metadata__",
    ),
    "offsets_outside": Case(
        "offsets_out_of_bounds",
        "content",
        lambda: with_weights(raw_safetensors({"a": {**F32x2, "data_offsets": [8, 16]}}, bytes(8))),
        {},
        "'a'",
    ),
    "overlap": Case(
        "overlapping_tensors",
        "content",
        lambda: with_weights(
            raw_safetensors(
                {"a": {**F32x2, "data_offsets": [0, 8]}, "b": {**F32x2, "data_offsets": [4, 12]}}, bytes(12)
            )
        ),
        {},
        "'b'",
    ),
    "size_vs_shape": Case(
        "tensor_size_mismatch",
        "content",
        lambda: with_weights(raw_safetensors({"a": {**F32x2, "shape": [3], "data_offsets": [0, 8]}}, bytes(8))),
        {},
        "12 bytes",
    ),
    "gap": Case(
        "unindexed_bytes",
        "content",
        lambda: with_weights(raw_safetensors({"a": {**F32x2, "data_offsets": [4, 12]}}, bytes(12))),
        {},
        "[0, 4)",
    ),
    "trailing_bytes": Case(
        "unindexed_bytes",
        "content",
        lambda: with_weights(raw_safetensors({"a": F32x2}, bytes(8) + b"evil")),
        {},
        "4 trailing",
    ),
    "empty_weights": Case("empty_adapter", "content", lambda: with_weights(raw_safetensors({})), {}, WEIGHTS_NAME),
    # --- values
    "nan_f32": Case(
        "non_finite",
        "content",
        lambda: edit_weights(adapter("lora"), _poison(f"{Q0}.lora_B.weight", float("nan"), torch.float32)),
        {},
        "NaN",
    ),
    "inf_bf16": Case(
        "non_finite",
        "content",
        lambda: edit_weights(adapter("lora"), _poison(f"{V1}.lora_A.weight", float("inf"), torch.bfloat16)),
        {},
        "Inf",
    ),
    "neg_inf_f16": Case(
        "non_finite",
        "content",
        lambda: edit_weights(adapter("lora"), _poison(f"{Q0}.lora_A.weight", float("-inf"), torch.float16)),
        {},
        "Inf",
    ),
    # --- files
    "pickled_bin": Case(
        "pickle_refused",
        "request",
        lambda: {**adapter("lora"), "adapter_model.bin": _torch_save_bytes()},
        {},
        "safe_serialization=True",
    ),
    "pickled_only": Case(
        "pickle_refused",
        "request",
        lambda: {CONFIG_NAME: adapter("lora")[CONFIG_NAME], "adapter_model.bin": _torch_save_bytes()},
        {},
        "adapter_model.bin",
    ),
    "pickle_disguised": Case("pickle_refused", "request", lambda: with_weights(_torch_save_bytes()), {}, "torch.save"),
    "adapters_library_pickle": Case(
        "pickle_refused",
        "request",
        lambda: {
            "adapter_config.json": b'{"config": {"architecture": "bottleneck"}}',
            "pytorch_adapter.bin": _torch_save_bytes(),
        },
        {},
        "use_safetensors=True",
    ),
    "traversal_dotdot": Case("bad_filename", "request", lambda: {**adapter("lora"), "../x": b"x"}, {}, "'../x'"),
    "traversal_absolute": Case(
        "bad_filename", "request", lambda: {**adapter("lora"), "/etc/passwd": b"x"}, {}, "absolute"
    ),
    "traversal_nested": Case("bad_filename", "request", lambda: {**adapter("lora"), "a/../../b": b"x"}, {}, "'..'"),
    "traversal_backslash": Case("bad_filename", "request", lambda: {**adapter("lora"), "..\\..\\x": b"x"}, {}, "'..'"),
    "duplicate_filename": Case(
        "duplicate_filename",
        "request",
        lambda: {**adapter("lora"), "README.md": b"a", "readme.md": b"b"},
        {},
        "same path",
    ),
    "missing_config": Case(
        "missing_config",
        "request",
        lambda: {WEIGHTS_NAME: adapter("lora")[WEIGHTS_NAME], "x/adapter_config.json": b"{}"},
        {},
        "x/adapter_config.json",
    ),
    "missing_weights": Case(
        "missing_weights", "request", lambda: {CONFIG_NAME: adapter("lora")[CONFIG_NAME]}, {}, WEIGHTS_NAME
    ),
    "file_too_large": Case(
        "file_too_large", "size", lambda: adapter("lora"), {"limits": Limits(max_file_size=1000)}, "at most 1000"
    ),
    "version_too_large": Case(
        "version_too_large", "size", lambda: adapter("lora"), {"limits": Limits(max_version_size=5000)}, "per-version"
    ),
    "too_many_files": Case(
        "too_many_files", "size", lambda: adapter("lora"), {"limits": Limits(max_files=2)}, "at most 2"
    ),
    # --- config
    "config_not_json": Case(
        "config_not_json", "content", lambda: {**adapter("lora"), CONFIG_NAME: b"{'r': 4}"}, {}, CONFIG_NAME
    ),
    "rank_zero": Case(
        "bad_config", "content", lambda: edit_config(adapter("lora"), lambda c: c.update(r=0)), {}, "'r'"
    ),
    "alpha_bool": Case(
        "bad_config",
        "content",
        lambda: edit_config(adapter("lora"), lambda c: c.update(lora_alpha=True)),
        {},
        "lora_alpha",
    ),
    "unknown_peft_type": Case(
        "unknown_peft_type",
        "content",
        lambda: edit_config(adapter("lora"), lambda c: c.update(peft_type="LOAR")),
        {},
        "'LOAR'",
    ),
    "unsupported_peft_type": Case(
        "unsupported_peft_type",
        "content",
        lambda: edit_config(adapter("lora"), lambda c: c.update(peft_type="HRA")),
        {},
        "HRA",
    ),
    "missing_peft_type": Case(
        "missing_peft_type",
        "content",
        lambda: edit_config(adapter("lora"), lambda c: c.pop("peft_type")),
        {},
        "bottleneck",
    ),
    "method_mismatch": Case("method_mismatch", "content", lambda: adapter("lora"), {"method": "ia3"}, "'ia3'"),
    "dora_claimed_as_lora": Case("method_mismatch", "content", lambda: adapter("dora"), {"method": "lora"}, "use_dora"),
    "unknown_method": Case("unknown_method", "request", lambda: adapter("lora"), {"method": "lora2"}, "'lora2'"),
    "base_model_mismatch": Case(
        "base_model_mismatch",
        "content",
        lambda: edit_config(adapter("lora"), lambda c: c.update(base_model_name_or_path="org/other-model")),
        {"base_model": BASE_NAME},
        "'org/other-model'",
    ),
    # --- tensors vs config
    "A_wrong_rank": Case(
        "shape_mismatch",
        "content",
        lambda: edit_weights(adapter("lora"), _set(f"{Q0}.lora_A.weight", torch.ones(3, 64))),
        {},
        "(3, 64)",
    ),
    "B_wrong_rank": Case(
        "shape_mismatch",
        "content",
        lambda: edit_weights(adapter("lora"), _set(f"{V1}.lora_B.weight", torch.ones(32, 5))),
        {},
        "v_proj",
    ),
    "unpaired_A": Case(
        "unpaired_lora",
        "content",
        lambda: edit_weights(adapter("lora"), lambda t: t.pop(f"{V1}.lora_B.weight")),
        {},
        "layers.1.self_attn.v_proj",
    ),
    "untargeted": Case(
        "untargeted_module",
        "content",
        lambda: edit_weights(
            adapter("lora"),
            lambda t: t.update(
                {
                    "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight": torch.ones(4, 64),
                    "base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight": torch.ones(32, 4),
                }
            ),
        ),
        {},
        "k_proj",
    ),
    "unexpected_tensor": Case(
        "unexpected_tensor",
        "content",
        lambda: edit_weights(adapter("lora"), _set("model.secret", torch.ones(2))),
        {},
        "'model.secret'",
    ),
    "dora_without_magnitude": Case(
        "missing_tensor",
        "content",
        lambda: edit_weights(adapter("dora"), lambda t: t.pop(f"{Q0}.lora_magnitude_vector")),
        {},
        "lora_magnitude_vector",
    ),
    "conv_lora": Case(
        "unsupported_layer",
        "content",
        lambda: edit_weights(
            adapter("lora"),
            lambda t: t.update(
                {f"{Q0}.lora_A.weight": torch.ones(4, 64, 1, 1), f"{Q0}.lora_B.weight": torch.ones(64, 4, 1, 1)}
            ),
        ),
        {},
        "convolution",
    ),
    "prompt_wrong_tokens": Case(
        "shape_mismatch",
        "content",
        lambda: edit_config(adapter("prompt_tuning"), lambda c: c.update(num_virtual_tokens=7)),
        {},
        "num_virtual_tokens=7",
    ),
    "ia3_wrong_orientation": Case(
        "shape_mismatch",
        "content",
        lambda: edit_weights(
            adapter("ia3"), _set("base_model.model.model.layers.0.mlp.down_proj.ia3_l", torch.ones(128, 1))
        ),
        {},
        "(1, in)",
    ),
    "loha_missing_part": Case(
        "unpaired_lora",
        "content",
        lambda: edit_weights(adapter("loha"), lambda t: t.pop(f"{V1}.hada_w2_b")),
        {},
        "hada_w2_b",
    ),
    "lokr_wrong_rank": Case(
        "shape_mismatch",
        "content",
        lambda: edit_weights(
            adapter("lokr"), _set("base_model.model.model.layers.0.mlp.down_proj.lokr_w2_a", torch.zeros(16, 3))
        ),
        {},
        "r=2",
    ),
    # --- tensors vs base model manifest
    "ia3_vs_manifest": Case(
        "base_shape_mismatch",
        "content",
        lambda: adapter("ia3"),
        {
            "manifest": {
                **MANIFEST,
                "model.layers.0.mlp.down_proj": [64, 100],
                "model.layers.1.mlp.down_proj": [64, 128],
            }
        },
        "down_proj",
    ),
    "module_not_in_manifest": Case(
        "unknown_module",
        "content",
        lambda: adapter("lora"),
        {"manifest": {k.replace("layers.1.", "layer.1."): v for k, v in MANIFEST.items()}},
        "Did you mean",
    ),
    "B_wrong_out_vs_base": Case(
        "base_shape_mismatch",
        "content",
        lambda: edit_weights(adapter("lora"), _set(f"{V1}.lora_B.weight", torch.ones(64, 4))),
        {"manifest": MANIFEST},
        "model.layers.1.self_attn.v_proj",
    ),
    "A_wrong_in_vs_base": Case(
        "base_shape_mismatch",
        "content",
        lambda: adapter("lora"),
        {"manifest": {**MANIFEST, "model.layers.0.self_attn.q_proj": [64, 96]}},
        "(64, 96)",
    ),
}


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_bad_upload_is_refused(case_id: str) -> None:
    case = CASES[case_id]
    files = as_files(case.build())
    with pytest.raises(AdapterValidationError) as info:
        validate_adapter(files, **case.kwargs)
    error = info.value
    assert (error.code, error.kind) == (case.code, case.kind), error.message
    assert case.mentions in error.message


def test_enough_distinct_codes() -> None:
    assert len({case.code for case in CASES.values()}) >= 15


def test_header_error_names_the_file() -> None:
    contents = adapter("lora")
    contents["extra.safetensors"] = raw_safetensors({"a": F32x2}, bytes(4))
    with pytest.raises(AdapterValidationError) as info:
        validate_adapter(as_files(contents))
    assert info.value.code == "offsets_out_of_bounds" and info.value.path == "extra.safetensors"


def test_declared_size_must_match_received_bytes() -> None:
    files = as_files(adapter("lora"))
    handle, size = files[CONFIG_NAME]
    files[CONFIG_NAME] = (handle, size + 1)
    with pytest.raises(AdapterValidationError) as info:
        validate_adapter(files)
    assert (info.value.code, info.value.kind) == ("file_size_mismatch", "request")


def test_config_json_must_be_strict() -> None:
    contents = adapter("lora")
    contents[CONFIG_NAME] = contents[CONFIG_NAME].replace(b'"r": 4', b'"r": 4, "r": 8')
    with pytest.raises(AdapterValidationError) as info:
        validate_adapter(as_files(contents))
    assert info.value.code == "config_not_json" and "'r'" in info.value.message
    contents[CONFIG_NAME] = json.dumps(
        {**json.loads(adapter("lora")[CONFIG_NAME]), "lora_dropout": float("nan")}
    ).encode()
    with pytest.raises(AdapterValidationError) as info:
        validate_adapter(as_files(contents))
    assert info.value.code == "config_not_json"

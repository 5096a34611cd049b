"""The building blocks: file names, safetensors headers, finiteness, configs, manifests."""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import pytest
import torch
from safetensors.torch import save as st_save

from adaptercheck import (
    AdapterValidationError,
    Limits,
    TensorInfo,
    build_manifest_from_safetensors_headers,
    check_finite,
    infer_method,
    normalize_filename,
    parse_safetensors_header,
    validate_adapter_config,
)
from tests.adaptercheck.builders import raw_safetensors

# --- file names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("adapter_config.json", "adapter_config.json"),
        ("docs/README.md", "docs/README.md"),
        ("docs\\notes.txt", "docs/notes.txt"),
        ("e\u0301t\u00e9.md", "\u00e9t\u00e9.md"),  # NFD input becomes NFC
        (".gitattributes", ".gitattributes"),
        ("a/b/c/d.txt", "a/b/c/d.txt"),
    ],
)
def test_normalize_filename_accepts(raw: str, clean: str) -> None:
    assert normalize_filename(raw) == clean


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "../x",
        "/etc/passwd",
        "a/../../b",
        "..\\..\\x",
        "\\\\server\\share\\x",
        "C:/x.json",
        "./a.json",
        "a/./b.json",
        "a//b.json",
        "a/",
        "...",
        "a/b/c/d/e.txt",
        "x" * 256,
        "a\x00b",
        "a\nb",
        "\u202etxt.exe",
        "CON.txt",
        "a:b",
        "trailing. ",
        "name.",
    ],
)
def test_normalize_filename_refuses(raw: str) -> None:
    with pytest.raises(AdapterValidationError) as info:
        normalize_filename(raw)
    assert (info.value.code, info.value.kind) == ("bad_filename", "request")
    assert repr(raw) in info.value.message


# --- safetensors header ------------------------------------------------------------------------------


def _parse(data: bytes, **kwargs: Any) -> dict[str, TensorInfo]:
    return parse_safetensors_header(io.BytesIO(data), len(data), **kwargs)


def test_parse_real_safetensors() -> None:
    data = st_save({"w": torch.zeros(3, 2), "b": torch.zeros(4, dtype=torch.bfloat16), "e": torch.zeros(0)})
    tensors = _parse(data)
    assert tensors["w"] == TensorInfo("w", "F32", (3, 2), tensors["w"].start, tensors["w"].start + 24)
    assert tensors["b"].dtype == "BF16" and tensors["b"].shape == (4,)
    assert tensors["e"].shape == (0,) and tensors["e"].start == tensors["e"].end


def test_header_padding_and_metadata_are_accepted() -> None:
    header = {"__metadata__": {"format": "pt"}, "a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}
    encoded = json.dumps(header).encode() + b"    "
    assert set(_parse(raw_safetensors(None, b"\x01\x02", header_bytes=encoded))) == {"a"}


@pytest.mark.parametrize(
    ("header_bytes", "data", "code"),
    [
        (b"[]", b"", "header_not_json"),
        (b"\xff{}", b"", "header_not_json"),
        (b'{"a": NaN}', b"", "header_not_json"),
        (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}}', bytes(4), "bad_tensor_entry"),
        (b'{"a": {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}}', bytes(4), "bad_shape"),
        (b'{"a": {"dtype": "F32", "shape": [true], "data_offsets": [0, 1]}}', bytes(1), "bad_shape"),
        (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}', bytes(4), "bad_offsets"),
        (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}', bytes(4), "bad_offsets"),
        (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}}', bytes(4), "bad_offsets"),
        (b'{"a\\u0000": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}', bytes(1), "bad_tensor_name"),
        (b'{"__metadata__": [], "a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}', bytes(1), "bad_metadata"),
        (
            b'{"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}, "b": {"dtype": "U8", "shape": [0], "data_offsets": [1, 1]}}',
            bytes(2),
            "overlapping_tensors",
        ),
        (b'{"a": {"dtype": "F4", "shape": [2], "data_offsets": [0, 1]}}', bytes(1), "unknown_dtype"),
    ],
)
def test_header_refusals(header_bytes: bytes, data: bytes, code: str) -> None:
    with pytest.raises(AdapterValidationError) as info:
        _parse(raw_safetensors(None, data, header_bytes=header_bytes))
    assert info.value.code == code, info.value.message


def test_header_cap_is_checked_before_reading() -> None:
    class NoRead(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            if n is not None and n > 8:
                raise AssertionError("the oversized header must not be read")
            return super().read(n)

    data = struct.pack("<Q", 1000) + b" " * 1000
    with pytest.raises(AdapterValidationError) as info:
        parse_safetensors_header(NoRead(data), len(data), limits=Limits(max_header_size=999))
    assert (info.value.code, info.value.kind) == ("header_too_large", "size")


# --- finiteness --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.float8_e5m2, torch.float8_e4m3fn]
)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_check_finite_all_float_dtypes(dtype: torch.dtype, bad: float) -> None:
    good = torch.linspace(-3, 3, 37).to(dtype)
    data = st_save({"ok": good, "ints": torch.arange(5)})
    check_finite(io.BytesIO(data), _parse(data), path="x.safetensors")
    poisoned = torch.linspace(-3, 3, 37)
    poisoned[29] = bad
    data = st_save({"ok": good, "p": poisoned.to(dtype)})
    if dtype == torch.float8_e4m3fn and bad == float("inf"):
        # E4M3 "fn" has no infinity: torch saturates or maps it to NaN, both of which are caught or harmless.
        as_bits = poisoned.to(dtype).view(torch.uint8)[29].item()
        if as_bits & 0x7F != 0x7F:
            return
    with pytest.raises(AdapterValidationError) as info:
        check_finite(io.BytesIO(data), _parse(data), path="x.safetensors", chunk_bytes=5)
    assert info.value.code == "non_finite"
    assert "'p'" in info.value.message and "flat index 29" in info.value.message


def test_check_finite_reads_in_bounded_chunks() -> None:
    reads: list[int] = []

    class Counting(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            reads.append(-1 if n is None else n)
            return super().read(n)

    data = st_save({"w": torch.zeros(4096)})
    check_finite(Counting(data), _parse(data), path="w.safetensors", chunk_bytes=1024)
    assert reads and max(reads) <= 1024


def test_check_finite_truncated_data() -> None:
    data = st_save({"w": torch.zeros(16)})
    tensors = _parse(data)
    with pytest.raises(AdapterValidationError) as info:
        check_finite(io.BytesIO(data[:-8]), tensors, path="w.safetensors")
    assert info.value.code == "truncated_data"


# --- adapter_config.json -----------------------------------------------------------------------------

LORA = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj"], "lora_dropout": 0.05}


def _config(**changes: Any) -> bytes:
    config = {**LORA, **changes}
    return json.dumps({k: v for k, v in config.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    "changes",
    [
        {"r": 0},
        {"r": -4},
        {"r": 4.0},
        {"r": ...},
        {"lora_alpha": 0},
        {"lora_alpha": "16"},
        {"target_modules": ...},
        {"target_modules": []},
        {"target_modules": ["q_proj", 3]},
        {"target_modules": "(q_proj"},
        {"target_modules": "(a+)+$"},
        {"rank_pattern": {"q_proj": 0}},
        {"rank_pattern": ["q_proj"]},
        {"alpha_pattern": {"q_proj": -1}},
        {"use_dora": "yes"},
        {"use_rslora": 1},
        {"fan_in_fan_out": None, "lora_bias": "no"},
        {"lora_dropout": 1.0},
        {"lora_dropout": -0.1},
        {"layers_to_transform": [-1]},
        {"modules_to_save": "lm_head"},
        {"base_model_name_or_path": 7},
    ],
)
def test_lora_config_refusals(changes: dict[str, Any]) -> None:
    with pytest.raises(AdapterValidationError) as info:
        validate_adapter_config(_config(**changes))
    assert (info.value.code, info.value.kind) == ("bad_config", "content"), info.value.message


@pytest.mark.parametrize(
    "config",
    [
        {"peft_type": "IA3", "target_modules": ["k_proj"], "feedforward_modules": ["down_proj"]},
        {"peft_type": "IA3", "feedforward_modules": []},
        {"peft_type": "LOHA", "r": 0, "alpha": 8, "target_modules": ["q_proj"]},
        {"peft_type": "LOKR", "r": 4, "target_modules": ["q_proj"]},
        {"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 0},
        {"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 4, "token_dim": -1},
        {"peft_type": "P_TUNING", "num_virtual_tokens": 4, "num_transformer_submodules": 3},
        {"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 4, "token_dim": 8},
        {"peft_type": "ADALORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"], "rank_pattern": {"x": [2]}},
    ],
)
def test_other_config_refusals(config: dict[str, Any]) -> None:
    with pytest.raises(AdapterValidationError) as info:
        validate_adapter_config(json.dumps(config).encode())
    assert info.value.code == "bad_config", info.value.message


def test_config_accepts_unknown_keys_and_non_peft() -> None:
    parsed = validate_adapter_config(_config(some_future_option={"x": 1}, rank_pattern={"layers.0.q_proj": 4}))
    assert parsed["some_future_option"] == {"x": 1}
    assert infer_method(parsed) == "lora"
    assert validate_adapter_config(b'{"bottleneck_size": 64}') == {"bottleneck_size": 64}
    assert validate_adapter_config(b"\xef\xbb\xbf" + _config())["r"] == 8  # a UTF-8 BOM is tolerated


@pytest.mark.parametrize(
    ("raw", "code", "kind"),
    [
        (b"\xff\xfe", "config_not_json", "content"),
        (b"[1, 2]", "config_not_json", "content"),
        (b'{"peft_type": "lora"}', "unknown_peft_type", "content"),
        (b'{"peft_type": 3}', "unknown_peft_type", "content"),
        (b" " * (4 * 1024 * 1024 + 1), "config_too_large", "size"),
    ],
)
def test_config_parse_refusals(raw: bytes, code: str, kind: str) -> None:
    with pytest.raises(AdapterValidationError) as info:
        validate_adapter_config(raw)
    assert (info.value.code, info.value.kind) == (code, kind)


def test_infer_method() -> None:
    assert infer_method({"peft_type": "LORA", "use_dora": True}) == "dora"
    assert infer_method({"peft_type": "LORA", "use_rslora": True}) == "rslora"
    assert infer_method({"peft_type": "IA3"}) == "ia3"
    assert infer_method({}) is None


# --- manifests ---------------------------------------------------------------------------------------


def test_build_manifest_from_headers() -> None:
    shard_1 = _parse(
        st_save({"m.q.weight": torch.zeros(8, 4), "m.norm.weight": torch.zeros(4), "m.q.bias": torch.zeros(8)})
    )
    shard_2 = _parse(st_save({"m.conv.weight": torch.zeros(2, 2, 3, 3), "lm_head.weight": torch.zeros(16, 4)}))
    assert build_manifest_from_safetensors_headers([shard_1, shard_2]) == {"lm_head": [16, 4], "m.q": [8, 4]}
    clash = _parse(st_save({"m.q.weight": torch.zeros(4, 4)}))
    with pytest.raises(AdapterValidationError) as info:
        build_manifest_from_safetensors_headers([shard_1, clash])
    assert info.value.code == "bad_manifest"


def test_module_imports_only_stdlib_and_numpy() -> None:
    # The package is imported in a fresh process: nothing heavy may come with it (the client imports it).
    import pathlib
    import subprocess
    import sys

    import adaptercheck

    script = (
        "import sys, adaptercheck\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'django', 'safetensors', 'peft', 'transformers', 'composer', 'registry'})\n"
        "print(heavy)\n"
    )
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"
    # numpy itself imports pickle, so check the source never reaches for it.
    text = "".join(path.read_text() for path in pathlib.Path(adaptercheck.__file__).parent.rglob("*.py"))
    assert "import pickle" not in text and "np.load" not in text and "allow_pickle" not in text

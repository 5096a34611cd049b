"""Validation of uploaded PEFT adapter files, run before anything is committed.

Only the standard library and numpy are imported, so the web server and a lightweight client can
run exactly the same checks. Nothing here ever unpickles: pickled formats are refused by name (and
``.safetensors`` files by magic bytes), and safetensors files are read as a JSON header plus raw
little-endian bytes viewed as integers.

Every refusal is an :class:`AdapterValidationError` carrying a stable snake_case ``code``, a human
sentence naming the file/tensor/module at fault, the offending ``path`` and an HTTP ``status``.
Validation stops at the first problem found.
"""

from __future__ import annotations

import difflib
import json
import re
import struct
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable

import numpy as np

__all__ = [
    "CONFIG_NAME",
    "DTYPE_SIZES",
    "KNOWN_PEFT_TYPES",
    "METHODS",
    "PICKLE_EXTENSIONS",
    "WEIGHTS_NAME",
    "AdapterValidationError",
    "Limits",
    "TensorInfo",
    "ValidatedAdapter",
    "build_manifest_from_safetensors_headers",
    "check_base_shapes",
    "check_file_list",
    "declared_base_model",
    "check_finite",
    "fits_base",
    "infer_method",
    "how_to_choose_base",
    "looks_like_path",
    "match_base_model",
    "normalize_filename",
    "path_leaf",
    "parse_safetensors_header",
    "validate_adapter",
    "validate_adapter_config",
    "with_base_model",
]

METHODS = (
    "lora",
    "qlora",
    "rslora",
    "dora",
    "ia3",
    "prompt_tuning",
    "prefix_tuning",
    "p_tuning",
    "loha",
    "lokr",
    "adalora",
    "bottleneck",
    "bitfit",
)
PICKLE_EXTENSIONS = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# These formats can also execute code on load (numpy object arrays, joblib and dill dumps are pickles).
_OTHER_PICKLE_CAPABLE = (".npy", ".npz", ".joblib", ".dill")

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"

# Bytes per element. Sub-byte formats (F4, F6_*) are left out on purpose: their sizes do not fit the
# "numel * itemsize" rule and no PEFT adapter is saved in them.
DTYPE_SIZES: dict[str, int] = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}

FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"})

# (little-endian unsigned view, exponent mask, value meaning "not finite"). Checking bits instead of
# converting to float works for formats numpy cannot represent (BF16, FP8) and never warns.
_NONFINITE_BITS: dict[str, tuple[str, int, int]] = {
    "F64": ("<u8", 0x7FF0_0000_0000_0000, 0x7FF0_0000_0000_0000),
    "F32": ("<u4", 0x7F80_0000, 0x7F80_0000),
    "F16": ("<u2", 0x7C00, 0x7C00),
    "BF16": ("<u2", 0x7F80, 0x7F80),
    "F8_E5M2": ("u1", 0x7C, 0x7C),
    # E4M3 "fn" has no infinities; its only NaN encoding is all exponent and mantissa bits set.
    "F8_E4M3": ("u1", 0x7F, 0x7F),
}
# Mantissa bits: an all-ones exponent with zero mantissa is an infinity rather than a NaN.
_MANTISSA_BITS = {"F64": 0x000F_FFFF_FFFF_FFFF, "F32": 0x007F_FFFF, "F16": 0x03FF, "BF16": 0x007F, "F8_E5M2": 0x03}

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
}
_PROMPT_TYPES = frozenset({"PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING"})
_NON_PEFT_METHODS = frozenset({"bottleneck", "bitfit"})

MAX_CONFIG_SIZE = 4 * 1024 * 1024
MAX_FILENAME_LENGTH = 255
MAX_PATH_DEPTH = 4  # path components, e.g. "a/b/c/file.json"
MAX_TENSOR_NAME_LENGTH = 1024
MAX_REGEX_LENGTH = 1024
_WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(1, 10)} | {f"lpt{i}" for i in range(1, 10)}
)
# Refused so that a file stored here can be downloaded onto any OS unchanged.
_FORBIDDEN_FILENAME_CHARS = frozenset('<>:"|?*')
_PEFT_PREFIX = "base_model.model."


class AdapterValidationError(ValueError):
    """An upload is refused; ``code`` is stable for clients, ``message`` is for humans."""

    def __init__(
        self, code: str, message: str, *, path: str | None = None, status: int = 422, candidates: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.path = path
        self.status = status
        # Base models that would fit, for unknown_base_model and ambiguous_base_model.
        self.candidates = tuple(candidates)

    def __repr__(self) -> str:
        return (
            f"AdapterValidationError(code={self.code!r}, status={self.status}, path={self.path!r}, "
            f"message={self.message!r})"
        )

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {"code": self.code, "message": self.message, "path": self.path}
        if self.candidates:
            found["candidates"] = list(self.candidates)
        return found


@dataclass(frozen=True)
class Limits:
    max_file_size: int = 2 * 1024**3
    max_version_size: int = 4 * 1024**3
    max_header_size: int = 100 * 1024 * 1024
    max_files: int = 64


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a safetensors file; ``start``/``end`` are relative to the data section."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class ValidatedAdapter:
    config: dict[str, Any]
    peft_type: str
    method: str
    rank: int | None
    lora_alpha: float | None
    target_modules: list[str] | str | None
    base_model: str | None
    tensors: dict[str, TensorInfo]
    # Module name -> shape of the base weight it modifies: (out, in) for Linear, (num_embeddings,
    # embedding_dim) for Embedding. LoRA family only (lora/dora/rslora/qlora, adalora, loha, lokr).
    modules: dict[str, tuple[int, int]]
    total_size: int
    files: tuple[str, ...] = field(default=())
    # IA3 only: module -> ("out"|"in", size) of the base features its vector scales.
    scaled: dict[str, tuple[str, int]] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Small helpers


def _fail(code: str, message: str, path: str | None, status: int = 422) -> AdapterValidationError:
    return AdapterValidationError(code, message, path=path, status=status)


def _is_int(value: Any) -> bool:
    # bool is an int subclass; JSON true must never pass as a rank.
    return type(value) is int


def _is_number(value: Any) -> bool:
    if type(value) is not int and type(value) is not float:
        return False
    return value == value and value not in (float("inf"), float("-inf"))


def _shape_str(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _read_exact(fileobj: BinaryIO, n: int) -> bytes:
    # Raw streams may return short reads; keep reading until n bytes or end of file.
    chunks: list[bytes] = []
    remaining = n
    while remaining > 0:
        chunk = fileobj.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class _DuplicateKey(Exception):
    # Deliberately not a ValueError so it is not confused with ordinary JSON syntax errors.
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicate_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text} overflows a double")
    return value


def _strict_json_loads(text: str) -> Any:
    """json.loads refusing duplicate keys, NaN/Infinity literals and overflowing numbers."""
    return json.loads(
        text, object_pairs_hook=_no_duplicate_pairs, parse_constant=_refuse_constant, parse_float=_finite_float
    )


# Best effort against catastrophic backtracking: user regexes run on the server against module names
# that the same user controls, and Python's re has no timeout.
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*(?:[*+]|\{\d*,?\d*\})(?:[^()\\]|\\.)*\)(?:[*+]|\{\d*,?\d*\})")


def _check_regex(pattern: str, what: str, path: str, *, wrap: Callable[[str], str] = lambda p: p) -> None:
    if len(pattern) > MAX_REGEX_LENGTH:
        raise _fail(
            "bad_config",
            f"{path}: {what} is a regular expression of {len(pattern)} characters; at most {MAX_REGEX_LENGTH} are "
            "allowed.",
            path,
        )
    if _NESTED_QUANTIFIER.search(pattern):
        raise _fail(
            "bad_config",
            f"{path}: {what} {pattern!r} has a quantified group containing a quantifier, which risks catastrophic "
            "backtracking; simplify it.",
            path,
        )
    try:
        re.compile(wrap(pattern))
    except re.error as exc:
        raise _fail(
            "bad_config",
            f"{path}: {what} {pattern!r} is not a valid regular expression ({exc}).",
            path,
        ) from None


# --------------------------------------------------------------------------------------------------
# File names


def normalize_filename(name: str) -> str:
    """Return ``name`` as a clean relative POSIX path, or raise ``bad_filename`` (400).

    Backslashes count as separators so Windows-style traversal (``..\\x``) is caught too. Hidden
    files and folders (``.env``, ``.git/config``) are refused, as clients skip them, except the
    root ``.gitattributes`` Hugging Face repos carry; so are ``.``/``..`` segments, dots-only
    segments, empty segments, control/invisible characters, characters NFKC would change
    (fullwidth look-alikes), Windows-reserved names and characters, more than ``MAX_PATH_DEPTH``
    components and more than ``MAX_FILENAME_LENGTH`` characters.
    """

    def bad(reason: str) -> AdapterValidationError:
        return _fail(
            "bad_filename",
            f"File name {name!r} is not allowed: {reason}.",
            name if isinstance(name, str) else None,
            400,
        )

    if not isinstance(name, str):
        raise bad("it must be a string")
    nfc = unicodedata.normalize("NFC", name)
    if not nfc.strip():
        raise bad("it is empty")
    if len(nfc) > MAX_FILENAME_LENGTH:
        raise bad(f"it is {len(nfc)} characters long, over the {MAX_FILENAME_LENGTH}-character limit")
    for ch in nfc:
        # Category C covers NUL and other control characters, bidi overrides, surrogates and unassigned code points.
        if unicodedata.category(ch).startswith("C"):
            raise bad(f"it contains the control or invisible character U+{ord(ch):04X}")
    if unicodedata.normalize("NFKC", nfc) != nfc:
        raise bad("it contains characters that stand for others (NFKC changes it), such as fullwidth forms")
    posix = nfc.replace("\\", "/")
    if posix.startswith("/"):
        raise bad("absolute paths are refused; use a path relative to the adapter folder")
    if re.match(r"[A-Za-z]:", posix):
        raise bad("drive letters are refused; use a path relative to the adapter folder")
    segments = posix.split("/")
    for segment in segments:
        if segment in (".", ".."):
            raise bad(f"the path segment {segment!r} could escape or alias the adapter folder")
        if segment == "":
            raise bad("it has an empty path segment (a leading, doubled or trailing slash)")
        if set(segment) == {"."}:
            raise bad(f"the path segment {segment!r} is made only of dots")
        if segment.startswith(".") and posix != ".gitattributes":
            raise bad(f"{segment!r} is hidden: hidden files and folders are not pushed")
    for segment in segments:
        bad_chars = sorted(set(segment) & _FORBIDDEN_FILENAME_CHARS)
        if bad_chars:
            raise bad(f"it contains the character(s) {' '.join(bad_chars)}, which are not portable")
        if segment != segment.strip() or segment.endswith("."):
            raise bad(f"the path segment {segment!r} starts or ends with a space or ends with a dot")
        if segment.split(".", 1)[0].lower() in _WINDOWS_RESERVED:
            raise bad(f"the path segment {segment!r} is a reserved device name on Windows")
    if len(segments) > MAX_PATH_DEPTH:
        raise bad(f"it is nested {len(segments)} levels deep; at most {MAX_PATH_DEPTH} path components are allowed")
    return "/".join(segments)


# --------------------------------------------------------------------------------------------------
# safetensors


def _parse_header(fileobj: BinaryIO, size: int, limits: Limits, path: str) -> tuple[dict[str, TensorInfo], int]:
    """Parse and check a safetensors header; return its tensors and the absolute data offset."""
    if size < 8:
        raise _fail(
            "truncated_header",
            f"{path}: the file is {size} bytes long, too short for the 8-byte safetensors header length.",
            path,
        )
    fileobj.seek(0)
    prefix = _read_exact(fileobj, 8)
    if len(prefix) < 8:
        raise _fail("truncated_header", f"{path}: could only read {len(prefix)} of the 8 header-length bytes.", path)
    (header_len,) = struct.unpack("<Q", prefix)
    if header_len > size - 8:
        raise _fail(
            "header_length_beyond_file",
            f"{path}: the safetensors header declares {header_len} bytes but only {size - 8} bytes follow the "
            "length prefix; the file is truncated or not safetensors.",
            path,
        )
    if header_len > limits.max_header_size:
        raise _fail(
            "header_too_large",
            f"{path}: the safetensors JSON header is {header_len} bytes, over the {limits.max_header_size}-byte "
            "limit.",
            path,
            413,
        )
    raw = _read_exact(fileobj, header_len)
    if len(raw) < header_len:
        raise _fail(
            "truncated_header",
            f"{path}: the header is cut short ({len(raw)} of {header_len} bytes could be read).",
            path,
        )
    # The format allows the header to be padded with trailing spaces for alignment.
    if not raw.startswith(b"{"):
        raise _fail(
            "header_not_json",
            f"{path}: the safetensors header does not start with '{{'; this is not a safetensors file.",
            path,
        )
    try:
        header = _strict_json_loads(raw.decode("utf-8"))
    except _DuplicateKey as exc:
        raise _fail(
            "duplicate_key",
            f"{path}: the safetensors header lists the key {exc.key!r} more than once.",
            path,
        ) from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _fail(
            "header_not_json",
            f"{path}: the safetensors header is not valid UTF-8 JSON ({exc}).",
            path,
        ) from None
    if not isinstance(header, dict):
        raise _fail(
            "header_not_json",
            f"{path}: the safetensors header must be a JSON object, not {type(header).__name__}.",
            path,
        )

    data_len = size - 8 - header_len
    tensors: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise _fail("bad_metadata", f"{path}: '__metadata__' must map strings to strings.", path)
            continue
        shown = name if len(name) <= 200 else name[:200] + "..."
        has_control = any(unicodedata.category(c).startswith("C") for c in name)
        if not name or len(name) > MAX_TENSOR_NAME_LENGTH or has_control:
            raise _fail(
                "bad_tensor_name",
                f"{path}: tensor name {shown!r} is empty, longer than {MAX_TENSOR_NAME_LENGTH} characters or has "
                "control characters.",
                path,
            )
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            raise _fail(
                "bad_tensor_entry",
                f"{path}: tensor {shown!r} must have exactly the keys dtype, shape and data_offsets (found {keys}).",
                path,
            )
        dtype = entry["dtype"]
        if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
            raise _fail(
                "unknown_dtype",
                f"{path}: tensor {shown!r} has dtype {dtype!r}; known dtypes are {', '.join(DTYPE_SIZES)}.",
                path,
            )
        shape = entry["shape"]
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise _fail(
                "bad_shape",
                f"{path}: tensor {shown!r} has shape {shape!r}; a shape must be a list of non-negative integers.",
                path,
            )
        offsets = entry["data_offsets"]
        well_formed = isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)
        if not well_formed or not 0 <= offsets[0] <= offsets[1]:
            raise _fail(
                "bad_offsets",
                f"{path}: tensor {shown!r} has data_offsets {offsets!r}; expected [begin, end] integers with 0 <= "
                "begin <= end.",
                path,
            )
        begin, end = offsets
        if end > data_len:
            raise _fail(
                "offsets_out_of_bounds",
                f"{path}: tensor {shown!r} spans bytes [{begin}, {end}) of the data section, which is only "
                f"{data_len} bytes long.",
                path,
            )
        numel = 1
        for d in shape:
            numel *= d
        expected = numel * DTYPE_SIZES[dtype]
        if end - begin != expected:
            raise _fail(
                "tensor_size_mismatch",
                f"{path}: tensor {shown!r} is {dtype} with shape {_shape_str(shape)}, i.e. {expected} bytes, but "
                f"its data_offsets cover {end - begin} bytes.",
                path,
            )
        tensors[name] = TensorInfo(name=name, dtype=dtype, shape=tuple(shape), start=begin, end=end)

    # The official format requires the data buffer to be exactly and fully indexed: no overlaps
    # (two names aliasing the same bytes) and no gaps (room to smuggle unindexed payloads).
    cursor = 0
    previous: TensorInfo | None = None
    for info in sorted(tensors.values(), key=lambda t: (t.start, t.end)):
        if info.start < cursor and previous is not None:
            raise _fail(
                "overlapping_tensors",
                f"{path}: tensors {previous.name!r} [{previous.start}, {previous.end}) and {info.name!r} "
                f"[{info.start}, {info.end}) overlap.",
                path,
            )
        if info.start > cursor:
            raise _fail(
                "unindexed_bytes",
                f"{path}: bytes [{cursor}, {info.start}) of the data section belong to no tensor; safetensors files "
                "must be fully indexed.",
                path,
            )
        cursor = info.end
        previous = info
    if cursor != data_len:
        raise _fail(
            "unindexed_bytes",
            f"{path}: {data_len - cursor} trailing bytes after the last tensor belong to no tensor; safetensors "
            "files must be fully indexed.",
            path,
        )
    return tensors, 8 + header_len


def parse_safetensors_header(
    fileobj: BinaryIO, size: int, *, limits: Limits = Limits(), path: str = WEIGHTS_NAME
) -> dict[str, TensorInfo]:
    """Parse a safetensors header without touching tensor data; refuse anything malformed.

    Gaps and trailing bytes after the last tensor are refused (``unindexed_bytes``), as the format
    requires a fully indexed buffer. The file position afterwards is unspecified.
    """
    tensors, _ = _parse_header(fileobj, size, limits, path)
    return tensors


def check_finite(
    fileobj: BinaryIO,
    tensors: Mapping[str, TensorInfo],
    *,
    path: str,
    chunk_bytes: int = 8 * 1024 * 1024,
    data_offset: int | None = None,
) -> None:
    """Refuse NaN/Inf in floating tensors (``non_finite``), reading at most ``chunk_bytes`` at a time.

    ``data_offset`` is the absolute offset of the data section; when omitted it is read from the
    file's 8-byte header length.
    """
    if data_offset is None:
        fileobj.seek(0)
        prefix = _read_exact(fileobj, 8)
        if len(prefix) < 8:
            raise _fail("truncated_header", f"{path}: too short for a safetensors header.", path)
        data_offset = 8 + struct.unpack("<Q", prefix)[0]
    for info in sorted(tensors.values(), key=lambda t: t.start):
        bits = _NONFINITE_BITS.get(info.dtype)
        if bits is None or info.nbytes == 0:
            continue
        view, mask, nonfinite = bits
        itemsize = DTYPE_SIZES[info.dtype]
        step = max(itemsize, chunk_bytes - chunk_bytes % itemsize)
        fileobj.seek(data_offset + info.start)
        done = 0
        while done < info.nbytes:
            want = min(step, info.nbytes - done)
            chunk = _read_exact(fileobj, want)
            if len(chunk) < want:
                raise _fail(
                    "truncated_data",
                    f"{path}: the data of tensor {info.name!r} is cut short ({done + len(chunk)} of {info.nbytes} "
                    "bytes).",
                    path,
                )
            values = np.frombuffer(chunk, dtype=view)
            hits = (values & _typed(view, mask)) == _typed(view, nonfinite)
            if hits.any():
                index = int(np.flatnonzero(hits)[0])
                mantissa = _MANTISSA_BITS.get(info.dtype)
                kind = "Inf" if mantissa is not None and int(values[index]) & mantissa == 0 else "NaN"
                raise _fail(
                    "non_finite",
                    f"{path}: tensor {info.name!r} ({info.dtype}, shape {_shape_str(info.shape)}) contains {kind} "
                    f"at flat index {done // itemsize + index}; non-finite weights are refused.",
                    path,
                )
            done += want


def _typed(view: str, value: int) -> np.generic:
    # A typed scalar keeps numpy from promoting the comparison to a wider or signed type.
    return np.dtype(view).type(value)


# --------------------------------------------------------------------------------------------------
# adapter_config.json


def _cfg_fail(path: str, message: str) -> AdapterValidationError:
    return _fail("bad_config", f"{path}: {message}", path)


def _check_pos_int(cfg: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> None:
    value = cfg.get(key)
    if value is None:
        if required:
            raise _cfg_fail(path, f"'{key}' is required for peft_type {cfg.get('peft_type')}.")
        return
    if not _is_int(value) or value <= 0:
        raise _cfg_fail(path, f"'{key}' must be a positive integer, got {value!r}.")


def _check_pos_number(cfg: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> None:
    value = cfg.get(key)
    if value is None:
        if required:
            raise _cfg_fail(path, f"'{key}' is required for peft_type {cfg.get('peft_type')}.")
        return
    if not _is_number(value) or value <= 0:
        raise _cfg_fail(path, f"'{key}' must be a positive number, got {value!r}.")


def _check_bool(cfg: Mapping[str, Any], key: str, path: str) -> None:
    value = cfg.get(key)
    if value is not None and not isinstance(value, bool):
        raise _cfg_fail(path, f"'{key}' must be true or false, got {value!r}.")


def _check_fraction(cfg: Mapping[str, Any], key: str, path: str) -> None:
    value = cfg.get(key)
    if value is not None and (not _is_number(value) or not 0 <= value < 1):
        raise _cfg_fail(path, f"'{key}' must be a number in [0, 1), got {value!r}.")


def _check_module_spec(cfg: Mapping[str, Any], key: str, path: str, *, required: bool) -> None:
    """A PEFT module selector: a list of names (suffix match) or one regex string (full match)."""
    value = cfg.get(key)
    if value is None:
        if required:
            raise _cfg_fail(
                path,
                f"'{key}' is required for peft_type {cfg.get('peft_type')}: list the module names or give a regular "
                "expression.",
            )
        return
    if isinstance(value, str):
        if not value:
            raise _cfg_fail(path, f"'{key}' must not be an empty string.")
        _check_regex(value, f"'{key}'", path)
        return
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _cfg_fail(
            path,
            f"'{key}' must be a list of non-empty module names or a regular expression string, got {value!r}.",
        )
    if required and not value:
        raise _cfg_fail(path, f"'{key}' must not be an empty list.")


def _check_str_list(cfg: Mapping[str, Any], key: str, path: str, *, regex_each: bool = False) -> None:
    value = cfg.get(key)
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _cfg_fail(path, f"'{key}' must be a list of non-empty strings, got {value!r}.")
    if regex_each:
        for item in value:
            _check_regex(item, f"'{key}' entry", path, wrap=lambda p: rf"(^|.*\.){p}($|\..*)")


def _check_pattern_dict(cfg: Mapping[str, Any], key: str, path: str, kind: str) -> None:
    value = cfg.get(key)
    if value is None:
        return
    if not isinstance(value, dict):
        raise _cfg_fail(
            path,
            f"'{key}' must be an object mapping module patterns to values, got {type(value).__name__}.",
        )
    for pattern, item in value.items():
        if not pattern:
            raise _cfg_fail(path, f"'{key}' has an empty pattern.")
        _check_regex(pattern, f"'{key}' key", path, wrap=lambda p: rf"(.*\.)?({p})$")
        if kind == "int" and (not _is_int(item) or item <= 0):
            raise _cfg_fail(path, f"'{key}'[{pattern!r}] must be a positive integer, got {item!r}.")
        if kind == "number" and (not _is_number(item) or item <= 0):
            raise _cfg_fail(path, f"'{key}'[{pattern!r}] must be a positive number, got {item!r}.")
        if kind == "mask" and not (isinstance(item, list) and all(isinstance(b, bool) or b in (0, 1) for b in item)):
            raise _cfg_fail(path, f"'{key}'[{pattern!r}] must be a list of booleans (an AdaLoRA rank mask).")


def _check_common_selectors(cfg: Mapping[str, Any], path: str) -> None:
    _check_str_list(cfg, "modules_to_save", path, regex_each=True)
    exclude = cfg.get("exclude_modules")
    if isinstance(exclude, str):
        _check_regex(exclude, "'exclude_modules'", path)
    else:
        _check_str_list(cfg, "exclude_modules", path)
    layers = cfg.get("layers_to_transform")
    if layers is not None and not (
        (_is_int(layers) and layers >= 0) or (isinstance(layers, list) and all(_is_int(i) and i >= 0 for i in layers))
    ):
        raise _cfg_fail(
            path,
            f"'layers_to_transform' must be a non-negative integer or a list of them, got {layers!r}.",
        )
    pattern = cfg.get("layers_pattern")
    if isinstance(pattern, str):
        _check_regex(pattern, "'layers_pattern'", path)
    else:
        _check_str_list(cfg, "layers_pattern", path, regex_each=True)
    _check_bool(cfg, "fan_in_fan_out", path)
    _check_bool(cfg, "inference_mode", path)


def validate_adapter_config(raw: bytes, *, path: str = CONFIG_NAME) -> dict[str, Any]:
    """Parse adapter_config.json and check the fields its peft_type depends on.

    Codes: ``config_too_large`` (413), ``config_not_json``, ``unknown_peft_type``, ``bad_config``.
    A config without peft_type is returned as-is (non-PEFT methods such as bottleneck or bitfit);
    unknown extra keys are allowed because PEFT adds new ones every release.
    """
    if len(raw) > MAX_CONFIG_SIZE:
        raise _fail(
            "config_too_large",
            f"{path} is {len(raw)} bytes; at most {MAX_CONFIG_SIZE} are allowed.",
            path,
            413,
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _fail("config_not_json", f"{path} is not valid UTF-8 ({exc}).", path) from None
    try:
        cfg = _strict_json_loads(text)
    except _DuplicateKey as exc:
        raise _fail("config_not_json", f"{path} lists the key {exc.key!r} more than once.", path) from None
    except (ValueError, RecursionError) as exc:
        raise _fail("config_not_json", f"{path} is not valid JSON ({exc}).", path) from None
    if not isinstance(cfg, dict):
        raise _fail("config_not_json", f"{path} must contain a JSON object, not {type(cfg).__name__}.", path)

    for key in ("base_model_name_or_path", "task_type", "revision"):
        if cfg.get(key) is not None and not isinstance(cfg[key], str):
            raise _cfg_fail(path, f"'{key}' must be a string or null, got {cfg[key]!r}.")
    peft_type = cfg.get("peft_type")
    if peft_type is None:
        return cfg
    if not isinstance(peft_type, str) or peft_type not in KNOWN_PEFT_TYPES:
        hint = ""
        if isinstance(peft_type, str):
            close = difflib.get_close_matches(peft_type.upper(), sorted(KNOWN_PEFT_TYPES), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _fail("unknown_peft_type", f"{path}: peft_type {peft_type!r} is not a PEFT method{hint}.", path)

    if peft_type in ("LORA", "ADALORA"):
        _check_pos_int(cfg, "r", path, required=True)
        _check_pos_number(cfg, "lora_alpha", path, required=True)
        target = cfg.get("target_modules")
        if target is None:
            raise _cfg_fail(
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
                raise _cfg_fail(path, "AdaLoRA does not support use_dora.")
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
                raise _cfg_fail(
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
    elif peft_type in _PROMPT_TYPES:
        _check_pos_int(cfg, "num_virtual_tokens", path, required=True)
        for key in ("token_dim", "num_attention_heads", "encoder_hidden_size"):
            _check_pos_int(cfg, key, path)
        _check_pos_int(cfg, "num_layers", path, required=peft_type == "PREFIX_TUNING")
        submodules = cfg.get("num_transformer_submodules")
        if submodules is not None and (not _is_int(submodules) or submodules not in (1, 2)):
            raise _cfg_fail(path, f"'num_transformer_submodules' must be 1 or 2, got {submodules!r}.")
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


def _resolve_method(config: Mapping[str, Any], claimed: str | None, path: str) -> str:
    peft_type = config.get("peft_type") or ""
    if claimed is not None and claimed not in METHODS:
        raise _fail("unknown_method", f"Method {claimed!r} is not one of: {', '.join(METHODS)}.", None, 400)
    if peft_type and peft_type not in _PEFT_TYPE_METHOD:
        raise _fail(
            "unsupported_peft_type",
            f"{path}: peft_type {peft_type} is a PEFT method this registry does not accept; supported: "
            f"{', '.join(sorted(_PEFT_TYPE_METHOD))}.",
            path,
        )
    inferred = infer_method(config)
    if inferred is None:
        if claimed in _NON_PEFT_METHODS:
            return claimed
        if claimed is None:
            raise _fail(
                "missing_peft_type",
                f"{path} has no peft_type, so the method cannot be inferred; declare method 'bottleneck' or "
                "'bitfit' for non-PEFT adapters.",
                path,
            )
        raise _fail(
            "method_mismatch",
            f"Method {claimed!r} needs a PEFT adapter_config.json with a peft_type, but {path} has none.",
            path,
        )
    if claimed is None or claimed == inferred:
        return inferred
    if claimed == "qlora" and peft_type == "LORA":
        # QLoRA adapters are LoRA adapters trained on a quantized base: the files look the same.
        return claimed
    variant = {"dora": "use_dora=true", "rslora": "use_rslora=true"}.get(inferred, f"peft_type {peft_type}")
    raise _fail(
        "method_mismatch",
        f"Method {claimed!r} was declared but {path} describes a {inferred!r} adapter ({variant}).",
        path,
    )


# --------------------------------------------------------------------------------------------------
# PEFT module selection semantics (mirrors peft's check_target_module_exists and get_pattern_key)


def _spec_matches(spec: list[str] | str | None, key: str) -> bool:
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
    if not _spec_matches(spec, key):
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


def _rank_for(config: Mapping[str, Any], module: str) -> tuple[int, str]:
    pattern, value = _pattern_value(config.get("rank_pattern"), module)
    if pattern is not None:
        return int(value), f"rank_pattern[{pattern!r}]={value}"
    return int(config["r"]), f"r={config['r']}"


def _is_saved_whole(config: Mapping[str, Any], local_name: str) -> bool:
    return any(re.match(rf"(^|.*\.){m}($|\..*)", local_name) for m in config.get("modules_to_save") or ())


_TRAINABLE_TOKENS_RE = re.compile(r"(?P<module>.+)\.token_adapter\.trainable_tokens_delta(?:\.[^.]+)?")


def _is_allowed_extra(config: Mapping[str, Any], local_name: str) -> bool:
    """Tensors PEFT saves beside the adapter itself: modules_to_save copies and trainable-token deltas."""
    if _is_saved_whole(config, local_name):
        return True
    if config.get("trainable_token_indices") is None:
        return False
    return _TRAINABLE_TOKENS_RE.fullmatch(local_name) is not None


# --------------------------------------------------------------------------------------------------
# Tensor checks per peft_type


@dataclass
class _Ctx:
    config: dict[str, Any]
    tensors: dict[str, TensorInfo]
    path: str
    config_path: str = CONFIG_NAME

    def local(self, name: str) -> str:
        return name[len(_PEFT_PREFIX):] if name.startswith(_PEFT_PREFIX) else name

    def unexpected(self, name: str, expected: str) -> AdapterValidationError:
        return _fail(
            "unexpected_tensor",
            f"{self.path}: tensor {name!r} is not part of a {self.config.get('peft_type') or 'this'} adapter "
            f"(expected {expected}, or a module listed in modules_to_save).",
            self.path,
        )

    def check_targeted(self, module: str) -> None:
        reason = _untargeted_reason(self.config, module)
        if reason is not None:
            raise _fail(
                "untargeted_module",
                f"{self.path}: module {module!r} has adapter weights but {self.config_path} would not adapt it: "
                f"{reason}.",
                self.path,
            )

    def shape_error(
        self, module: str, part: str, expected: str, found: Sequence[int], why: str
    ) -> AdapterValidationError:
        return _fail(
            "shape_mismatch",
            f"{self.path}: module {module!r}: {part} should be {expected} ({why}) but is {_shape_str(found)}.",
            self.path,
        )


def _group(
    ctx: _Ctx, pattern: re.Pattern[str], expected: str, *, part_of: Callable[[re.Match[str]], str] | None = None
) -> dict[str, dict[str, TensorInfo]]:
    """Group tensors by module using ``pattern`` (groups: module, kind); other tensors must be allowed extras."""
    modules: dict[str, dict[str, TensorInfo]] = {}
    for name, info in ctx.tensors.items():
        local = ctx.local(name)
        match = pattern.fullmatch(local)
        if match is None:
            if _is_allowed_extra(ctx.config, local):
                continue
            raise ctx.unexpected(name, expected)
        part = part_of(match) if part_of else match.group("kind")
        parts = modules.setdefault(match.group("module"), {})
        if part in parts:
            raise _fail(
                "duplicate_tensor",
                f"{ctx.path}: module {match.group('module')!r} has two {part} tensors ({parts[part].name!r} and "
                f"{name!r}).",
                ctx.path,
            )
        parts[part] = info
    if not modules:
        raise _fail(
            "empty_adapter",
            f"{ctx.path} holds no {ctx.config.get('peft_type')} adapter tensors ({expected}).",
            ctx.path,
        )
    return modules


def _require_parts(
    ctx: _Ctx, module: str, parts: Mapping[str, TensorInfo], needed: Sequence[str], family: str
) -> None:
    missing = [p for p in needed if p not in parts]
    if missing:
        have = ", ".join(sorted(parts)) or "nothing"
        raise _fail(
            "unpaired_lora",
            f"{ctx.path}: {family} module {module!r} has {have} but no {' / '.join(missing)}; each adapted module "
            f"needs {' and '.join(needed)}.",
            ctx.path,
        )


def _require_2d(ctx: _Ctx, module: str, parts: Mapping[str, TensorInfo], names: Sequence[str]) -> None:
    for part in names:
        if part in parts and len(parts[part].shape) != 2:
            shape = parts[part].shape
            what = "convolution" if len(shape) in (3, 4, 5) else f"{len(shape)}-D"
            raise _fail(
                "unsupported_layer",
                f"{ctx.path}: module {module!r}: {part} has shape {_shape_str(shape)}, which looks like a {what} "
                "adapter; only Linear and Embedding layers are supported.",
                ctx.path,
            )


_LORA_RE = re.compile(
    r"(?P<module>.+)\.(?:"
    r"(?P<kind>lora_A|lora_B)(?:\.[^.]+)?\.(?P<param>weight|bias)"
    r"|(?P<emb>lora_embedding_A|lora_embedding_B)(?:\.[^.]+)?"
    r"|(?P<mag>lora_magnitude_vector)(?:\.[^.]+)?(?:\.weight)?"
    r"|(?P<base>base_layer)\.weight)"
)


def _lora_part(match: re.Match[str]) -> str:
    if match.group("kind"):
        return f"{match.group('kind')}.{match.group('param')}"
    return match.group("emb") or match.group("mag") or "base_layer.weight"


def _check_lora(ctx: _Ctx) -> dict[str, tuple[int, int]]:
    cfg = ctx.config
    grouped = _group(ctx, _LORA_RE, "<module>.lora_A.weight / <module>.lora_B.weight pairs", part_of=_lora_part)
    use_dora = bool(cfg.get("use_dora"))
    lora_bias = bool(cfg.get("lora_bias"))
    shapes: dict[str, tuple[int, int]] = {}
    for module in sorted(grouped):
        parts = grouped[module]
        embedding = "lora_embedding_A" in parts or "lora_embedding_B" in parts
        a_key, b_key = ("lora_embedding_A", "lora_embedding_B") if embedding else ("lora_A.weight", "lora_B.weight")
        allowed = {a_key, b_key, "lora_magnitude_vector"} | ({"base_layer.weight"} if embedding else {"lora_B.bias"})
        for part, info in parts.items():
            if part not in allowed:
                raise ctx.unexpected(info.name, f"{a_key} and {b_key} for module {module!r}")
        _require_parts(ctx, module, parts, (a_key, b_key), "LoRA")
        ctx.check_targeted(module)
        _require_2d(ctx, module, parts, (a_key, b_key))
        a, b = parts[a_key].shape, parts[b_key].shape
        rank, why = _rank_for(cfg, module)
        if a[0] != rank:
            raise ctx.shape_error(module, a_key, f"({rank}, in)", a, why)
        if b[1] != rank:
            raise ctx.shape_error(module, b_key, f"(out, {rank})", b, why)
        out, inp = b[0], a[1]
        if embedding:
            # lora_embedding_A is (r, num_embeddings) and lora_embedding_B is (embedding_dim, r).
            shapes[module] = (inp, out)
            base = parts.get("base_layer.weight")
            if base is not None and base.shape != (inp, out):
                raise ctx.shape_error(
                    module,
                    "base_layer.weight",
                    _shape_str((inp, out)),
                    base.shape,
                    "num_embeddings x embedding_dim from the LoRA tensors",
                )
        else:
            shapes[module] = (out, inp)
        magnitude = parts.get("lora_magnitude_vector")
        if use_dora and magnitude is None:
            raise _fail(
                "missing_tensor",
                f"{ctx.path}: module {module!r} has no lora_magnitude_vector although use_dora is true.",
                ctx.path,
            )
        if magnitude is not None:
            if not use_dora:
                raise ctx.unexpected(magnitude.name, "no DoRA magnitude vectors because use_dora is false")
            sizes = (out, inp) if embedding else (out,)
            if len(magnitude.shape) != 1 or magnitude.shape[0] not in sizes:
                raise ctx.shape_error(
                    module,
                    "lora_magnitude_vector",
                    _shape_str((out,)),
                    magnitude.shape,
                    "one magnitude per output feature",
                )
        bias = parts.get("lora_B.bias")
        if lora_bias and not embedding and bias is None:
            raise _fail(
                "missing_tensor",
                f"{ctx.path}: module {module!r} has no lora_B.bias although lora_bias is true.",
                ctx.path,
            )
        if bias is not None:
            if not lora_bias:
                raise ctx.unexpected(bias.name, "no lora_B.bias because lora_bias is false")
            if bias.shape != (out,):
                raise ctx.shape_error(
                    module,
                    "lora_B.bias",
                    _shape_str((out,)),
                    bias.shape,
                    "one bias per output feature",
                )
    return shapes


_ADALORA_RE = re.compile(r"(?P<module>.+)\.(?P<kind>lora_A|lora_B|lora_E)(?:\.[^.]+)?")


def _check_adalora(ctx: _Ctx) -> tuple[dict[str, tuple[int, int]], int]:
    """Return module shapes and the largest rank actually stored (AdaLoRA prunes ranks per module)."""
    cfg = ctx.config
    grouped = _group(ctx, _ADALORA_RE, "<module>.lora_A / lora_B / lora_E triples")
    # AdaLoRA's rank_pattern maps "<module>.lora_E[.<adapter>]" to the kept-rank mask.
    masks: dict[str, int] = {}
    for key, mask in (cfg.get("rank_pattern") or {}).items():
        module = key.split(".lora_E")[0]
        masks[module[len(_PEFT_PREFIX):] if module.startswith(_PEFT_PREFIX) else module] = sum(bool(b) for b in mask)
    bound = int(cfg.get("init_r") or cfg["r"])
    shapes: dict[str, tuple[int, int]] = {}
    top = 0
    for module in sorted(grouped):
        parts = grouped[module]
        _require_parts(ctx, module, parts, ("lora_A", "lora_B", "lora_E"), "AdaLoRA")
        ctx.check_targeted(module)
        _require_2d(ctx, module, parts, ("lora_A", "lora_B", "lora_E"))
        a, b, e = parts["lora_A"].shape, parts["lora_B"].shape, parts["lora_E"].shape
        rank = a[0]
        if module in masks and rank != masks[module]:
            raise ctx.shape_error(module, "lora_A", f"({masks[module]}, in)", a, "rank_pattern keeps that many ranks")
        if rank > bound:
            raise ctx.shape_error(module, "lora_A", f"at most ({bound}, in)", a, f"init_r={bound}")
        if b[1] != rank:
            raise ctx.shape_error(module, "lora_B", f"(out, {rank})", b, "lora_A's rank")
        if e != (rank, 1):
            raise ctx.shape_error(module, "lora_E", _shape_str((rank, 1)), e, "lora_A's rank")
        shapes[module] = (b[0], a[1])
        top = max(top, rank)
    return shapes, top


_LOHA_RE = re.compile(
    r"(?P<module>.+)\.(?P<kind>hada_w1_a|hada_w1_b|hada_w2_a|hada_w2_b|hada_t1|hada_t2)(?:\.[^.]+)?",
)


def _check_loha(ctx: _Ctx) -> dict[str, tuple[int, int]]:
    cfg = ctx.config
    grouped = _group(ctx, _LOHA_RE, "<module>.hada_w1_a / hada_w1_b / hada_w2_a / hada_w2_b")
    shapes: dict[str, tuple[int, int]] = {}
    for module in sorted(grouped):
        parts = grouped[module]
        _require_parts(ctx, module, parts, ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"), "LoHa")
        ctx.check_targeted(module)
        if "hada_t1" in parts or "hada_t2" in parts:
            raise _fail(
                "unsupported_layer",
                f"{ctx.path}: module {module!r} is a convolution LoHa (hada_t1/hada_t2); only Linear layers are "
                "supported.",
                ctx.path,
            )
        _require_2d(ctx, module, parts, ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"))
        rank, why = _rank_for(cfg, module)
        out, inp = parts["hada_w1_a"].shape[0], parts["hada_w1_b"].shape[1]
        expected = {
            "hada_w1_a": (out, rank),
            "hada_w2_a": (out, rank),
            "hada_w1_b": (rank, inp),
            "hada_w2_b": (rank, inp),
        }
        for part, shape in expected.items():
            if parts[part].shape != shape:
                raise ctx.shape_error(
                    module,
                    part,
                    _shape_str(shape),
                    parts[part].shape,
                    f"{why}, out={out}, in={inp}",
                )
        shapes[module] = (out, inp)
    return shapes


_LOKR_RE = re.compile(
    r"(?P<module>.+)\.(?P<kind>lokr_w1|lokr_w1_a|lokr_w1_b|lokr_w2|lokr_w2_a|lokr_w2_b|lokr_t2)(?:\.[^.]+)?",
)


def _check_lokr(ctx: _Ctx) -> dict[str, tuple[int, int]]:
    cfg = ctx.config
    grouped = _group(ctx, _LOKR_RE, "<module>.lokr_w1 (or lokr_w1_a/_b) and lokr_w2 (or lokr_w2_a/_b)")
    shapes: dict[str, tuple[int, int]] = {}
    for module in sorted(grouped):
        parts = grouped[module]
        ctx.check_targeted(module)
        if "lokr_t2" in parts:
            raise _fail(
                "unsupported_layer",
                f"{ctx.path}: module {module!r} is a convolution LoKr (lokr_t2); only Linear layers are supported.",
                ctx.path,
            )
        _require_2d(ctx, module, parts, tuple(parts))
        rank, why = _rank_for(cfg, module)
        factors: list[tuple[int, int]] = []
        for w in ("lokr_w1", "lokr_w2"):
            full, left, right = parts.get(w), parts.get(f"{w}_a"), parts.get(f"{w}_b")
            if full is not None and left is None and right is None:
                factors.append((full.shape[0], full.shape[1]))
                continue
            if full is not None or left is None or right is None:
                have = ", ".join(sorted(p for p in parts if p.startswith(w))) or "nothing"
                raise _fail(
                    "unpaired_lora",
                    f"{ctx.path}: LoKr module {module!r} has {have} for {w}; it needs either {w} or both {w}_a and "
                    f"{w}_b.",
                    ctx.path,
                )
            if left.shape[1] != rank:
                raise ctx.shape_error(module, f"{w}_a", f"(rows, {rank})", left.shape, why)
            if right.shape[0] != rank:
                raise ctx.shape_error(module, f"{w}_b", f"({rank}, cols)", right.shape, why)
            factors.append((left.shape[0], right.shape[1]))
        (o1, i1), (o2, i2) = factors
        shapes[module] = (o1 * o2, i1 * i2)
    return shapes


_IA3_RE = re.compile(r"(?P<module>.+)\.(?P<kind>ia3_l)(?:\.[^.]+)?")


def _check_ia3(ctx: _Ctx) -> dict[str, tuple[str, int]]:
    """Return module -> ("out"|"in", size): IA3 scales outputs, or inputs of feedforward modules."""
    cfg = ctx.config
    grouped = _group(ctx, _IA3_RE, "<module>.ia3_l vectors")
    scaled: dict[str, tuple[str, int]] = {}
    for module in sorted(grouped):
        info = grouped[module]["ia3_l"]
        ctx.check_targeted(module)
        shape = info.shape
        if len(shape) != 2:
            raise _fail(
                "unsupported_layer",
                f"{ctx.path}: module {module!r}: ia3_l has shape {_shape_str(shape)}; only Linear layers are "
                "supported.",
                ctx.path,
            )
        if _spec_matches(cfg.get("feedforward_modules"), module):
            if shape[0] != 1:
                raise ctx.shape_error(module, "ia3_l", "(1, in)", shape, "feedforward modules scale their input")
            scaled[module] = ("in", shape[1])
        else:
            if shape[1] != 1:
                raise ctx.shape_error(
                    module,
                    "ia3_l",
                    "(out, 1)",
                    shape,
                    "non-feedforward modules scale their output",
                )
            scaled[module] = ("out", shape[0])
    return scaled


def _check_prompt(ctx: _Ctx) -> None:
    cfg = ctx.config
    peft_type = cfg["peft_type"]
    found: TensorInfo | None = None
    for name, info in ctx.tensors.items():
        if name == "prompt_embeddings":
            found = info
        elif not _is_allowed_extra(cfg, ctx.local(name)):
            raise ctx.unexpected(name, "a single 'prompt_embeddings' tensor")
    if found is None:
        raise _fail(
            "missing_tensor",
            f"{ctx.path} has no 'prompt_embeddings' tensor, which every {peft_type} adapter stores.",
            ctx.path,
        )
    shape = found.shape
    if len(shape) != 2:
        raise _fail(
            "shape_mismatch",
            f"{ctx.path}: 'prompt_embeddings' should be 2-D but is {_shape_str(shape)}.",
            ctx.path,
        )
    tokens = cfg["num_virtual_tokens"]
    submodules = cfg.get("num_transformer_submodules") or 1
    token_dim = cfg.get("token_dim")
    if peft_type == "PREFIX_TUNING":
        # Prefix tuning stores key and value prefixes for every layer: num_layers * 2 * token_dim columns.
        rows, why_rows = (tokens,), f"num_virtual_tokens={tokens}"
        cols: tuple[int, ...] = ()
        if token_dim is not None:
            cols = (cfg["num_layers"] * 2 * token_dim,)
            if cfg.get("prefix_projection"):
                # With prefix_projection peft may store the pre-projection embedding (token_dim wide).
                cols += (token_dim,)
        why_cols = f"num_layers={cfg['num_layers']} x 2 x token_dim={token_dim}"
    else:
        rows = (tokens * submodules,)
        why_rows = f"num_virtual_tokens={tokens} x num_transformer_submodules={submodules}"
        cols, why_cols = ((token_dim,), f"token_dim={token_dim}") if token_dim is not None else ((), "")
    if shape[0] not in rows or (cols and shape[1] not in cols):
        expected = f"({rows[0]}, {cols[0] if cols else 'token_dim'})"
        raise _fail(
            "shape_mismatch",
            f"{ctx.path}: 'prompt_embeddings' should be {expected} ({why_rows}{', ' + why_cols if cols else ''}) "
            f"but is {_shape_str(shape)}.",
            ctx.path,
        )


# --------------------------------------------------------------------------------------------------
# Base model checks


def _hub_id_candidates(value: str) -> set[str]:
    """Normalized forms under which a base_model_name_or_path may name a Hub model."""
    text = value.strip().rstrip("/").replace("\\", "/")
    candidates = {text.casefold()}
    # A Hugging Face cache path ".../models--org--name/snapshots/<sha>" still names "org/name".
    match = re.search(r"models--([^/]+?)--([^/]+)", text)
    if match:
        candidates.add(f"{match.group(1)}/{match.group(2)}".casefold())
    return candidates


def _same_base_model(declared: str, expected: str) -> bool:
    declared_forms = _hub_id_candidates(declared)
    expected_forms = _hub_id_candidates(expected)
    if declared_forms & expected_forms:
        return True
    text = declared.strip().replace("\\", "/")
    looks_local = text.startswith(("/", "./", "../", "~")) or re.match(r"[A-Za-z]:/", text) is not None
    if looks_local:
        # Adapters trained from a local copy record its path; its folder name is the best evidence left.
        last = text.rstrip("/").rsplit("/", 1)[-1].casefold()
        return last == expected.strip().rstrip("/").rsplit("/", 1)[-1].casefold()
    return False


def check_base_shapes(
    validated: ValidatedAdapter, manifest: Mapping[str, Sequence[int]], *, path: str = WEIGHTS_NAME
) -> None:
    """Check the modules a validated adapter changes against a base model's manifest (module ->
    [out, in]); raises unknown_module or base_shape_mismatch naming the first module at fault."""
    # fan_in_fan_out (GPT-2 Conv1D) stores the base weight as (in, out); adapter tensors are unchanged.
    transposed = bool(validated.config.get("fan_in_fan_out"))
    for module, (out, inp) in validated.modules.items():
        base = _manifest_lookup(path, manifest, module)
        expected = (inp, out) if transposed else (out, inp)
        if tuple(base) != expected:
            layout = "(in, out) because fan_in_fan_out is true" if transposed else "(out, in)"
            raise _fail(
                "base_shape_mismatch",
                f"{path}: module {module!r} is {_shape_str(tuple(base))} in the base model but the adapter "
                "implies "
                f"{_shape_str(expected)} {layout}; was it trained on a different base model?",
                path,
            )
    for module, (side, size) in validated.scaled.items():
        base = _manifest_lookup(path, manifest, module)
        index = 1 if side == "in" else 0
        if len(base) != 2 or base[index] != size:
            raise _fail(
                "base_shape_mismatch",
                f"{path}: module {module!r} is {_shape_str(tuple(base))} in the base model but its ia3_l "
                f"vector scales {size} {side}put features.",
                path,
            )


def fits_base(validated: ValidatedAdapter, manifest: Mapping[str, Sequence[int]]) -> bool:
    """Whether every module the adapter changes exists in the manifest with the adapter's shapes.

    An adapter that changes no linear module (prompt tuning) fits any base: only a name tells.
    """
    try:
        check_base_shapes(validated, manifest)
    except AdapterValidationError:
        return False
    return True


def _manifest_lookup(path: str, manifest: Mapping[str, Sequence[int]], module: str) -> Sequence[int]:
    base = manifest.get(module)
    if base is None:
        close = difflib.get_close_matches(module, list(manifest), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise _fail(
            "unknown_module",
            f"{path}: module {module!r} does not exist in the base model.{hint}",
            path,
        )
    return base


_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:[\\/]")


def looks_like_path(value: str) -> bool:
    """Whether a base model value is a filesystem path (PEFT records the folder a user trained
    from) rather than a model id: absolute, relative (./, ../), ~, a Windows drive or UNC path,
    backslashes, or more than the two segments of an `org/name` id."""
    text = value.strip()
    if text.startswith(("/", "./", "../", "~", "\\")) or text in (".", "..") or _WINDOWS_DRIVE.match(text):
        return True
    return "\\" in text or len([part for part in text.split("/") if part]) > 2


def path_leaf(value: str) -> str:
    """The last segment of a path or id, case-folded: `/home/me/Llama-3.1-8B/` -> `llama-3.1-8b`."""
    text = value.strip().replace("\\", "/").rstrip("/")
    return text.rsplit("/", 1)[-1].casefold()


def check_file_list(files: Sequence[tuple[str, int]], limits: Limits = Limits()) -> dict[str, int]:
    """Sizes by normalized path, in the order given: names, duplicates, the config's presence and
    the size caps, all checked without reading a byte (the hub's push pipeline and the client's
    pre-check both start here)."""
    if not files:
        raise _fail("no_files", "no files were sent: push the folder that save_pretrained wrote", None, 400)
    sizes: dict[str, int] = {}
    for raw, size in files:
        path = normalize_filename(raw)
        if path in sizes:
            raise _fail("duplicate_file", f"file {path} was sent twice", path, 400)
        sizes[path] = size
    if CONFIG_NAME not in sizes:
        raise _fail(
            "missing_config", f"{CONFIG_NAME} is missing: push the whole folder that save_pretrained wrote", CONFIG_NAME, 400
        )
    if len(sizes) > limits.max_files:
        raise _fail(
            "too_many_files",
            f"The upload has {len(sizes)} files; at most {limits.max_files} are allowed per version.",
            None,
            413,
        )
    for path, size in sizes.items():
        if size > limits.max_file_size:
            raise _fail(
                "file_too_large", f"{path} is {size} bytes; at most {limits.max_file_size} bytes are allowed per file.", path, 413
            )
    if sum(sizes.values()) > limits.max_version_size:
        raise _fail(
            "version_too_large",
            f"The upload is over {limits.max_version_size} bytes in total; that is the per-version limit.",
            None,
            413,
        )
    return sizes


def declared_base_model(
    *, existing: tuple[str, str] | None, explicit: str | None, card: str | None, config: str | None
) -> str:
    """The base model value a push names, by the hub's rules (its push pipeline and the client's
    pre-check both call this): an existing adapter (its full name, its base model's name) keeps its
    base model; otherwise the first of the explicit value, the model card's `base_model` and the
    config's `base_model_name_or_path`, which may be a path (see match_base_model).

    Raises base_model_change (409) for an explicit other name, base_model_mismatch (422) for a card
    or config naming another one (a path names none), missing_base_model (422) when nothing names one.
    """
    if existing is not None:
        adapter, base = existing
        if explicit and not looks_like_path(explicit) and explicit.casefold() != base.casefold():
            raise _fail("base_model_change", f"{adapter} is an adapter of {base}, not {explicit}", None, 409)
        declared = card or config
        if declared and not looks_like_path(declared) and declared.casefold() != base.casefold():
            source = "the model card's base_model" if card else f"{CONFIG_NAME}'s base_model_name_or_path"
            raise _fail(
                "base_model_mismatch",
                f"{source} says the adapter was trained on {declared!r}, but {adapter} is an adapter of {base!r}",
                CONFIG_NAME,
            )
        return base
    chosen = explicit or card or config
    if not chosen:
        raise _fail(
            "missing_base_model",
            "the base model is unknown: send a 'base_model' field, put base_model in the model card's YAML, "
            f"or set base_model_name_or_path in {CONFIG_NAME}",
            None,
        )
    return chosen


def how_to_choose_base(candidates: Sequence[str]) -> str:
    """The advice of an unknown or ambiguous base model refusal: the three ways to name one."""
    example = candidates[0] if candidates else "org/name"
    listed = f"Registered base models with its shapes: {', '.join(candidates[:10])}. " if candidates else ""
    return (
        f"{listed}Name the base model in one of three ways: the push's base_model field "
        f"(`ahub push --base-model {example}`), `base_model: {example}` in the model card's YAML, or "
        f"base_model_name_or_path in {CONFIG_NAME}. An admin registers new ones (`manage.py register_base_model`)."
    )


def match_base_model(
    path: str,
    validated: ValidatedAdapter | Sequence[ValidatedAdapter],
    manifests: Mapping[str, Mapping[str, Sequence[int]]],
) -> str:
    """The one base model (name -> manifest) whose manifest fits the adapter's shapes (every
    adapter's, for a sequence), for an adapter trained from the local folder `path`; the path's
    last segment (case-insensitive, org ignored) breaks ties. Raises unknown_base_model or
    ambiguous_base_model, naming the candidates."""
    adapters = [validated] if isinstance(validated, ValidatedAdapter) else list(validated)
    fitting = sorted(name for name, m in manifests.items() if m and all(fits_base(a, m) for a in adapters))
    if len(fitting) > 1:
        named = [name for name in fitting if path_leaf(name) == path_leaf(path)]
        if len(named) == 1:
            return named[0]
    if len(fitting) == 1:
        return fitting[0]
    if not fitting:
        raise _fail(
            "unknown_base_model",
            f"The adapter was trained from the local folder {path!r}, and no registered base model has its "
            f"shapes. {how_to_choose_base([])}",
            CONFIG_NAME,
        )
    raise AdapterValidationError(
        "ambiguous_base_model",
        f"The adapter was trained from the local folder {path!r}, and {len(fitting)} registered base models have "
        f"its shapes: {', '.join(fitting[:10])}. {how_to_choose_base(fitting)}",
        path=CONFIG_NAME,
        candidates=fitting[:10],
    )


_BASE_KEY = re.compile(r'("base_model_name_or_path"\s*:\s*)("(?:[^"\\]|\\.)*"|null)')


def with_base_model(raw: bytes, name: str) -> bytes:
    """The adapter_config.json bytes with base_model_name_or_path set to `name`; every other byte
    is kept where the key is present, so the rest of the file reads exactly as the user wrote it."""
    config = json.loads(raw)
    if config.get("base_model_name_or_path") == name:
        return raw
    text = raw.decode("utf-8")
    replaced, count = _BASE_KEY.subn(lambda m: m.group(1) + json.dumps(name), text, count=1)
    if count == 1 and json.loads(replaced) == {**config, "base_model_name_or_path": name}:
        return replaced.encode("utf-8")
    # The key is missing (or spelled with escapes): write the config again, as PEFT does.
    return (json.dumps({**config, "base_model_name_or_path": name}, indent=2, sort_keys=True) + "\n").encode()


# --------------------------------------------------------------------------------------------------
# The whole upload


def validate_adapter(
    files: Mapping[str, tuple[BinaryIO, int]],
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
    files: Mapping[str, tuple[BinaryIO, int]],
    *,
    method: str | None,
    manifest: Mapping[str, Sequence[int]] | None,
    base_model: str | None,
    limits: Limits,
) -> ValidatedAdapter:
    # 1. Names and sizes, before reading a single byte of content.
    if len(files) > limits.max_files:
        raise _fail(
            "too_many_files",
            f"The upload has {len(files)} files; at most {limits.max_files} are allowed per version.",
            None,
            413,
        )
    normalized: dict[str, tuple[BinaryIO, int]] = {}
    folded: dict[str, str] = {}
    total = 0
    for raw_name, (fileobj, size) in files.items():
        name = normalize_filename(raw_name)
        # Case-insensitive file systems would merge these on download.
        if name.casefold() in folded:
            raise _fail(
                "duplicate_filename",
                f"Files {folded[name.casefold()]!r} and {raw_name!r} name the same path.",
                name,
                400,
            )
        folded[name.casefold()] = raw_name
        if not _is_int(size) or size < 0:
            raise _fail(
                "file_size_mismatch",
                f"{name}: declared size {size!r} is not a non-negative integer.",
                name,
                400,
            )
        if size > limits.max_file_size:
            raise _fail(
                "file_too_large",
                f"{name} is {size} bytes; at most {limits.max_file_size} bytes are allowed per file.",
                name,
                413,
            )
        total += size
        if total > limits.max_version_size:
            raise _fail(
                "version_too_large",
                f"The upload is over {limits.max_version_size} bytes in total (reached {total} at {name}); that is "
                "the per-version limit.",
                name,
                413,
            )
        fileobj.seek(0, 2)
        actual = fileobj.tell()
        if actual != size:
            raise _fail(
                "file_size_mismatch",
                f"{name}: {size} bytes were declared but {actual} were received.",
                name,
                400,
            )
        fileobj.seek(0)
        normalized[name] = (fileobj, size)

    # 2. Formats that execute code on load never get further.
    for name in normalized:
        lower = name.lower()
        if lower.endswith(PICKLE_EXTENSIONS + _OTHER_PICKLE_CAPABLE):
            raise _fail(
                "pickle_refused",
                f"{name} is a pickle-based format, which can run arbitrary code when loaded; re-save the adapter "
                "with "
                "`model.save_pretrained(path, safe_serialization=True)` and upload adapter_model.safetensors "
                "instead.",
                name,
                400,
            )
    for name, (fileobj, size) in normalized.items():
        if name.lower().endswith(".safetensors") and size >= 9:
            head = _read_exact(fileobj, 9)
            fileobj.seek(0)
            # A real header starts with '{' at byte 8; pickle protocol 2-5 and torch's zip start differently.
            disguised = (head[0] == 0x80 and 2 <= head[1] <= 5) or head.startswith(b"PK\x03\x04")
            if disguised and head[8:9] != b"{":
                raise _fail(
                    "pickle_refused",
                    f"{name} is named .safetensors but contains a pickle or torch.save archive; re-save with "
                    "`model.save_pretrained(path, safe_serialization=True)`.",
                    name,
                    400,
                )

    # 3. Required files.
    if CONFIG_NAME not in normalized:
        nested = [n for n in normalized if n.endswith("/" + CONFIG_NAME)]
        hint = f" Found {nested[0]!r}: upload the adapter folder's contents, not the folder." if nested else ""
        raise _fail("missing_config", f"The upload has no {CONFIG_NAME}.{hint}", CONFIG_NAME, 400)
    if WEIGHTS_NAME not in normalized:
        nested = [n for n in normalized if n.endswith("/" + WEIGHTS_NAME)]
        hint = f" Found {nested[0]!r}: upload the adapter folder's contents, not the folder." if nested else ""
        raise _fail(
            "missing_weights",
            f"The upload has no {WEIGHTS_NAME}; save the adapter with `save_pretrained(path, "
            f"safe_serialization=True)`.{hint}",
            WEIGHTS_NAME,
            400,
        )

    # 4. Content: config, then every safetensors header, then the weights' values.
    config_obj, config_size = normalized[CONFIG_NAME]
    config_obj.seek(0)
    config = validate_adapter_config(_read_exact(config_obj, min(config_size, MAX_CONFIG_SIZE + 1)), path=CONFIG_NAME)
    declared_base = config.get("base_model_name_or_path")
    if base_model and declared_base and not _same_base_model(declared_base, base_model):
        raise _fail(
            "base_model_mismatch",
            f"{CONFIG_NAME} says the adapter was trained on {declared_base!r}, but it is being registered for "
            f"{base_model!r}.",
            CONFIG_NAME,
        )
    resolved = _resolve_method(config, method, CONFIG_NAME)

    weights_obj, weights_size = normalized[WEIGHTS_NAME]
    tensors, data_offset = _parse_header(weights_obj, weights_size, limits, WEIGHTS_NAME)
    for name, (fileobj, size) in normalized.items():
        if name != WEIGHTS_NAME and name.lower().endswith(".safetensors"):
            _parse_header(fileobj, size, limits, name)
    if not tensors:
        raise _fail("empty_adapter", f"{WEIGHTS_NAME} contains no tensors.", WEIGHTS_NAME)
    for info in tensors.values():
        # Adapter weights are trained parameters: an integer or boolean tensor is no adapter's.
        if info.dtype not in FLOAT_DTYPES:
            raise _fail(
                "bad_dtype",
                f"{WEIGHTS_NAME}: tensor {info.name!r} has dtype {info.dtype}; adapter weights are floating point "
                f"({', '.join(sorted(FLOAT_DTYPES))}).",
                WEIGHTS_NAME,
            )
    check_finite(weights_obj, tensors, path=WEIGHTS_NAME, data_offset=data_offset)

    # 5. Tensors against the config, then against the base model.
    ctx = _Ctx(config=config, tensors=tensors, path=WEIGHTS_NAME)
    peft_type = config.get("peft_type") or ""
    modules: dict[str, tuple[int, int]] = {}
    scaled: dict[str, tuple[str, int]] = {}
    rank: int | None = None
    alpha: float | None = None
    if peft_type == "LORA":
        modules = _check_lora(ctx)
        rank = max([int(config["r"]), *(int(v) for v in (config.get("rank_pattern") or {}).values())])
        alpha = float(config["lora_alpha"])
    elif peft_type == "ADALORA":
        modules, rank = _check_adalora(ctx)
        alpha = float(config["lora_alpha"])
    elif peft_type in ("LOHA", "LOKR"):
        modules = _check_loha(ctx) if peft_type == "LOHA" else _check_lokr(ctx)
        rank = max([int(config["r"]), *(int(v) for v in (config.get("rank_pattern") or {}).values())])
        alpha = float(config["alpha"])
    elif peft_type == "IA3":
        scaled = _check_ia3(ctx)
    elif peft_type in _PROMPT_TYPES:
        _check_prompt(ctx)

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
    )
    if manifest is not None:
        check_base_shapes(validated, manifest)
    return validated


# --------------------------------------------------------------------------------------------------
# Base model manifests


def build_manifest_from_safetensors_headers(headers: Iterable[Mapping[str, TensorInfo]]) -> dict[str, list[int]]:
    """Module name -> [out, in] for every 2-D ``*.weight`` tensor of a model's safetensors shards.

    Norms and biases are 1-D and convolutions 4-D, so "2-D weight" selects Linear layers (and
    embeddings, which embedding LoRA needs). Conflicting shapes for one name across shards are refused.
    """
    manifest: dict[str, list[int]] = {}
    for header in headers:
        for name, info in header.items():
            if not name.endswith(".weight") or len(info.shape) != 2:
                continue
            module = name[: -len(".weight")]
            shape = [int(d) for d in info.shape]
            if module in manifest and manifest[module] != shape:
                raise _fail(
                    "bad_manifest",
                    f"Module {module!r} appears with shapes {manifest[module]} and {shape} in different shards.",
                    name,
                )
            manifest[module] = shape
    return dict(sorted(manifest.items()))

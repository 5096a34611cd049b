"""safetensors files read as a JSON header plus raw little-endian bytes: never loaded, never unpickled."""

from __future__ import annotations

import struct
import unicodedata
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import IO

import numpy as np

from adaptercheck._util import DuplicateKey, is_int, read_exact, shape_str, strict_json_loads
from adaptercheck.errors import refuse
from adaptercheck.limits import MAX_TENSOR_NAME_LENGTH, WEIGHTS_NAME, Limits

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


# --------------------------------------------------------------------------------------------------
# safetensors


def parse_header(fileobj: IO[bytes], size: int, limits: Limits, path: str) -> tuple[dict[str, TensorInfo], int]:
    """Parse and check a safetensors header; return its tensors and the absolute data offset."""
    if size < 8:
        raise refuse(
            "truncated_header",
            f"{path}: the file is {size} bytes long, too short for the 8-byte safetensors header length.",
            path,
        )
    fileobj.seek(0)
    prefix = read_exact(fileobj, 8)
    if len(prefix) < 8:
        raise refuse("truncated_header", f"{path}: could only read {len(prefix)} of the 8 header-length bytes.", path)
    (header_len,) = struct.unpack("<Q", prefix)
    if header_len > size - 8:
        raise refuse(
            "header_length_beyond_file",
            f"{path}: the safetensors header declares {header_len} bytes but only {size - 8} bytes follow the "
            "length prefix; the file is truncated or not safetensors.",
            path,
        )
    if header_len > limits.max_header_size:
        raise refuse(
            "header_too_large",
            f"{path}: the safetensors JSON header is {header_len} bytes, over the {limits.max_header_size}-byte limit.",
            path,
            "size",
        )
    raw = read_exact(fileobj, header_len)
    if len(raw) < header_len:
        raise refuse(
            "truncated_header",
            f"{path}: the header is cut short ({len(raw)} of {header_len} bytes could be read).",
            path,
        )
    # The format allows the header to be padded with trailing spaces for alignment.
    if not raw.startswith(b"{"):
        raise refuse(
            "header_not_json",
            f"{path}: the safetensors header does not start with '{{'; this is not a safetensors file.",
            path,
        )
    try:
        header = strict_json_loads(raw.decode("utf-8"))
    except DuplicateKey as exc:
        raise refuse(
            "duplicate_key",
            f"{path}: the safetensors header lists the key {exc.key!r} more than once.",
            path,
        ) from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise refuse(
            "header_not_json",
            f"{path}: the safetensors header is not valid UTF-8 JSON ({exc}).",
            path,
        ) from None
    if not isinstance(header, dict):
        raise refuse(
            "header_not_json",
            f"{path}: the safetensors header must be a JSON object, not {type(header).__name__}.",
            path,
        )

    data_len = size - 8 - header_len
    tensors: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise refuse("bad_metadata", f"{path}: '__metadata__' must map strings to strings.", path)
            continue
        shown = name if len(name) <= 200 else name[:200] + "..."
        has_control = any(unicodedata.category(c).startswith("C") for c in name)
        if not name or len(name) > MAX_TENSOR_NAME_LENGTH or has_control:
            raise refuse(
                "bad_tensor_name",
                f"{path}: tensor name {shown!r} is empty, longer than {MAX_TENSOR_NAME_LENGTH} characters or has "
                "control characters.",
                path,
            )
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            raise refuse(
                "bad_tensor_entry",
                f"{path}: tensor {shown!r} must have exactly the keys dtype, shape and data_offsets (found {keys}).",
                path,
            )
        dtype = entry["dtype"]
        if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
            raise refuse(
                "unknown_dtype",
                f"{path}: tensor {shown!r} has dtype {dtype!r}; known dtypes are {', '.join(DTYPE_SIZES)}.",
                path,
            )
        shape = entry["shape"]
        if not isinstance(shape, list) or not all(is_int(d) and d >= 0 for d in shape):
            raise refuse(
                "bad_shape",
                f"{path}: tensor {shown!r} has shape {shape!r}; a shape must be a list of non-negative integers.",
                path,
            )
        offsets = entry["data_offsets"]
        well_formed = isinstance(offsets, list) and len(offsets) == 2 and all(is_int(o) for o in offsets)
        if not well_formed or not 0 <= offsets[0] <= offsets[1]:
            raise refuse(
                "bad_offsets",
                f"{path}: tensor {shown!r} has data_offsets {offsets!r}; expected [begin, end] integers with 0 <= "
                "begin <= end.",
                path,
            )
        begin, end = offsets
        if end > data_len:
            raise refuse(
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
            raise refuse(
                "tensor_size_mismatch",
                f"{path}: tensor {shown!r} is {dtype} with shape {shape_str(shape)}, i.e. {expected} bytes, but "
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
            raise refuse(
                "overlapping_tensors",
                f"{path}: tensors {previous.name!r} [{previous.start}, {previous.end}) and {info.name!r} "
                f"[{info.start}, {info.end}) overlap.",
                path,
            )
        if info.start > cursor:
            raise refuse(
                "unindexed_bytes",
                f"{path}: bytes [{cursor}, {info.start}) of the data section belong to no tensor; safetensors files "
                "must be fully indexed.",
                path,
            )
        cursor = info.end
        previous = info
    if cursor != data_len:
        raise refuse(
            "unindexed_bytes",
            f"{path}: {data_len - cursor} trailing bytes after the last tensor belong to no tensor; safetensors "
            "files must be fully indexed.",
            path,
        )
    return tensors, 8 + header_len


def parse_safetensors_header(
    fileobj: IO[bytes], size: int, *, limits: Limits = Limits(), path: str = WEIGHTS_NAME
) -> dict[str, TensorInfo]:
    """Parse a safetensors header without touching tensor data; refuse anything malformed.

    Gaps and trailing bytes after the last tensor are refused (``unindexed_bytes``), as the format
    requires a fully indexed buffer. The file position afterwards is unspecified.
    """
    tensors, _ = parse_header(fileobj, size, limits, path)
    return tensors


def check_finite(
    fileobj: IO[bytes],
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
        prefix = read_exact(fileobj, 8)
        if len(prefix) < 8:
            raise refuse("truncated_header", f"{path}: too short for a safetensors header.", path)
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
            chunk = read_exact(fileobj, want)
            if len(chunk) < want:
                raise refuse(
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
                raise refuse(
                    "non_finite",
                    f"{path}: tensor {info.name!r} ({info.dtype}, shape {shape_str(info.shape)}) contains {kind} "
                    f"at flat index {done // itemsize + index}; non-finite weights are refused.",
                    path,
                )
            done += want


def _typed(view: str, value: int) -> np.generic:
    # A typed scalar keeps numpy from promoting the comparison to a wider or signed type.
    return np.dtype(view).type(value)


# --------------------------------------------------------------------------------------------------
# Base model manifests


def build_manifest_from_safetensors_headers(
    headers: Iterable[Mapping[str, TensorInfo]], *, stored_in_out: Collection[str] = ()
) -> dict[str, list[int]]:
    """Module name -> [out, in] for every 2-D ``*.weight`` tensor of a model's safetensors shards.

    Norms and biases are 1-D and convolutions 4-D, so "2-D weight" selects Linear layers (and
    embeddings, which embedding LoRA needs). Conflicting shapes for one name across shards are refused.
    `stored_in_out` names the modules whose weight is stored (in, out) (GPT-2's Conv1D): their
    entries are turned round, so every manifest has one layout whatever the storage.
    """
    manifest: dict[str, list[int]] = {}
    for header in headers:
        for name, info in header.items():
            if not name.endswith(".weight") or len(info.shape) != 2:
                continue
            module = name[: -len(".weight")]
            shape = [int(d) for d in info.shape]
            if module in manifest and manifest[module] != shape:
                raise refuse(
                    "bad_manifest",
                    f"Module {module!r} appears with shapes {manifest[module]} and {shape} in different shards.",
                    name,
                )
            manifest[module] = shape
    for module in stored_in_out:
        if module in manifest:
            manifest[module] = manifest[module][::-1]
    return dict(sorted(manifest.items()))

"""Reading and writing PEFT LoRA adapters (adapter_config.json + adapter_model.safetensors).

Tensors are read lazily through safetensors, one module at a time, so composing adapters of a
7B model never holds more than one module of each input in memory.

PEFT key layout understood here (the adapter name is present in raw state dicts, absent in
files written by `save_pretrained`):

    base_model.model.<module>.lora_A[.<adapter>].weight             (r, d_in) or (r, c_in, *kernel)
    base_model.model.<module>.lora_B[.<adapter>].weight             (d_out, r) or (d_out, r, 1, ...)
    base_model.model.<module>.lora_B[.<adapter>].bias               (d_out,)   when lora_bias=True
    base_model.model.<module>.lora_embedding_A[.<adapter>]          (r, num_embeddings)
    base_model.model.<module>.lora_embedding_B[.<adapter>]          (embedding_dim, r)

Any other `lora_*` tensor belongs to a variant (DoRA's lora_magnitude_vector, ...) and is
reported by `LoraAdapter.unsupported_keys`; every non-LoRA tensor (modules_to_save copies,
trained base biases) is an "extra" tensor.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_save
from safetensors.torch import save_file
from torch import Tensor

from composer.errors import CompositionError
from composer.types import ModuleEntry, ModuleKind, ModuleShape

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
RECIPE_FILE = "composition.json"
PEFT_PREFIX = "base_model.model."

_LORA_KEY = re.compile(
    r"^(?P<module>.+)\.(?P<part>lora_A|lora_B|lora_embedding_A|lora_embedding_B)"
    r"(?:\.(?P<adapter>[^.]+))?(?:\.(?P<param>weight|bias))?$"
)
# A segment starting with "lora_" that is not one of the four factor names above.
_VARIANT_SEGMENT = re.compile(r"(?:^|\.)lora_[A-Za-z0-9_]+(?:\.|$)")

_SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
}
_SAFETENSORS_NAMES = {dtype: name for name, dtype in _SAFETENSORS_DTYPES.items()}
# One metadata key only: safetensors writes several in hash order, which would make identical
# compositions differ byte-wise (the hub stores files by content digest).
_METADATA = {"format": "pt"}


class TensorSource(Protocol):
    """Where an adapter's tensors come from; `get` is the only call that reads data."""

    def keys(self) -> list[str]: ...

    def shape(self, key: str) -> tuple[int, ...]: ...

    def dtype(self, key: str) -> torch.dtype: ...

    def get(self, key: str) -> Tensor: ...

    def close(self) -> None: ...


class SafetensorsSource:
    """Lazy reader over one .safetensors file; the file is memory-mapped on first use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: Any = None
        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                self._keys = list(handle.keys())
                self._shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in self._keys}
                self._dtypes = {k: handle.get_slice(k).get_dtype() for k in self._keys}
        except Exception as exc:  # safetensors raises several unrelated types for corrupt files
            raise CompositionError("bad_input", f"{path} is not a readable safetensors file: {exc}") from None

    def keys(self) -> list[str]:
        return list(self._keys)

    def shape(self, key: str) -> tuple[int, ...]:
        return self._shapes[key]

    def dtype(self, key: str) -> torch.dtype:
        name = self._dtypes[key]
        if name not in _SAFETENSORS_DTYPES:
            raise CompositionError("bad_input", f"{self.path}: tensor {key!r} has unsupported dtype {name}")
        return _SAFETENSORS_DTYPES[name]

    def get(self, key: str) -> Tensor:
        if self._handle is None:
            self._handle = safe_open(str(self.path), framework="pt", device="cpu")
        tensor: Tensor = self._handle.get_tensor(key)
        return tensor

    def close(self) -> None:
        self._handle = None


class MemorySource:
    """Tensors already in memory, e.g. a composition result that has not been saved yet."""

    def __init__(self, tensors: Mapping[str, Tensor]) -> None:
        self._tensors = dict(tensors)

    def keys(self) -> list[str]:
        return list(self._tensors)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._tensors[key].shape)

    def dtype(self, key: str) -> torch.dtype:
        return self._tensors[key].dtype

    def get(self, key: str) -> Tensor:
        return self._tensors[key]

    def close(self) -> None:
        pass


def match_pattern(patterns: Mapping[str, Any], module: str) -> Any | None:
    """Value of the first `rank_pattern`/`alpha_pattern` key that matches `module`, as PEFT resolves it.

    PEFT treats each key as a regex that must match the whole module name or a dot-separated
    suffix of it, and takes the first key in dict order that does.
    """
    for pattern, value in patterns.items():
        try:
            if re.fullmatch(rf"(?:.*\.)?(?:{pattern})", module):
                return value
        except re.error as exc:
            raise CompositionError("bad_input", f"invalid rank/alpha pattern {pattern!r}: {exc}") from None
    return None


class ConfigViews:
    """What every composer input says of itself in its adapter_config.json."""

    config: dict[str, Any]

    @property
    def peft_type(self) -> str:
        return str(self.config.get("peft_type") or "")

    @property
    def base_model(self) -> str | None:
        value = self.config.get("base_model_name_or_path")
        return str(value) if value is not None else None

    @property
    def revision(self) -> str | None:
        value = self.config.get("revision")
        return str(value) if value is not None else None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class LoraAdapter(ConfigViews):
    """A PEFT LoRA adapter: its config and an index of its tensors, which are read on demand.

    Build one with `load_lora(path)` or `LoraAdapter.from_tensors(config, tensors)`. Loading only
    parses names and shapes; whether the adapter can be composed is decided by
    `composer.check_compatible`, so an IA3 or DoRA adapter still loads and can be inspected.
    """

    def __init__(
        self,
        *,
        config: Mapping[str, Any],
        source: TensorSource,
        path: Path | None = None,
        reference: str | None = None,
        sha256: str | None = None,
        recipe: Mapping[str, Any] | None = None,
    ) -> None:
        self.config: dict[str, Any] = json.loads(json.dumps(dict(config)))  # private deep copy
        self.source = source
        self.path = path
        self.reference = reference or (str(path) if path is not None else "<in-memory>")
        self._sha256 = sha256
        self.recipe: dict[str, Any] | None = dict(recipe) if recipe is not None else None
        self.modules: dict[str, ModuleEntry] = {}
        self.extra_keys: tuple[str, ...] = ()
        self.unsupported_keys: tuple[str, ...] = ()
        self.adapter_names: frozenset[str] = frozenset()
        self._index_tensors()

    @classmethod
    def from_tensors(
        cls,
        config: Mapping[str, Any],
        tensors: Mapping[str, Tensor],
        *,
        reference: str | None = None,
        recipe: Mapping[str, Any] | None = None,
    ) -> LoraAdapter:
        """An adapter held in memory, with the same key layout as a PEFT file."""
        return cls(config=config, source=MemorySource(tensors), reference=reference, recipe=recipe)

    def __repr__(self) -> str:
        return f"LoraAdapter({self.reference!r}, modules={len(self.modules)}, base={self.base_model!r})"

    def __enter__(self) -> LoraAdapter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the memory map of the tensor file; later reads reopen it."""
        self.source.close()

    # -- config views ------------------------------------------------------------------------

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the LoRA factors; float32 when they disagree."""
        dtypes = {self.source.dtype(m.a_key) for m in self.modules.values()}
        dtypes |= {self.source.dtype(m.b_key) for m in self.modules.values()}
        return dtypes.pop() if len(dtypes) == 1 else torch.float32

    def declared_rank(self, module: str) -> int:
        """The rank adapter_config.json promises for `module` (r, or its rank_pattern entry)."""
        pattern_rank = match_pattern(self.config.get("rank_pattern") or {}, module)
        return int(pattern_rank if pattern_rank is not None else self.config.get("r", 8))

    def scaling(self, module: str) -> float:
        """PEFT's runtime multiplier for `module`: alpha/r, or alpha/sqrt(r) with rsLoRA."""
        rank = self.declared_rank(module)
        pattern_alpha = match_pattern(self.config.get("alpha_pattern") or {}, module)
        alpha = float(pattern_alpha if pattern_alpha is not None else self.config.get("lora_alpha", 8))
        return alpha / math.sqrt(rank) if self.config.get("use_rslora") else alpha / rank

    @property
    def sha256(self) -> str:
        """Hex digest of the tensor file (of its serialized bytes for in-memory adapters)."""
        if self._sha256 is None:
            if isinstance(self.source, SafetensorsSource):
                self._sha256 = file_sha256(self.source.path)
            else:
                self._sha256 = hashlib.sha256(safetensors_save(self.tensors())).hexdigest()
        return self._sha256

    # -- tensors -------------------------------------------------------------------------------

    def tensor(self, key: str) -> Tensor:
        return self.source.get(key)

    def tensors(self) -> dict[str, Tensor]:
        """Every tensor, read now (used when saving a file-backed adapter elsewhere)."""
        return {key: self.source.get(key).contiguous() for key in self.source.keys()}

    def factors(self, module: str, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor, Tensor | None]:
        """(B, A, bias) of one module in fp32 on `device`; convolution kernels flattened into A's columns."""
        entry = self.modules[module]
        b = self.source.get(entry.b_key).to(device=device, dtype=torch.float32)
        a = self.source.get(entry.a_key).to(device=device, dtype=torch.float32)
        if entry.shape.kind == "conv":
            b = b.reshape(b.shape[0], b.shape[1])  # (d_out, r, 1, 1) -> (d_out, r)
            a = a.reshape(a.shape[0], -1)  # (r, c_in, kh, kw) -> (r, c_in*kh*kw)
        bias = None
        if entry.bias_key is not None:
            bias = self.source.get(entry.bias_key).to(device=device, dtype=torch.float32)
        return b, a, bias

    def _index_tensors(self) -> None:
        """Group tensor keys by module, checking that factor shapes fit together."""
        parts: dict[str, dict[str, str]] = {}  # module -> {"lora_A" | "lora_B" | "lora_B_bias": key}
        embeddings: set[str] = set()
        extra: list[str] = []
        unsupported: list[str] = []
        names: set[str] = set()
        for key in self.source.keys():
            match = _LORA_KEY.match(key)
            if match is None:
                (unsupported if _VARIANT_SEGMENT.search(key) else extra).append(key)
                continue
            adapter, param = match["adapter"], match["param"]
            if param is None and adapter in ("weight", "bias"):
                adapter, param = None, adapter
            if adapter is not None:
                names.add(adapter)
            module = match["module"].removeprefix(PEFT_PREFIX)
            if "embedding" in match["part"]:
                embeddings.add(module)
            slot = match["part"].replace("embedding_", "") + ("_bias" if param == "bias" else "")
            parts.setdefault(module, {})[slot] = key
        if len(names) > 1:
            raise CompositionError(
                "bad_input",
                f"{self.reference}: tensors belong to several adapters ({', '.join(sorted(names))}); "
                "save each adapter separately",
            )
        self.adapter_names = frozenset(names)
        self.extra_keys = tuple(sorted(extra))
        self.unsupported_keys = tuple(sorted(unsupported))
        for module in sorted(parts):
            self.modules[module] = self._module_entry(module, parts[module], embedding=module in embeddings)

    def _module_entry(self, module: str, slots: dict[str, str], *, embedding: bool) -> ModuleEntry:
        if "lora_A" not in slots or "lora_B" not in slots:
            missing = "lora_A" if "lora_A" not in slots else "lora_B"
            raise CompositionError("bad_input", f"{self.reference}: module {module!r} has no {missing} tensor")
        a_shape = self.source.shape(slots["lora_A"])
        b_shape = self.source.shape(slots["lora_B"])
        kind: ModuleKind = "embedding" if embedding else ("conv" if len(a_shape) > 2 else "linear")
        conv_b_ok = len(b_shape) == len(a_shape) and all(d == 1 for d in b_shape[2:])
        if (
            len(a_shape) < 2
            or len(b_shape) < 2
            or (kind == "conv" and not conv_b_ok)
            or (kind != "conv" and len(b_shape) != 2)
        ):
            raise CompositionError(
                "bad_input",
                f"{self.reference}: module {module!r} has factor shapes A {a_shape} and B {b_shape}, "
                "which are not a LoRA pair",
            )
        if a_shape[0] != b_shape[1]:
            raise CompositionError(
                "bad_input",
                f"{self.reference}: module {module!r} has rank {a_shape[0]} in lora_A but {b_shape[1]} in lora_B",
            )
        bias_key = slots.get("lora_B_bias")
        if bias_key is not None and self.source.shape(bias_key) != (b_shape[0],):
            raise CompositionError(
                "bad_input", f"{self.reference}: module {module!r} has a lora_B bias of the wrong shape"
            )
        return ModuleEntry(
            name=module,
            shape=ModuleShape(kind=kind, d_out=b_shape[0], in_shape=tuple(a_shape[1:])),
            rank=a_shape[0],
            a_key=slots["lora_A"],
            b_key=slots["lora_B"],
            bias_key=bias_key,
        )


def load_lora(path: str | os.PathLike[str], *, reference: str | None = None, sha256: str | None = None) -> LoraAdapter:
    """Open a PEFT LoRA adapter folder (or its .safetensors file) without reading the tensors.

    Args:
        path: folder with adapter_config.json and adapter_model.safetensors, or the .safetensors file.
        reference: how the recipe should name this input (e.g. "ns/name:3"); defaults to the path.
        sha256: the file's digest if the caller already knows it, to skip hashing it again.
    """
    location = Path(path)
    folder, weights = (
        (location.parent, location) if location.suffix == ".safetensors" else (location, location / WEIGHTS_FILE)
    )
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise CompositionError("bad_input", f"{folder} has no {CONFIG_FILE}; is it a PEFT adapter folder?")
    if not weights.is_file():
        hint = (
            " (pickled adapter_model.bin is not read for safety; convert it to safetensors)"
            if (folder / "adapter_model.bin").is_file()
            else ""
        )
        raise CompositionError("bad_input", f"{folder} has no {weights.name}{hint}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CompositionError("bad_input", f"{config_path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise CompositionError("bad_input", f"{config_path} must hold a JSON object")
    return LoraAdapter(
        config=config, source=SafetensorsSource(weights), path=folder, reference=reference, sha256=sha256
    )


def save_lora(adapter: LoraAdapter, path: str | os.PathLike[str]) -> Path:
    """Write a standard PEFT adapter folder, plus composition.json when the adapter has a recipe
    (a composition's result saves itself: `result.save(path)`).

    Returns the folder. Existing files of the same names are replaced; an adapter read from a file
    is copied byte for byte (and not rewritten when that file is already the folder's).
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / WEIGHTS_FILE
    source = adapter.source
    if isinstance(source, SafetensorsSource):
        if not (target.exists() and os.path.samefile(source.path, target)):
            shutil.copyfile(source.path, target)
    else:
        save_file(adapter.tensors(), str(target), metadata=_METADATA)
    _write_json(folder / CONFIG_FILE, adapter.config)
    if adapter.recipe is not None:
        _write_json(folder / RECIPE_FILE, adapter.recipe)
    return folder


class SafetensorsWriter:
    """Writes a .safetensors file one tensor at a time, as a composition makes them, so the output is
    never held in memory whole.

    A safetensors file is an 8-byte header length, a JSON header giving every tensor's dtype, shape
    and byte range, then the bytes. The header is known only at the end, so room for it is reserved
    up front, sized for the longest entry each possible key could need; tensors follow as they come;
    `close` writes the header into its room, padded with spaces (which the format allows). The same
    tensors added in the same order give the same bytes.
    """

    def __init__(self, path: Path, keys: Iterable[str]) -> None:
        self.path = path
        self._entries: dict[str, dict[str, Any]] = {}
        self._offset = 0
        self._room = _header_room(keys)
        self._file = open(path, "wb")  # noqa: SIM115 - closed by close() or abort()
        self._file.seek(8 + self._room)

    def add(self, key: str, tensor: Tensor) -> None:
        if key in self._entries:
            raise ValueError(f"tensor {key!r} written twice")
        value = tensor.detach().to("cpu").contiguous()
        if value.dtype not in _SAFETENSORS_NAMES:
            raise CompositionError("bad_input", f"cannot store tensor {key!r} of dtype {value.dtype}")
        if value.numel():  # the bytes as they lie in memory (little-endian, as safetensors stores them)
            self._file.write(value.reshape(-1).view(torch.uint8).numpy().data)
        size = value.numel() * value.element_size()
        self._entries[key] = {
            "dtype": _SAFETENSORS_NAMES[value.dtype],
            "shape": list(value.shape),
            "data_offsets": [self._offset, self._offset + size],
        }
        self._offset += size

    def close(self) -> None:
        header = json.dumps(
            {"__metadata__": _METADATA, **dict(sorted(self._entries.items()))}, separators=(",", ":")
        ).encode()
        if len(header) > self._room:  # _header_room bounds every entry; reaching this is a bug
            raise RuntimeError(f"safetensors header of {len(header)} bytes exceeds its {self._room} reserved")
        self._file.seek(0)
        self._file.write(struct.pack("<Q", self._room) + header + b" " * (self._room - len(header)))
        self._file.close()

    def abort(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


def _header_room(keys: Iterable[str]) -> int:
    """Bytes that hold the header of any subset of `keys`: each entry at its longest (five
    dimensions and two offsets of 20 digits), rounded up to 8 so the data starts aligned."""
    longest = 2**64 - 1
    room = len(json.dumps({"__metadata__": _METADATA}, separators=(",", ":")))
    for key in keys:
        entry = {key: {"dtype": "BF16", "shape": [longest] * 5, "data_offsets": [longest, longest]}}
        room += len(json.dumps(entry, separators=(",", ":")))
    return (room + 7) // 8 * 8


def _write_json(path: Path, payload: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")

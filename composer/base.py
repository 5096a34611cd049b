"""The base model's weights, read lazily from its safetensors checkpoint: what IA3 and DoRA deltas
are made of, and the layer shapes VeRA, FourierFT and IA3 files leave out."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from torch import Tensor

from composer.errors import CompositionError


class ManifestBase:
    """Shapes only, from a manifest (module -> [out, in]): enough for VeRA and FourierFT."""

    def __init__(self, manifest: Mapping[str, Sequence[int]]) -> None:
        self.manifest = {name: (int(shape[0]), int(shape[1])) for name, shape in manifest.items() if len(shape) == 2}

    def shape(self, module: str) -> tuple[int, int] | None:
        return self.manifest.get(module)

    def weight(self, module: str, device: torch.device) -> tuple[Tensor, Tensor | None]:
        raise CompositionError("base_model_required", f"the base model's weights are needed for {module!r}")


class BaseCheckpoint(ManifestBase):
    """A model folder (config.json, model.safetensors or shards with their index). Weights are read
    one layer at a time and returned (out, in): a layer the manifest says is (out, in) but stored
    (in, out), as GPT-2's Conv1D, is transposed."""

    def __init__(self, folder: Path, manifest: Mapping[str, Sequence[int]] | None = None) -> None:
        self.folder = Path(folder)
        index = self.folder / "model.safetensors.index.json"
        if index.exists():
            weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        else:
            weight_map = {}
            for shard in sorted(self.folder.glob("*.safetensors")):
                with safe_open(str(shard), framework="pt") as handle:
                    weight_map.update(dict.fromkeys(handle.keys(), shard.name))
        if not weight_map:
            raise CompositionError("base_model_required", f"{self.folder} holds no safetensors weights")
        self.weight_map = weight_map
        if manifest is None:
            manifest = {
                key[: -len(".weight")]: self._stored_shape(key) for key in weight_map if key.endswith(".weight")
            }
        super().__init__(manifest)

    def _stored_shape(self, key: str) -> list[int]:
        with safe_open(str(self.folder / self.weight_map[key]), framework="pt") as handle:
            return list(handle.get_slice(key).get_shape())

    def _key(self, module: str, part: str) -> str | None:
        """The checkpoint key of a module's tensor; a bare model's checkpoint (GPT2Model) drops the
        head model's first segment."""
        for name in (f"{module}.{part}", f"{module.split('.', 1)[-1]}.{part}"):
            if name in self.weight_map:
                return name
        return None

    def _read(self, key: str, device: torch.device) -> Tensor:
        with safe_open(str(self.folder / self.weight_map[key]), framework="pt") as handle:
            return handle.get_tensor(key).to(device=device, dtype=torch.float32)

    def weight(self, module: str, device: torch.device) -> tuple[Tensor, Tensor | None]:
        key = self._key(module, "weight")
        if key is None:
            raise CompositionError("base_model_required", f"the base model has no weight for {module!r}")
        weight = self._read(key, device)
        expected = self.shape(module)
        if expected is not None and tuple(weight.shape) != expected and tuple(weight.shape[::-1]) == expected:
            weight = weight.T.contiguous()
        bias_key = self._key(module, "bias")
        return weight, self._read(bias_key, device) if bias_key is not None else None

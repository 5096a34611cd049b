"""The recipe written beside a composed adapter (composition.json): enough to reproduce it."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from composer.types import ModuleReport

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class RecipeInput:
    """One input as the recipe records it."""

    reference: str  # "ns/name:3" from the hub, or the folder given on the command line
    weight: float
    sha256: str  # of the input's adapter_model.safetensors

    def __post_init__(self) -> None:
        if not math.isfinite(self.weight):
            raise ValueError(f"weight of {self.reference!r} must be finite, got {self.weight}")
        if not _SHA256.match(self.sha256):
            raise ValueError(f"sha256 of {self.reference!r} must be 64 lowercase hex digits")


@dataclass(frozen=True)
class Recipe:
    """What was composed, how, and from which exact inputs."""

    library: str
    version: str
    method: str
    parameters: Mapping[str, Any]
    seed: int | None
    inputs: tuple[RecipeInput, ...]
    base_model: str | None
    revision: str | None
    environment: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.method:
            raise ValueError("recipe needs a method name")
        if not self.inputs:
            raise ValueError("recipe needs at least one input")

    def to_dict(self, reports: Sequence[ModuleReport]) -> dict[str, Any]:
        """JSON-ready recipe, with the per-module report and its summary."""
        return {
            "library": {"name": self.library, "version": self.version},
            "method": self.method,
            "parameters": dict(self.parameters),
            "seed": self.seed,
            "base_model": {"name_or_path": self.base_model, "revision": self.revision},
            "inputs": [
                {"reference": item.reference, "weight": item.weight, "sha256": item.sha256} for item in self.inputs
            ],
            "report": {"summary": summarize(reports), "modules": [r.to_dict() for r in reports]},
            "environment": dict(self.environment),
        }


def summarize(reports: Sequence[ModuleReport]) -> dict[str, Any]:
    """A few numbers that tell at a glance how faithful the composed adapter is."""
    if not reports:
        return {"modules": 0}
    errors = [r.relative_error for r in reports]
    energies = [r.retained_energy for r in reports]
    ranks = [r.rank for r in reports]
    return {
        "modules": len(reports),
        "truncated_modules": sum(r.truncated for r in reports),
        "rank_min": min(ranks),
        "rank_max": max(ranks),
        "relative_error_mean": round(sum(errors) / len(errors), 8),
        "relative_error_max": round(max(errors), 8),
        "retained_energy_min": round(min(energies), 8),
    }


def environment(device: torch.device) -> dict[str, str]:
    return {"torch": torch.__version__, "device": device.type}

"""The `hybrid` composition: PEFT adapters of different methods kept side by side as the parts of one
hybrid adapter (adaptercheck/hybrid.py describes the layout): weight-changing parts in the order given,
then at most one prompt part. Nothing is merged, so nothing is lost; each part still loads alone."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from composer.errors import CompositionError
from composer.io import CONFIG_FILE, RECIPE_FILE, WEIGHTS_FILE
from composer.recipe import environment
from composer.version import VERSION

HYBRID_FILE = "hybrid.json"
PROMPT_TYPES = ("PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING")


@dataclass(frozen=True)
class HybridPart:
    folder: Path  # a PEFT adapter folder
    reference: str
    sha256: str | None
    peft_type: str


@dataclass(frozen=True)
class HybridInput:
    """A hybrid read as a composition input: its parts, in order, each a composer input."""

    parts: list[tuple[str, Any]]  # (folder name, LoraAdapter | FamilyAdapter)
    reference: str
    sha256: str | None = None

    @property
    def weight_parts(self) -> list[Any]:
        return [adapter for _, adapter in self.parts if adapter.peft_type not in PROMPT_TYPES]

    @property
    def prompt_parts(self) -> list[Any]:
        return [adapter for _, adapter in self.parts if adapter.peft_type in PROMPT_TYPES]


def hybrid_paths(folder: Path) -> list[str]:
    return [part["path"] for part in json.loads((folder / HYBRID_FILE).read_text())["parts"]]


@dataclass
class HybridResult:
    """What `save` writes: one subfolder per part (a folder's files copied, or a composed adapter
    saved), hybrid.json, composition.json."""

    parts: list[tuple[str, Any]]  # (folder name, HybridPart | a composed LoraAdapter)
    recipe: dict[str, Any]
    modules: tuple[Any, ...] = ()
    summary: dict[str, Any] = field(default_factory=dict)
    peft_type: str = "HYBRID"

    def save(self, path: str | Path) -> Path:
        from composer.io import save_lora

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        for name, part in self.parts:
            if not isinstance(part, HybridPart):
                save_lora(part, out / name)
                continue
            (out / name).mkdir(exist_ok=True)
            for file in (CONFIG_FILE, WEIGHTS_FILE):
                shutil.copyfile(part.folder / file, out / name / file)
        (out / HYBRID_FILE).write_text(json.dumps({"parts": [{"path": name} for name, _ in self.parts]}, indent=2))
        (out / RECIPE_FILE).write_text(json.dumps(self.recipe, indent=2, sort_keys=True) + "\n")
        return out


def assemble_hybrid(parts: Sequence[HybridPart], *, base_model: str | None) -> HybridResult:
    """Name and order the parts: weight parts as given, the prompt part last; folders are named after
    the method (`lora`, `ia3`, ..., `prompt`), numbered when a method repeats."""
    prompts = [p for p in parts if p.peft_type in PROMPT_TYPES]
    if len(prompts) > 1:
        raise CompositionError("bad_input", "a hybrid holds at most one prompt part (prompt, p- or prefix tuning)")
    if len(parts) < 2:
        raise CompositionError("bad_input", "a hybrid needs at least two parts")
    ordered = [p for p in parts if p.peft_type not in PROMPT_TYPES] + prompts
    seen: Counter[str] = Counter()
    named = []
    for part in ordered:
        stem = "prompt" if part.peft_type in PROMPT_TYPES else part.peft_type.lower()
        seen[stem] += 1
        named.append((stem if seen[stem] == 1 else f"{stem}-{seen[stem]}", part))
    recipe = {
        "library": "composer",
        "version": VERSION,
        "method": "hybrid",
        "inputs": [{"reference": p.reference, "sha256": p.sha256, "part": name} for name, p in named],
        "base_model": base_model,
        "environment": environment(torch.device("cpu")),
    }
    return HybridResult(parts=named, recipe=recipe)


def apply_hybrid(model: Any, folder: Path) -> Any:
    """`model` with a hybrid's parts applied as its hybrid.json orders them: each weight part merged
    in with PEFT, then the prompt part, if any, wrapped on top. Changes `model`: pass a copy."""
    from peft import PeftModel

    for part in hybrid_paths(folder):
        config = json.loads((folder / part / CONFIG_FILE).read_text())
        loaded = PeftModel.from_pretrained(model, str(folder / part), is_trainable=False)
        model = loaded if config.get("peft_type") in PROMPT_TYPES else loaded.merge_and_unload()
    return model.eval()

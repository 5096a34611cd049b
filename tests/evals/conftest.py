from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class DemoModels:
    """A tiny base model (with tokenizer) and a LoRA adapter per demo skill, trained for real."""

    base: Path
    adapters: dict[str, Path]


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory: pytest.TempPathFactory) -> DemoModels:
    from registry.demo import SKILLS, build_base_model, train_lora

    root = tmp_path_factory.mktemp("demo")
    base = build_base_model(root / "hub-demo" / "tiny-llama")
    adapters = {skill.name: train_lora(base, skill, root / "adapters" / skill.name, seed=i) for i, skill in enumerate(SKILLS)}
    return DemoModels(base=base, adapters=adapters)


@pytest.fixture(autouse=True)
def _own_blob_store(request: pytest.FixtureRequest) -> None:
    # Pure engine tests need no Django; hub tests get a private blob store.
    if request.node.get_closest_marker("django_db") is not None:
        request.getfixturevalue("local_blob_store")

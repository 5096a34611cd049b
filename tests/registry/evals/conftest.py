from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.helpers import push_folder


@dataclass(frozen=True)
class DemoModels:
    """A tiny base model (with tokenizer) and a LoRA adapter per demo skill, trained for real."""

    base: Path
    adapters: dict[str, Path]


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory: pytest.TempPathFactory) -> DemoModels:
    from demo.skills import SKILLS, build_base_model, train_lora

    root = tmp_path_factory.mktemp("demo")
    base = build_base_model(root / "hub-demo" / "tiny-llama")
    adapters = {
        skill.name: train_lora(base, skill, root / "adapters" / skill.name, seed=i) for i, skill in enumerate(SKILLS)
    }
    return DemoModels(base=base, adapters=adapters)


@pytest.fixture(autouse=True)
def _own_blob_store(request: pytest.FixtureRequest) -> None:
    # Pure engine tests need no Django; hub tests get a private blob store.
    if request.node.get_closest_marker("django_db") is not None:
        request.getfixturevalue("local_blob_store")


BASE = "hub-demo/tiny-llama"


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


@pytest.fixture
def hub(settings: Any, demo_models: DemoModels, alice: Any, client_for: Any) -> Any:
    """The demo base model registered and findable by workers, alice an admin with both adapters."""
    from registry.manifests import manifest_from_folder
    from registry.services import register_base_model

    settings.HUB_BASE_MODEL_PATHS = [str(demo_models.base.parent.parent)]
    architecture, manifest = manifest_from_folder(demo_models.base)
    register_base_model(name=BASE, architecture=architecture, manifest=manifest)
    alice.is_staff = True
    alice.save()
    client = client_for(alice, scope="admin")
    for skill, folder in demo_models.adapters.items():
        assert push_folder(client, f"alice/{skill}", folder).status_code == 201
    return client


def create_suite(client: Any, name: str, kind: str, lines: list[dict[str, Any]], **fields: Any) -> Any:
    data = SimpleUploadedFile(f"{name}.jsonl", jsonl(lines))
    return client.post(
        "/api/v1/eval-suites/",
        {"base_model": BASE, "name": name, "kind": kind, "data": data, **fields},
        format="multipart",
    )

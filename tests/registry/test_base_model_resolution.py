"""Resolving the base model of a push: explicit > model card > config, paths matched by shapes,
unregistered names refused, and nothing written by a refusal."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from registry.models import Adapter, AdapterVersion, BaseModel
from registry.services import register_base_model
from tests.factories import BASE_MODEL_NAME, make_lora_adapter
from tests.helpers import folder_files, json_of, push, stored_blobs

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _own_blob_store(local_blob_store: Path) -> Path:
    return local_blob_store


def lora_from(tmp_path: Path, base: str, *, card_base: str | None = None, hidden_size: int = 64) -> Path:
    readme = (
        "# An adapter\n" if card_base is None else f"---\nbase_model: {card_base}\nlicense: mit\n---\n# An adapter\n"
    )
    return make_lora_adapter(tmp_path / "lora", seed=7, base_model_name=base, readme=readme, hidden_size=hidden_size)


def stored_config(client: Any, ref: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/adapters/{ref}/versions/latest/files/adapter_config.json")
    return dict(json.loads(b"".join(response.streaming_content)))


def test_a_local_path_is_matched_by_shapes_and_the_stored_config_names_the_base(
    alice: Any, client_for: Any, tmp_path: Path
) -> None:
    folder = lora_from(tmp_path, "/home/me/models/llama-weights")
    client = client_for(alice)
    response = push(client, "alice/sql", folder_files(folder))

    assert response.status_code == 201, response.content
    version = AdapterVersion.objects.get(adapter__name="sql")
    assert version.adapter.base_model.name == BASE_MODEL_NAME
    assert version.trained_from == "/home/me/models/llama-weights"
    assert json_of(response)["trained_from"] == "/home/me/models/llama-weights"
    config = stored_config(client, "alice/sql")
    original = json.loads((folder / "adapter_config.json").read_text())
    assert config == {**original, "base_model_name_or_path": BASE_MODEL_NAME}, "only that key changes"
    assert list(BaseModel.objects.values_list("name", flat=True)) == [BASE_MODEL_NAME]

    again = push(client, "alice/sql", folder_files(folder))
    assert again.status_code == 200 and json_of(again)["version"] == 1


def test_an_unregistered_name_is_refused_and_nothing_is_written(alice: Any, client_for: Any, tmp_path: Path) -> None:
    folder = lora_from(tmp_path, "meta-llama/Llama-3.1-8B")
    response = push(client_for(alice), "alice/sql", folder_files(folder))

    body = json_of(response)
    assert response.status_code == 422 and body["code"] == "unknown_base_model"
    assert body["candidates"] == [BASE_MODEL_NAME], "the registered base with the adapter's shapes is suggested"
    assert "--base-model" in body["message"] and "base_model:" in body["message"]
    assert not Adapter.objects.exists() and not stored_blobs()
    assert list(BaseModel.objects.values_list("name", flat=True)) == [BASE_MODEL_NAME]


def test_a_path_no_registered_base_fits_is_refused(alice: Any, client_for: Any, tmp_path: Path) -> None:
    folder = lora_from(tmp_path, "/data/models/tiny-llama", hidden_size=32)
    response = push(client_for(alice), "alice/sql", folder_files(folder))
    assert response.status_code == 422 and json_of(response)["code"] == "unknown_base_model"
    assert not Adapter.objects.exists() and not stored_blobs()


def test_bases_with_the_same_shapes_are_told_apart_by_the_paths_last_segment_or_refused_as_ambiguous(
    alice: Any, client_for: Any, tmp_path: Path, test_base_manifest: dict[str, list[int]]
) -> None:
    for name in ("org-a/llama-twin", "org-b/other-twin"):
        register_base_model(name=name, manifest=test_base_manifest)
    client = client_for(alice)

    named = lora_from(tmp_path / "a", r"C:\Users\me\models\LLAMA-TWIN")
    assert push(client, "alice/a", folder_files(named)).status_code == 201
    assert Adapter.objects.get(name="a").base_model.name == "org-a/llama-twin"

    unnamed = lora_from(tmp_path / "b", "~/checkpoints/run-17")
    response = push(client, "alice/b", folder_files(unnamed))
    body = json_of(response)
    assert response.status_code == 422 and body["code"] == "ambiguous_base_model"
    assert body["candidates"] == sorted([BASE_MODEL_NAME, "org-a/llama-twin", "org-b/other-twin"])
    assert not Adapter.objects.filter(name="b").exists()

    chosen = push(client, "alice/b", folder_files(unnamed), base_model="org-b/other-twin")
    assert chosen.status_code == 201 and Adapter.objects.get(name="b").base_model.name == "org-b/other-twin"


def test_the_model_cards_base_model_wins_over_the_config(
    alice: Any, client_for: Any, tmp_path: Path, test_base_manifest: dict[str, list[int]]
) -> None:
    register_base_model(name="org-a/llama-twin", manifest=test_base_manifest)
    folder = lora_from(tmp_path, BASE_MODEL_NAME, card_base="org-a/llama-twin")
    response = push(client_for(alice), "alice/carded", folder_files(folder))

    assert response.status_code == 201, response.content
    adapter = Adapter.objects.get(name="carded")
    assert adapter.base_model.name == "org-a/llama-twin" and adapter.license == "mit"
    assert stored_config(client_for(alice), "alice/carded")["base_model_name_or_path"] == "org-a/llama-twin"
    assert adapter.versions.get().trained_from == BASE_MODEL_NAME


def test_an_explicit_base_model_wins_and_its_shapes_are_checked(
    alice: Any, client_for: Any, tmp_path: Path, test_base_manifest: dict[str, list[int]]
) -> None:
    register_base_model(name="org-a/wider", manifest={k: [2 * o, i] for k, (o, i) in test_base_manifest.items()})
    folder = lora_from(tmp_path, BASE_MODEL_NAME)
    response = push(client_for(alice), "alice/x", folder_files(folder), base_model="org-a/wider")
    assert response.status_code == 422 and json_of(response)["code"] == "base_shape_mismatch"
    assert not Adapter.objects.exists() and not stored_blobs()


def test_an_existing_adapter_keeps_its_base_model(alice: Any, client_for: Any, tmp_path: Path, lora_dir: Path) -> None:
    client = client_for(alice)
    assert push(client, "alice/sql", folder_files(lora_dir)).status_code == 201
    moved = push(client, "alice/sql", folder_files(lora_from(tmp_path, "../models/tiny-llama")))
    assert moved.status_code == 201 and json_of(moved)["trained_from"] == "../models/tiny-llama"

    other = push(client, "alice/sql", folder_files(lora_dir), base_model="org-x/other")
    assert other.status_code == 409 and json_of(other)["code"] == "base_model_change"


def test_a_hub_that_admits_unregistered_names_files_them_as_unverified(
    settings: Any, alice: Any, client_for: Any, tmp_path: Path
) -> None:
    settings.ALLOW_UNREGISTERED_BASE_MODELS = True
    folder = lora_from(tmp_path, "someone/unlisted-7b")
    response = push(client_for(alice), "alice/open", folder_files(folder))

    assert response.status_code == 201, response.content
    base = BaseModel.objects.get(name="someone/unlisted-7b")
    assert base.registered is False and base.manifest == {}
    assert client_for(None).get("/api/v1/base-models/someone/unlisted-7b/").json()["registered"] is False
    path = push(
        client_for(alice), "alice/open2", folder_files(lora_from(tmp_path / "p", "/srv/nothing-fits", hidden_size=32))
    )
    assert json_of(path)["code"] == "unknown_base_model", "a path is never a name, even on an open hub"


def test_creating_an_adapter_with_an_unregistered_base_is_refused(alice: Any, client_for: Any) -> None:
    response = client_for(alice).post(
        "/api/v1/adapters/",
        {"namespace": "alice", "name": "x", "base_model": "nobody/none", "method": "lora"},
        format="json",
    )
    assert response.status_code == 422 and json_of(response)["code"] == "unknown_base_model"
    assert not BaseModel.objects.filter(name="nobody/none").exists()


def test_refile_base_models_moves_adapters_from_path_named_rows(
    alice: Any, client_for: Any, tmp_path: Path, lora_dir: Path
) -> None:
    assert push(client_for(alice), "alice/old", folder_files(lora_dir)).status_code == 201
    legacy = BaseModel.objects.create(name="/home/me/models/tiny-llama", registered=False)
    Adapter.objects.filter(name="old").update(base_model=legacy)  # as pushes filed it before

    out = io.StringIO()
    call_command("refile_base_models", "--dry-run", stdout=out)
    assert f"would move alice/old: /home/me/models/tiny-llama -> {BASE_MODEL_NAME}" in out.getvalue()
    assert Adapter.objects.get(name="old").base_model == legacy

    call_command("refile_base_models", stdout=io.StringIO())
    assert Adapter.objects.get(name="old").base_model.name == BASE_MODEL_NAME
    assert not BaseModel.objects.filter(pk=legacy.pk).exists()


def test_admins_register_a_base_model_with_its_files_through_the_api(
    alice: Any, bob: Any, client_for: Any, base_model_folder: Path
) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    def upload() -> list[SimpleUploadedFile]:
        return [SimpleUploadedFile(p.name, p.read_bytes()) for p in sorted(base_model_folder.iterdir())]

    refused = client_for(bob).post("/api/v1/base-models/org/uploaded/files/", {"files": upload()}, format="multipart")
    assert refused.status_code == 403 and not BaseModel.objects.filter(name="org/uploaded").exists()

    alice.is_staff = True
    alice.save()
    response = client_for(alice, scope="admin").post(
        "/api/v1/base-models/org/uploaded/files/", {"files": upload(), "description": "uploaded"}, format="multipart"
    )
    body = json_of(response)
    assert response.status_code == 201, body
    assert body["weights_stored"] is True and body["registered"] is True and body["manifest"]
    sizes = {f["path"]: f["size"] for f in body["files"]}
    assert sizes == {p.name: p.stat().st_size for p in base_model_folder.iterdir()}
    assert set(stored_blobs()) >= {f["sha256"] for f in body["files"]}

    no_weights = client_for(alice, scope="admin").post(
        "/api/v1/base-models/org/empty/files/",
        {"files": [SimpleUploadedFile("config.json", (base_model_folder / "config.json").read_bytes())]},
        format="multipart",
    )
    assert no_weights.status_code == 422 and json_of(no_weights)["code"] == "bad_base_model"
    assert "/tmp" not in json_of(no_weights)["message"]

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from registry.blobs import get_blob_store
from registry.models import ApiToken, BaseModel
from registry.services import authenticate_token
from tests.helpers import json_of, push_folder, stored_blobs

pytestmark = pytest.mark.django_db


def test_the_openapi_schema_and_docs_are_served(db: Any) -> None:
    client = APIClient()
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = json_of(schema)["paths"]
    assert "/api/v1/adapters/{namespace}/{name}/versions/" in paths
    assert client.get("/api/docs/").status_code == 200


def test_issue_token_prints_only_a_working_token(alice: Any) -> None:
    out = io.StringIO()
    call_command("issue_token", "alice", "--scope", "write", stdout=out)

    secret = out.getvalue().strip()
    assert "\n" not in secret and secret.startswith("ahub_")
    token = authenticate_token(secret)
    assert token is not None and token.user == alice and token.scope == "write"


def test_register_base_model_builds_the_manifest_from_a_folder_and_a_config(base_model_folder: Path, db: Any) -> None:
    call_command(
        "register_base_model", "org/from-folder", "--from-folder", str(base_model_folder), stdout=io.StringIO()
    )
    call_command(
        "register_base_model",
        "org/from-config",
        "--from-config",
        str(base_model_folder / "config.json"),
        stdout=io.StringIO(),
    )

    from_folder = BaseModel.objects.get(name="org/from-folder")
    from_config = BaseModel.objects.get(name="org/from-config")
    assert from_folder.architecture == "LlamaForCausalLM"
    assert from_folder.manifest["model.layers.0.self_attn.q_proj"] == [64, 64]
    assert from_folder.manifest["model.layers.1.mlp.down_proj"] == [64, 128]
    # The headers cannot tell an embedding from a linear layer; the meta-device model can.
    assert "model.embed_tokens" in from_folder.manifest and "model.embed_tokens" not in from_config.manifest
    shared = from_config.manifest.keys() & from_folder.manifest.keys()
    assert len(shared) == 2 * 7 + 1  # 7 projections in each of 2 layers, and lm_head
    assert all(from_config.manifest[k] == from_folder.manifest[k] for k in shared)


def test_a_registered_manifest_accepts_a_matching_adapter(
    base_model_folder: Path, alice: Any, client_for: Any, lora_dir: Path
) -> None:
    call_command(
        "register_base_model", "hub-test/tiny-llama", "--from-folder", str(base_model_folder), stdout=io.StringIO()
    )

    assert push_folder(client_for(alice), "alice/tiny-lora", lora_dir).status_code == 201


def test_gc_blobs_sweeps_old_orphans_and_spares_referenced_and_young_blobs(
    alice: Any, client_for: Any, lora_dir: Path, local_blob_store: Path
) -> None:
    push_folder(client_for(alice), "alice/tiny-lora", lora_dir)
    referenced = set(stored_blobs())
    store = get_blob_store()
    old_orphan = store.put(io.BytesIO(b"orphan from a crashed push")).sha256
    young_orphan = store.put(io.BytesIO(b"a push still in flight")).sha256
    hour_ago = time.time() - 3600
    for path in local_blob_store.rglob(old_orphan):
        os.utime(path, (hour_ago, hour_ago))

    out = io.StringIO()
    call_command("gc_blobs", "--grace-seconds", "600", stdout=out)

    assert set(stored_blobs()) == referenced | {young_orphan}
    assert "deleted 1" in out.getvalue()


def test_whoami_lists_namespaces(alice: Any, org: Any, client_for: Any) -> None:
    body = json_of(client_for(alice).get("/api/v1/whoami/"))
    assert body["namespaces"] == ["alice", "acme"]
    assert body["token"]["scope"] == "write"


def test_bootstrap_demo_prints_a_token_and_replaces_the_previous_one(db: Any) -> None:
    first, second = io.StringIO(), io.StringIO()
    call_command("bootstrap_demo", stdout=first)
    call_command("bootstrap_demo", stdout=second)

    assert ApiToken.objects.filter(user__username="demo").count() == 1
    secret = second.getvalue().split("demo token (admin scope): ")[1].split()[0]
    assert authenticate_token(secret) is not None

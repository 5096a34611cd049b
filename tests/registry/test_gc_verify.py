"""gc_blobs --verify: a blob whose stored bytes do not hash to its name is found, deleted and
reported with the versions to push again; a push of the right bytes then restores it."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from registry.blobs import get_blob_store
from registry.models import VersionFile
from tests.helpers import download, push_folder
from tests.storage.test_verify import plant

pytestmark = pytest.mark.django_db

WEIGHTS = "adapter_model.safetensors"


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_verify_deletes_broken_blobs_names_their_versions_and_a_push_restores_them(
    backend: str, request: pytest.FixtureRequest, alice: Any, client_for: Any, lora_dir: Path
) -> None:
    request.getfixturevalue("local_blob_store" if backend == "local" else "s3_settings")
    client = client_for(alice)
    assert push_folder(client, "alice/tiny-lora", lora_dir).status_code == 201
    weights = VersionFile.objects.get(path=WEIGHTS)
    store = get_blob_store()
    plant(store, weights.sha256, b"")  # the broken object issue 13 found at a content address
    orphan = hashlib.sha256(b"an orphan nobody needs").hexdigest()
    plant(store, orphan, b"other bytes")
    sound = set(VersionFile.objects.exclude(path=WEIGHTS).values_list("sha256", flat=True))

    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match="referenced blobs were broken"):
        call_command("gc_blobs", "--verify", "--grace-seconds", "0", stdout=out, stderr=err)

    assert f"broken blob {weights.sha256}" in err.getvalue() and f"broken blob {orphan}" in err.getvalue()
    assert f"alice/tiny-lora:1/{WEIGHTS}" in err.getvalue()
    stored = {sha for sha, _ in store.iter_blobs()}
    assert weights.sha256 not in stored and orphan not in stored
    assert sound <= stored, "sound blobs, referenced ones, stay"

    assert push_folder(client, "alice/tiny-lora", lora_dir).status_code == 200, "the same version again"
    status, body, _ = download(client, f"/api/v1/adapters/alice/tiny-lora/versions/1/files/{WEIGHTS}")
    assert status == 200 and hashlib.sha256(body).hexdigest() == weights.sha256
    call_command("gc_blobs", "--verify", "--grace-seconds", "0", stdout=io.StringIO(), stderr=io.StringIO())


def test_verify_dry_run_reports_without_deleting(
    alice: Any, client_for: Any, lora_dir: Path, local_blob_store: Path
) -> None:
    orphan = hashlib.sha256(b"not these").hexdigest()
    plant(get_blob_store(), orphan, b"these")
    err = io.StringIO()

    call_command("gc_blobs", "--verify", "--dry-run", stdout=io.StringIO(), stderr=err)

    assert f"broken blob {orphan}" in err.getvalue()
    assert orphan in {sha for sha, _ in get_blob_store().iter_blobs()}


def test_a_file_whose_bytes_are_gone_answers_json_503(
    alice: Any, client_for: Any, lora_dir: Path, local_blob_store: Path
) -> None:
    client = client_for(alice)
    push_folder(client, "alice/tiny-lora", lora_dir)
    get_blob_store().delete(VersionFile.objects.get(path=WEIGHTS).sha256)

    response = client.get(f"/api/v1/adapters/alice/tiny-lora/versions/1/files/{WEIGHTS}")

    assert response.status_code == 503 and response.json()["code"] == "file_unavailable"
    hf = client.get(f"/alice/tiny-lora/resolve/main/{WEIGHTS}")
    if hf.status_code == 307:  # main, redirected to its commit
        hf = client.get(hf["Location"])
    assert hf.status_code == 503 and hf["X-Error-Code"] == "file_unavailable"

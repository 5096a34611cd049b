"""The resumable upload API itself: sessions, parts, verification at completion, expiry."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from django.utils import timezone
from rest_framework.test import APIClient

from registry.blobs import get_blob_store
from registry.models import AdapterVersion
from registry.models.uploads import UploadSession, UploadStatus
from registry.uploads import expire_sessions
from tests.helpers import folder_files, stored_blobs

pytestmark = pytest.mark.django_db


def announce(files: list[tuple[str, bytes]], **overrides: str) -> list[dict[str, Any]]:
    entries = [{"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for p, d in files]
    for entry in entries:
        if entry["path"] in overrides:
            entry["sha256"] = overrides[entry["path"]]
    return entries


def start(client: APIClient, ref: str, files: list[dict[str, Any]], **fields: Any) -> Any:
    return client.post("/api/v1/uploads/", {"adapter": ref, "files": files, **fields}, format="json")


def send(client: APIClient, plan: dict[str, Any], data: dict[str, bytes], *, only: int | None = None) -> int:
    """PUT the plan's missing parts (at most `only`), taking bytes from data by sha256."""
    sent = 0
    for upload in plan["uploads"]:
        blob = data[upload["sha256"]]
        for part in upload["parts"]:
            if only is not None and sent >= only:
                return sent
            offset = (part["number"] - 1) * upload["part_size"]
            body = blob[offset : offset + part["size"]]
            if part["url"].startswith("http"):
                assert requests.put(part["url"], data=body, timeout=30).status_code == 200
            else:
                response = client.generic("PUT", part["url"], body, content_type="application/octet-stream")
                assert response.status_code == 200, response.content
            sent += 1
    return sent


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "s3":
        request.getfixturevalue("s3_settings")
    return str(request.param)


def test_bytes_that_do_not_hash_as_announced_are_refused_and_never_stored(
    backend: str, alice: Any, client_for: Any, lora_dir: Path
) -> None:
    client = client_for(alice)
    files = folder_files(lora_dir)
    real = dict(files)
    forged = hashlib.sha256(b"something else entirely").hexdigest()
    plan = start(client, "alice/tiny-lora", announce(files, **{"README.md": forged})).json()
    data = {hashlib.sha256(d).hexdigest(): d for _, d in files} | {forged: real["README.md"]}
    send(client, plan, data)

    response = client.post(plan["complete_url"])

    assert response.status_code == 422 and response.json()["code"] == "digest_mismatch"
    assert response.json()["path"] == "README.md"
    assert forged not in stored_blobs() and not AdapterVersion.objects.exists()
    assert UploadSession.objects.get().status == UploadStatus.FAILED
    # The files that did verify are kept: a corrected push sends only what changed.
    retry = start(client, "alice/tiny-lora", announce(files)).json()
    assert [f["path"] for f in retry["files"] if not f["stored"]] == ["README.md"]


def test_completing_early_lists_the_missing_parts_and_a_second_completion_answers_the_version(
    backend: str, alice: Any, client_for: Any, lora_dir: Path, small_parts: int
) -> None:
    client = client_for(alice)
    files = folder_files(lora_dir)
    data = {hashlib.sha256(d).hexdigest(): d for _, d in files}
    plan = start(client, "alice/tiny-lora", announce(files), label="v1").json()
    send(client, plan, data, only=1)

    early = client.post(plan["complete_url"])

    assert early.status_code == 409 and early.json()["code"] == "upload_incomplete"
    assert sum(len(numbers) for numbers in early.json()["missing"].values()) == 2
    again = start(client, "alice/tiny-lora", announce(files), label="v1")
    assert again.status_code == 200 and again.json()["id"] == plan["id"]
    assert send(client, again.json(), data) == 2
    done = client.post(plan["complete_url"])
    assert done.status_code == 201 and done.json()["version"] == 1 and done.json()["label"] == "v1"
    repeat = client.post(plan["complete_url"])
    assert repeat.status_code == 200 and repeat.json()["digest"] == done.json()["digest"]
    state = client.get(f"/api/v1/uploads/{plan['id']}/").json()
    assert state["status"] == "completed" and state["result"] == {"adapter": "alice/tiny-lora", "version": 1}


def test_names_sizes_and_permissions_are_checked_before_any_byte_is_sent(
    alice: Any, bob: Any, client_for: Any, lora_dir: Path, settings: Any
) -> None:
    files = announce(folder_files(lora_dir))
    owner = client_for(alice)

    bad_name = start(owner, "alice/x", [*files, {"path": "../escape", "size": 1, "sha256": "0" * 64}])
    settings.MAX_FILE_SIZE = 1000
    too_big = start(owner, "alice/x", files)
    forbidden = start(client_for(bob), "alice/x", files)
    read_only = start(client_for(alice, "read"), "alice/x", files)
    anonymous = start(client_for(None), "alice/x", files)

    assert (bad_name.status_code, bad_name.json()["code"]) == (400, "bad_filename")
    assert (too_big.status_code, too_big.json()["code"]) == (413, "file_too_large")
    assert (forbidden.status_code, forbidden.json()["code"]) == (403, "namespace_forbidden")
    assert (read_only.status_code, read_only.json()["code"]) == (403, "token_scope")
    assert anonymous.status_code == 401
    assert not UploadSession.objects.exists()


def test_a_part_of_the_wrong_size_is_refused(alice: Any, client_for: Any, lora_dir: Path) -> None:
    client = client_for(alice)
    plan = start(client, "alice/tiny-lora", announce(folder_files(lora_dir))).json()
    part = plan["uploads"][0]["parts"][0]

    response = client.generic("PUT", part["url"], b"short", content_type="application/octet-stream")

    assert response.status_code == 400 and response.json()["code"] == "bad_part_size"


def test_an_upload_belongs_to_the_user_who_started_it(alice: Any, bob: Any, client_for: Any, lora_dir: Path) -> None:
    plan = start(client_for(alice), "alice/tiny-lora", announce(folder_files(lora_dir))).json()
    stranger = client_for(bob)

    assert stranger.get(f"/api/v1/uploads/{plan['id']}/").status_code == 404
    assert stranger.post(plan["complete_url"]).status_code == 404
    part = plan["uploads"][0]["parts"][0]
    body = b"x" * part["size"]
    assert stranger.generic("PUT", part["url"], body, content_type="application/octet-stream").status_code == 404


def test_expired_and_aborted_uploads_drop_their_parts(
    backend: str, alice: Any, client_for: Any, lora_dir: Path, local_blob_store: Path
) -> None:
    client = client_for(alice)
    files = folder_files(lora_dir)
    data = {hashlib.sha256(d).hexdigest(): d for _, d in files}
    expiring = start(client, "alice/a", announce(files)).json()
    send(client, expiring, data, only=2)
    aborted = start(client, "alice/b", announce(files)).json()
    UploadSession.objects.filter(pk=expiring["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert expire_sessions() == 1
    assert client.delete(f"/api/v1/uploads/{aborted['id']}/").status_code == 204

    statuses = dict(UploadSession.objects.values_list("name", "status"))
    assert statuses == {"a": UploadStatus.EXPIRED, "b": UploadStatus.ABORTED}
    assert client.post(expiring["complete_url"]).json()["code"] == "upload_closed"
    store = get_blob_store()
    if backend == "local":
        assert not list((local_blob_store / "uploads").iterdir())
    else:
        listing = store.client.list_multipart_uploads(Bucket=store.bucket)  # type: ignore[attr-defined]
        assert not listing.get("Uploads")
    # A new push of the same files starts afresh.
    assert start(client, "alice/a", announce(files)).status_code == 201

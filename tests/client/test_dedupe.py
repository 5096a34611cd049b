"""A file whose sha256 the hub already holds for you is not sent again; nor is a whole version."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from client import HubClient
from registry.models import AdapterVersion
from tests.client.helpers import copy_folder, folder_bytes
from tests.helpers import folder_files

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_pushing_the_same_folder_again_sends_no_bytes_and_returns_the_same_version(
    backend: str, request: pytest.FixtureRequest, hub_for: Any, alice: Any, lora_dir: Path
) -> None:
    if backend == "s3":
        request.getfixturevalue("s3_settings")
    first = hub_for(alice).push(lora_dir, "alice/tiny-lora")
    again_client = hub_for(alice)

    again = again_client.push(lora_dir, "alice/tiny-lora")

    assert not again.created and again.version.version == first.version.version == 1
    assert again.bytes_uploaded == 0 and again_client.session.part_puts == 0
    assert sorted(again.skipped) == sorted(folder_bytes(lora_dir))
    assert AdapterVersion.objects.count() == 1


def test_another_adapter_with_one_identical_file_sends_only_the_others(
    hub: HubClient, lora_dir: Path, tmp_path: Path
) -> None:
    readme = b"# Another adapter\n\nSame weights, another card.\n"
    other = copy_folder(lora_dir, tmp_path / "other", {"README.md": readme})
    hub.push(lora_dir, "alice/first")
    puts_before = hub.session.part_puts

    second = hub.push(other, "alice/second")

    assert second.created and sorted(second.skipped) == ["adapter_config.json", "adapter_model.safetensors"]
    assert second.bytes_uploaded == len(readme) and hub.session.part_puts - puts_before == 1
    assert folder_bytes(hub.pull("alice/second").path) == folder_bytes(other)


def test_knowing_a_private_files_sha256_is_not_enough_to_reuse_it(
    hub: HubClient, bob: Any, client_for: Any, lora_dir: Path
) -> None:
    hub.push(lora_dir, "alice/secret", visibility="private")
    stranger: APIClient = client_for(bob)
    files = [
        {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for path, data in folder_files(lora_dir)
    ]

    plan = stranger.post("/api/v1/uploads/", {"adapter": "bob/copy", "files": files}, format="json").json()

    # Bob must send every byte (and the hub will check them) before he can publish these files.
    assert [f["stored"] for f in plan["files"]] == [False, False, False]
    assert sorted(u["sha256"] for u in plan["uploads"]) == sorted(f["sha256"] for f in files)
    assert stranger.post(plan["complete_url"]).json()["code"] == "upload_incomplete"

"""Refusals: local validation says what the hub would say, before anything is sent; bad and
read-only tokens get clear errors."""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from client import AuthenticationError, HubClient, NotFound, PermissionDenied, ValidationError
from registry.models import Adapter, AdapterVersion
from registry.models.uploads import UploadSession, UploadStatus
from tests.client.helpers import copy_folder
from tests.helpers import dead_port, folder_files, push, stored_blobs

pytestmark = pytest.mark.django_db(transaction=True)


def _edit_weights(folder: Path, edit: Callable[[dict[str, Any], bytearray], None]) -> None:
    path = folder / "adapter_model.safetensors"
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header, body = json.loads(data[8 : 8 + length]), bytearray(data[8 + length :])
    edit(header, body)
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(body))


def nan_in_weights(folder: Path) -> None:
    def edit(header: dict[str, Any], body: bytearray) -> None:
        start = next(v for k, v in header.items() if k.endswith("lora_B.weight"))["data_offsets"][0]
        body[start : start + 4] = struct.pack("<f", float("nan"))

    _edit_weights(folder, edit)


def wrong_rank(folder: Path) -> None:
    config = json.loads((folder / "adapter_config.json").read_text())
    config["r"] = 8
    (folder / "adapter_config.json").write_text(json.dumps(config))


def pickled_weights(folder: Path) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buffer)
    (folder / "adapter_model.safetensors").unlink()
    (folder / "adapter_model.bin").write_bytes(buffer.getvalue())


def no_config(folder: Path) -> None:
    (folder / "adapter_config.json").unlink()


def no_base_model(folder: Path) -> None:
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = None
    (folder / "adapter_config.json").write_text(json.dumps(config))


def unregistered_base(folder: Path) -> None:
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "nobody/unknown-7b"
    (folder / "adapter_config.json").write_text(json.dumps(config))


def trained_from_an_anonymous_folder(folder: Path) -> None:
    """A local path whose last segment names no base: with two bases of its shapes, ambiguous."""
    from registry.services import register_base_model
    from tests.factories import tiny_llama_manifest

    register_base_model(name="org/llama-twin", manifest=tiny_llama_manifest())
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "/home/me/checkpoints/run-17"
    (folder / "adapter_config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("spoil", "code"),
    [
        (unregistered_base, "unknown_base_model"),
        (trained_from_an_anonymous_folder, "ambiguous_base_model"),
        (nan_in_weights, "non_finite"),
        (wrong_rank, "shape_mismatch"),
        (pickled_weights, "pickle_refused"),
        (no_config, "missing_config"),
        (no_base_model, "missing_base_model"),
    ],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_local_validation_refuses_with_the_hubs_own_message_and_sends_nothing(
    spoil: Callable[[Path], None],
    code: str,
    hub: HubClient,
    client_for: Any,
    alice: Any,
    lora_dir: Path,
    tmp_path: Path,
) -> None:
    folder = copy_folder(lora_dir, tmp_path / "bad")
    spoil(folder)

    with pytest.raises(ValidationError) as refused:
        hub.push(folder, "alice/bad")

    server = push(client_for(alice), "alice/bad", folder_files(folder)).json()
    assert (refused.value.code, refused.value.message) == (server["code"], server["message"])
    assert refused.value.code == code
    assert hub.session.count("POST") == 0 and hub.session.count("PUT") == 0, "nothing was sent"
    assert not UploadSession.objects.exists()


def test_a_local_path_is_resolved_as_the_hub_resolves_it(hub: HubClient, lora_dir: Path, tmp_path: Path) -> None:
    folder = copy_folder(lora_dir, tmp_path / "local")
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "/home/me/models/tiny-llama"
    (folder / "adapter_config.json").write_text(json.dumps(config))

    pushed = hub.push(folder, "alice/from-local")

    assert pushed.created and Adapter.objects.get(name="from-local").base_model.name == "hub-test/tiny-llama"
    pulled = json.loads((hub.pull("alice/from-local").path / "adapter_config.json").read_text())
    assert pulled == {**config, "base_model_name_or_path": "hub-test/tiny-llama"}


def test_without_local_checks_the_hub_refuses_at_completion_with_the_same_message(
    hub: HubClient, lora_dir: Path, tmp_path: Path
) -> None:
    folder = copy_folder(lora_dir, tmp_path / "bad")
    nan_in_weights(folder)
    with pytest.raises(ValidationError) as local:
        hub.push(folder, "alice/bad")

    with pytest.raises(ValidationError) as remote:
        hub.push(folder, "alice/bad", validate=False)

    assert remote.value.status == 422
    assert (remote.value.code, remote.value.message) == (local.value.code, local.value.message)
    assert UploadSession.objects.get().status == UploadStatus.FAILED
    assert not AdapterVersion.objects.exists() and not Adapter.objects.exists()


def test_a_wrong_token_is_refused_with_a_clear_error(live_server: Any, lora_dir: Path, tmp_path: Path) -> None:
    hub = HubClient(live_server.url, "ahub_not-a-real-token", cache_dir=tmp_path / "cache", progress=False)

    with pytest.raises(AuthenticationError) as refused:
        hub.whoami()
    with pytest.raises(AuthenticationError):
        hub.push(lora_dir, "alice/tiny-lora")

    assert refused.value.status == 401 and refused.value.code == "bad_token"
    assert "unknown, revoked or expired" in refused.value.message


def test_a_read_only_token_cannot_push(hub_for: Any, alice: Any, lora_dir: Path) -> None:
    reader = hub_for(alice, "read")

    with pytest.raises(PermissionDenied) as refused:
        reader.push(lora_dir, "alice/tiny-lora")

    assert refused.value.code == "token_scope" and "writing needs 'write'" in refused.value.message
    assert reader.session.count("PUT") == 0 and not UploadSession.objects.exists() and not stored_blobs()


def test_pushing_to_someone_elses_namespace_is_refused(hub_for: Any, bob: Any, alice: Any, lora_dir: Path) -> None:
    hub_for(alice).push(lora_dir, "alice/tiny-lora")

    with pytest.raises(PermissionDenied) as refused:
        hub_for(bob).push(lora_dir, "alice/tiny-lora")

    assert refused.value.code == "namespace_forbidden"


def test_anonymous_clients_read_public_adapters_but_cannot_push(hub: HubClient, hub_for: Any, lora_dir: Path) -> None:
    hub.push(lora_dir, "alice/tiny-lora")
    anonymous = hub_for(None)

    assert anonymous.pull("alice/tiny-lora").version == 1
    with pytest.raises(AuthenticationError):
        anonymous.push(lora_dir, "alice/tiny-lora")


def test_an_unknown_adapter_is_a_not_found_error(hub: HubClient) -> None:
    with pytest.raises(NotFound) as missing:
        hub.pull("alice/nothing-here")
    assert missing.value.code == "adapter_not_found"


def test_a_pull_while_the_store_is_down_is_a_clear_503(
    s3_settings: None, settings: Any, hub: HubClient, lora_dir: Path
) -> None:
    from client.errors import HubError
    from registry.blobs import reset_blob_store

    hub.push(lora_dir, "alice/tiny-lora")
    settings.BLOB_STORE = {**settings.BLOB_STORE, "ENDPOINT_URL": f"http://127.0.0.1:{dead_port()}"}
    reset_blob_store()

    with pytest.raises(HubError) as broken:
        hub.pull("alice/tiny-lora")

    assert (broken.value.status, broken.value.code) == (503, "storage_unavailable")
    assert "retry" in broken.value.message


def test_transfer_errors_never_show_a_presigned_urls_credentials() -> None:
    import requests

    from client.errors import scrubbed

    url = f"http://127.0.0.1:{dead_port()}/bucket/objects/ab?X-Amz-Credential=KEY%2F20261202&X-Amz-Signature=deadbeef"
    with pytest.raises(requests.RequestException) as failed:
        requests.get(url, timeout=5)
    message = scrubbed(failed.value)
    assert "/bucket/objects/ab" in message and "X-Amz" not in message and "deadbeef" not in message

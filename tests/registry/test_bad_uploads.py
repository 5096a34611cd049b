"""Every bad upload gets a clear 4xx with a stable code and leaves no rows and no blobs."""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from registry.models import Adapter, AdapterVersion, BaseModel, VersionFile
from registry.services import register_base_model
from tests.factories import BASE_MODEL_NAME
from tests.helpers import folder_files, json_of, push, stored_blobs

pytestmark = pytest.mark.django_db

Files = dict[str, bytes]


def split_safetensors(data: bytes) -> tuple[dict[str, Any], bytes]:
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length]), data[8 + length :]


def join_safetensors(header: dict[str, Any], body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def edit_header(edit: Callable[[dict[str, Any]], None]) -> Callable[[Files], None]:
    def apply(files: Files) -> None:
        header, body = split_safetensors(files["adapter_model.safetensors"])
        edit(header)
        files["adapter_model.safetensors"] = join_safetensors(header, body)

    return apply


def edit_config(edit: Callable[[dict[str, Any]], None]) -> Callable[[Files], None]:
    def apply(files: Files) -> None:
        config = json.loads(files["adapter_config.json"])
        edit(config)
        files["adapter_config.json"] = json.dumps(config).encode()

    return apply


def first_tensor(header: dict[str, Any], suffix: str) -> dict[str, Any]:
    return next(v for k, v in header.items() if k.endswith(suffix))


def pickled_weights(files: Files) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buffer)
    del files["adapter_model.safetensors"]
    files["adapter_model.bin"] = buffer.getvalue()


def nan_in_weights(files: Files) -> None:
    header, body = split_safetensors(files["adapter_model.safetensors"])
    info = first_tensor(header, "lora_B.weight")
    assert info["dtype"] == "F32"
    start = info["data_offsets"][0]
    body = body[:start] + struct.pack("<f", float("nan")) + body[start + 4 :]
    files["adapter_model.safetensors"] = join_safetensors(header, body)


def rename(old: str, new: str) -> Callable[[Files], None]:
    def apply(files: Files) -> None:
        files[new] = files.pop(old)

    return apply


def set_dtype(header: dict[str, Any]) -> None:
    first_tensor(header, "lora_A.weight")["dtype"] = "F31"


def wrong_size(header: dict[str, Any]) -> None:
    first_tensor(header, "lora_A.weight")["shape"][1] += 1


def offsets_out_of_file(header: dict[str, Any]) -> None:
    info = first_tensor(header, "lora_B.weight")
    info["data_offsets"] = [info["data_offsets"][0] + 10**9, info["data_offsets"][1] + 10**9]


def header_longer_than_file(files: Files) -> None:
    files["adapter_model.safetensors"] = struct.pack("<Q", 10**6) + b"{}"


def header_not_json(files: Files) -> None:
    files["adapter_model.safetensors"] = struct.pack("<Q", 5) + b"{nope"


BAD_UPLOADS: list[tuple[str, Callable[[Files], None], int, str]] = [
    ("pickled weights", pickled_weights, 400, "pickle_refused"),
    ("missing config", lambda f: f.pop("adapter_config.json"), 400, "missing_config"),
    ("missing weights", lambda f: f.pop("adapter_model.safetensors"), 400, "missing_weights"),
    ("path traversal", rename("README.md", "../../etc/cron.d/evil"), 400, "bad_filename"),
    ("absolute path", rename("README.md", "/etc/passwd"), 400, "bad_filename"),
    ("config not JSON", lambda f: f.__setitem__("adapter_config.json", b"{not json"), 422, "config_not_json"),
    ("rank zero", edit_config(lambda c: c.__setitem__("r", 0)), 422, "bad_config"),
    ("unknown peft_type", edit_config(lambda c: c.__setitem__("peft_type", "MAGIC")), 422, "unknown_peft_type"),
    (
        "truncated weights",
        lambda f: f.__setitem__("adapter_model.safetensors", f["adapter_model.safetensors"][:5]),
        422,
        "truncated_header",
    ),
    ("header longer than file", header_longer_than_file, 422, "header_length_beyond_file"),
    ("header not JSON", header_not_json, 422, "header_not_json"),
    ("unknown dtype", edit_header(set_dtype), 422, "unknown_dtype"),
    ("size not dtype x shape", edit_header(wrong_size), 422, "tensor_size_mismatch"),
    ("offsets outside the file", edit_header(offsets_out_of_file), 422, "offsets_out_of_bounds"),
    ("NaN weights", nan_in_weights, 422, "non_finite"),
    ("rank differs from config", edit_config(lambda c: c.__setitem__("r", 8)), 422, "shape_mismatch"),
    (
        "module not targeted",
        edit_config(lambda c: c.__setitem__("target_modules", ["k_proj"])),
        422,
        "untargeted_module",
    ),
    ("method mismatch", lambda f: None, 422, "method_mismatch"),
]


@pytest.mark.parametrize(("case", "corrupt", "status", "code"), BAD_UPLOADS, ids=[c[0] for c in BAD_UPLOADS])
def test_a_bad_upload_is_refused_and_leaves_nothing(
    case: str,
    corrupt: Callable[[Files], None],
    status: int,
    code: str,
    alice: Any,
    client_for: Any,
    lora_dir: Path,
    local_blob_store: Path,
) -> None:
    files = dict(folder_files(lora_dir))
    corrupt(files)
    fields = {"method": "ia3"} if case == "method mismatch" else {}

    response = push(client_for(alice), "alice/broken", sorted(files.items()), **fields)

    assert response.status_code == status, response.content
    body = json_of(response)
    assert body["code"] and body["message"]
    if code:
        assert body["code"] == code, body
    assert_nothing_left(local_blob_store)


def assert_nothing_left(blob_root: Path) -> None:
    assert Adapter.objects.count() == 0
    assert AdapterVersion.objects.count() == 0
    assert VersionFile.objects.count() == 0
    assert stored_blobs() == []
    leftovers = [p for p in blob_root.rglob("*") if p.is_file()] if blob_root.exists() else []
    assert leftovers == []


def test_all_bad_upload_codes_are_distinct_enough_to_act_on() -> None:
    codes = [code for _, _, _, code in BAD_UPLOADS]
    assert len(BAD_UPLOADS) >= 15 and all(codes) and len(set(codes)) >= 15


def test_shapes_that_disagree_with_the_base_model_manifest_are_refused(
    alice: Any, client_for: Any, lora_dir: Path, local_blob_store: Path
) -> None:
    register_base_model(
        name=BASE_MODEL_NAME,
        manifest={f"model.layers.{i}.self_attn.{m}": [64, 32] for i in range(2) for m in ("q_proj", "v_proj")},
    )
    response = push(client_for(alice), "alice/broken", folder_files(lora_dir))

    assert response.status_code == 422
    assert json_of(response)["code"] == "base_shape_mismatch"
    assert_nothing_left(local_blob_store)


def test_modules_the_base_model_does_not_have_are_refused(
    alice: Any, client_for: Any, lora_dir: Path, local_blob_store: Path
) -> None:
    register_base_model(name=BASE_MODEL_NAME, manifest={"model.layers.0.mlp.up_proj": [128, 64]})
    response = push(client_for(alice), "alice/broken", folder_files(lora_dir))

    assert response.status_code == 422
    assert json_of(response)["code"] == "unknown_module"
    assert_nothing_left(local_blob_store)


def test_an_unregistered_base_model_is_refused_and_creates_no_base_model(
    alice: Any, client_for: Any, lora_dir: Path, local_blob_store: Path
) -> None:
    response = push(client_for(alice), "alice/broken", folder_files(lora_dir), base_model="meta-llama/Llama-3.1-8B")

    assert response.status_code == 422
    assert json_of(response)["code"] == "unknown_base_model"
    assert "meta-llama/Llama-3.1-8B" in json_of(response)["message"]
    assert_nothing_left(local_blob_store)
    assert list(BaseModel.objects.values_list("name", flat=True)) == [BASE_MODEL_NAME]


def test_a_base_model_whose_shapes_contradict_the_adapter_is_refused(
    alice: Any, client_for: Any, lora_dir: Path, local_blob_store: Path
) -> None:
    register_base_model(
        name="meta-llama/Llama-3.1-8B",
        manifest={f"model.layers.{i}.self_attn.{m}": [4096, 4096] for i in range(32) for m in ("q_proj", "v_proj")},
    )
    response = push(client_for(alice), "alice/broken", folder_files(lora_dir), base_model="meta-llama/Llama-3.1-8B")

    assert response.status_code == 422
    assert json_of(response)["code"] == "base_shape_mismatch"
    assert_nothing_left(local_blob_store)


@pytest.mark.parametrize(
    ("setting", "code"), [("MAX_FILE_SIZE", "file_too_large"), ("MAX_VERSION_SIZE", "version_too_large")]
)
def test_size_caps_answer_413(
    setting: str, code: str, settings: Any, alice: Any, client_for: Any, lora_dir: Path, local_blob_store: Path
) -> None:
    setattr(settings, setting, 4096)
    response = push(client_for(alice), "alice/broken", folder_files(lora_dir))

    assert response.status_code == 413, response.content
    assert json_of(response)["code"] == code
    assert_nothing_left(local_blob_store)


def test_a_file_sent_twice_is_refused(alice: Any, client_for: Any, lora_dir: Path, local_blob_store: Path) -> None:
    files = folder_files(lora_dir)
    response = push(client_for(alice), "alice/broken", files + [files[0]])

    assert response.status_code == 400
    assert json_of(response)["code"] == "duplicate_file"
    assert_nothing_left(local_blob_store)


def test_a_push_without_files_is_refused(alice: Any, client_for: Any, local_blob_store: Path) -> None:
    response = push(client_for(alice), "alice/broken", [], task="x")

    assert response.status_code == 400
    assert json_of(response)["code"] == "no_files"
    assert_nothing_left(local_blob_store)


def test_an_invalid_adapter_name_is_refused(
    alice: Any, client_for: Any, lora_dir: Path, local_blob_store: Path
) -> None:
    response = push(client_for(alice), "alice/-bad%20name", folder_files(lora_dir))

    assert response.status_code == 400
    assert json_of(response)["code"] == "bad_name"
    assert_nothing_left(local_blob_store)


def test_a_database_failure_after_storing_blobs_leaves_no_version_and_no_blobs(
    alice: Any, client_for: Any, lora_dir: Path, local_blob_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import OperationalError

    def fail(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("server closed the connection unexpectedly at 10.0.0.7")

    monkeypatch.setattr(VersionFile.objects, "bulk_create", fail)
    response = push(client_for(alice), "alice/broken", folder_files(lora_dir))

    assert response.status_code == 503 and json_of(response)["code"] == "database_unavailable"
    assert "10.0.0.7" not in response.content.decode(), "nothing internal is leaked"
    assert AdapterVersion.objects.count() == 0
    assert stored_blobs() == []

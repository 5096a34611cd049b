from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from registry.models import Adapter, AdapterVersion
from tests.factories import BASE_MODEL_NAME, tiny_llama
from tests.helpers import download, folder_files, json_of, push, push_folder, stored_blobs

pytestmark = pytest.mark.django_db


def _pull(client: Any, version_json: dict[str, Any], dest: Path) -> Path:
    for f in version_json["files"]:
        status, body, _ = download(client, f["url"])
        assert status == 200
        target = dest / f["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
    return dest


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_real_peft_adapter_pushed_and_downloaded_is_byte_identical_and_loads_in_peft(
    backend: str, request: pytest.FixtureRequest, alice: Any, client_for: Any, lora_dir: Path, tmp_path: Path
) -> None:
    if backend == "s3":
        request.getfixturevalue("s3_settings")
    client = client_for(alice)

    response = push_folder(client, "alice/tiny-lora", lora_dir, task="text-generation", tags="demo,test")

    assert response.status_code == 201, response.content
    body = json_of(response)
    assert body["version"] == 1
    sent = dict(folder_files(lora_dir))
    assert {f["path"]: f["sha256"] for f in body["files"]} == {
        path: hashlib.sha256(data).hexdigest() for path, data in sent.items()
    }
    pulled = _pull(client, body, tmp_path / "pulled")
    assert dict(folder_files(pulled)) == sent

    import torch
    from peft import PeftModel

    ids = torch.tensor([[1, 5, 9, 17, 3]])
    with torch.no_grad():
        expected = PeftModel.from_pretrained(tiny_llama(), lora_dir)(ids).logits
        got = PeftModel.from_pretrained(tiny_llama(), pulled)(ids).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert not torch.allclose(expected, tiny_llama()(ids).logits), "the adapter must change the logits"


def test_the_first_push_creates_the_adapter_with_metadata_from_fields_and_config(
    alice: Any, client_for: Any, lora_dir: Path
) -> None:
    response = push_folder(
        client_for(alice), "alice/tiny-lora", lora_dir, task="summarization", tags="a, b", license="mit"
    )

    assert response.status_code == 201
    adapter = Adapter.objects.get(namespace__name="alice", name="tiny-lora")
    assert adapter.base_model.name == BASE_MODEL_NAME  # from adapter_config.json
    assert adapter.method == "lora"
    assert (adapter.task, adapter.license) == ("summarization", "mit")
    assert sorted(t.name for t in adapter.tags.all()) == ["a", "b"]
    assert adapter.card.startswith("# A test adapter")
    version = adapter.versions.get()
    assert (version.peft_type, version.rank, version.lora_alpha) == ("LORA", 4, 8.0)
    assert sorted(version.target_modules) == ["q_proj", "v_proj"]


def test_re_pushing_identical_files_returns_the_existing_version(alice: Any, client_for: Any, lora_dir: Path) -> None:
    client = client_for(alice)
    first = push_folder(client, "alice/tiny-lora", lora_dir)
    again = push_folder(client, "alice/tiny-lora", lora_dir)

    assert (first.status_code, again.status_code) == (201, 200)
    assert json_of(again)["version"] == 1
    assert AdapterVersion.objects.count() == 1


def test_new_content_makes_consecutive_versions_and_identical_blobs_are_stored_once(
    alice: Any, client_for: Any, lora_dir: Path, lora_dir_2: Path
) -> None:
    client = client_for(alice)
    assert json_of(push_folder(client, "alice/tiny-lora", lora_dir))["version"] == 1
    assert json_of(push_folder(client, "alice/tiny-lora", lora_dir_2, label="v2.0"))["version"] == 2
    assert json_of(push_folder(client, "alice/other", lora_dir))["version"] == 1

    distinct = {
        sha
        for _, data in folder_files(lora_dir) + folder_files(lora_dir_2)
        for sha in [hashlib.sha256(data).hexdigest()]
    }
    assert sorted(stored_blobs()) == sorted(distinct)
    by_label = json_of(client.get("/api/v1/adapters/alice/tiny-lora/versions/v2.0/"))
    assert by_label["version"] == 2


def test_a_taken_label_is_a_conflict_and_creates_nothing(
    alice: Any, client_for: Any, lora_dir: Path, lora_dir_2: Path
) -> None:
    client = client_for(alice)
    push_folder(client, "alice/tiny-lora", lora_dir, label="v1")
    response = push_folder(client, "alice/tiny-lora", lora_dir_2, label="v1")

    assert response.status_code == 409
    assert json_of(response)["code"] == "label_taken"
    assert AdapterVersion.objects.count() == 1


def test_yanked_versions_leave_listings_but_stay_downloadable_by_number(
    alice: Any, client_for: Any, lora_dir: Path, lora_dir_2: Path
) -> None:
    client = client_for(alice)
    push_folder(client, "alice/tiny-lora", lora_dir)
    push_folder(client, "alice/tiny-lora", lora_dir_2)

    refused = client.post("/api/v1/adapters/alice/tiny-lora/versions/2/yank/", {}, format="json")
    assert refused.status_code == 400 and json_of(refused)["code"] == "missing_reason"
    yanked = client.post(
        "/api/v1/adapters/alice/tiny-lora/versions/2/yank/", {"reason": "NaNs in layer 3"}, format="json"
    )
    assert yanked.status_code == 200 and json_of(yanked)["yanked_reason"] == "NaNs in layer 3"

    listed = json_of(client.get("/api/v1/adapters/alice/tiny-lora/versions/"))
    assert [v["version"] for v in listed["results"]] == [1]
    everything = json_of(client.get("/api/v1/adapters/alice/tiny-lora/versions/?include_yanked=1"))
    assert [v["version"] for v in everything["results"]] == [2, 1]
    assert json_of(client.get("/api/v1/adapters/alice/tiny-lora/"))["latest_version"] == 1
    status, body, _ = download(client, "/api/v1/adapters/alice/tiny-lora/versions/2/files/adapter_model.safetensors")
    assert status == 200 and body == (lora_dir_2 / "adapter_model.safetensors").read_bytes()
    assert AdapterVersion.objects.filter(number=2).exists(), "a yank never deletes"


def test_local_downloads_answer_byte_ranges_and_count_whole_weight_downloads(
    alice: Any, client_for: Any, lora_dir: Path
) -> None:
    client = client_for(alice)
    push_folder(client, "alice/tiny-lora", lora_dir)
    url = "/api/v1/adapters/alice/tiny-lora/versions/1/files/adapter_model.safetensors"
    data = (lora_dir / "adapter_model.safetensors").read_bytes()

    status, body, response = download(client, url, HTTP_RANGE="bytes=10-99")
    assert status == 206 and body == data[10:100]
    assert response["Content-Range"] == f"bytes 10-99/{len(data)}"
    status, body, _ = download(client, url, HTTP_RANGE="bytes=-16")
    assert status == 206 and body == data[-16:]
    status, _, response = download(client, url, HTTP_RANGE=f"bytes={len(data)}-")
    assert status == 416
    status, body, _ = download(client, url)
    assert status == 200 and body == data
    download(client, "/api/v1/adapters/alice/tiny-lora/versions/1/files/adapter_config.json")
    assert client.head(url).status_code == 200

    assert Adapter.objects.get().downloads == 1  # ranged resumes, HEADs and config reads are not downloads


def test_s3_downloads_redirect_to_a_short_lived_presigned_url(
    s3_settings: None, alice: Any, client_for: Any, lora_dir: Path
) -> None:
    client = client_for(alice)
    push_folder(client, "alice/tiny-lora", lora_dir)

    response = client.get("/api/v1/adapters/alice/tiny-lora/versions/latest/files/adapter_model.safetensors")

    assert response.status_code == 302
    assert "X-Amz-Signature=" in response["Location"] and "X-Amz-Expires=300" in response["Location"]
    assert Adapter.objects.get().downloads == 1


def test_nested_file_paths_are_kept(alice: Any, client_for: Any, lora_dir: Path) -> None:
    files = folder_files(lora_dir) + [("extras/notes.txt", b"hello")]
    response = push(client_for(alice), "alice/tiny-lora", files)

    assert response.status_code == 201, response.content
    assert "extras/notes.txt" in {f["path"] for f in json_of(response)["files"]}

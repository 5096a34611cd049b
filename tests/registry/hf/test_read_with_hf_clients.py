"""Reading through unmodified huggingface_hub and transformers, against a live hub (local store)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest

from registry.access import Actor
from registry.models import Adapter
from registry.services import yank_version
from tests.factories import BASE_MODEL_NAME, tiny_llama
from tests.registry.hf.conftest import Hub


@pytest.fixture
def nested_lora_dir(lora_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "nested"
    shutil.copytree(lora_dir, folder)
    (folder / "notes").mkdir()
    (folder / "notes" / "train log.txt").write_text("step 1: loss 2.0\n")
    return folder


def test_model_info_files_and_existence_checks_answer_like_the_hub(
    hub: Hub, alice: Any, publish: Any, nested_lora_dir: Path
) -> None:
    from huggingface_hub import HfApi

    version = publish(alice, "alice/tiny-lora", nested_lora_dir, task="text-generation", license="mit", tags=["sql"])
    api = HfApi()

    info = api.model_info("alice/tiny-lora", files_metadata=True)
    assert (info.id, info.sha, info.author, info.private) == ("alice/tiny-lora", version.commit_id, "alice", False)
    assert info.library_name == "peft"
    assert info.pipeline_tag == "text-generation"
    assert {"peft", "lora", f"base_model:adapter:{BASE_MODEL_NAME}", "license:mit", "sql"} <= set(info.tags)
    assert info.card_data is not None and info.card_data.base_model == BASE_MODEL_NAME
    weights = next(s for s in info.siblings if s.rfilename == "adapter_model.safetensors")
    expected_sha = hashlib.sha256((nested_lora_dir / "adapter_model.safetensors").read_bytes()).hexdigest()
    assert weights.lfs is not None and (weights.lfs.sha256, weights.size) == (expected_sha, weights.lfs.size)
    assert api.model_info("alice/tiny-lora", revision="1").sha == version.commit_id

    assert api.list_repo_files("alice/tiny-lora") == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "notes/train log.txt",
    ]
    top = {entry.path: type(entry).__name__ for entry in api.list_repo_tree("alice/tiny-lora")}
    assert top == {
        "README.md": "RepoFile",
        "adapter_config.json": "RepoFile",
        "adapter_model.safetensors": "RepoFile",
        "notes": "RepoFolder",
    }
    assert [e.path for e in api.list_repo_tree("alice/tiny-lora", path_in_repo="notes")] == ["notes/train log.txt"]

    assert api.file_exists("alice/tiny-lora", "notes/train log.txt")
    assert not api.file_exists("alice/tiny-lora", "adapter_model.bin")
    assert not api.file_exists("alice/tiny-lora", "adapter_config.json", revision="7")
    assert api.repo_exists("alice/tiny-lora")
    assert not api.repo_exists("alice/nope")
    assert api.revision_exists("alice/tiny-lora", version.commit_id)
    assert not api.revision_exists("alice/tiny-lora", "7")


def test_every_revision_form_reaches_one_version_and_main_skips_yanked_ones(
    hub: Hub, alice: Any, publish: Any, lora_dir: Path, lora_dir_2: Path
) -> None:
    from huggingface_hub import HfApi, hf_hub_download

    v1 = publish(alice, "alice/tiny-lora", lora_dir, label="stable")
    v2 = publish(alice, "alice/tiny-lora", lora_dir_2)
    weights = "adapter_model.safetensors"
    v1_bytes, v2_bytes = (lora_dir / weights).read_bytes(), (lora_dir_2 / weights).read_bytes()

    assert Path(hf_hub_download("alice/tiny-lora", weights)).read_bytes() == v2_bytes
    for revision in ("1", "stable", v1.commit_id, v1.digest):
        path = Path(hf_hub_download("alice/tiny-lora", weights, revision=revision))
        assert path.read_bytes() == v1_bytes, revision
        assert path.parent.name == v1.commit_id  # the cache's snapshot folder is the commit id

    yank_version(actor=Actor(user=alice), version=v2, reason="broken")
    assert HfApi().model_info("alice/tiny-lora").sha == v1.commit_id
    assert Path(hf_hub_download("alice/tiny-lora", weights, revision="2")).read_bytes() == v2_bytes
    refs = HfApi().list_repo_refs("alice/tiny-lora")
    assert [(b.name, b.target_commit) for b in refs.branches] == [("main", v1.commit_id)]
    assert {t.name for t in refs.tags} == {"1", "stable", "2"}
    commits = HfApi().list_repo_commits("alice/tiny-lora", revision="2")
    assert [c.commit_id for c in commits] == [v2.commit_id, v1.commit_id]


def test_a_branch_download_stays_on_the_commit_its_head_request_saw(
    hub: Hub, alice: Any, publish: Any, lora_dir: Path, lora_dir_2: Path
) -> None:
    import httpx2
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    v1 = publish(alice, "alice/tiny-lora", lora_dir)
    metadata = get_hf_file_metadata(hf_hub_url("alice/tiny-lora", "adapter_model.safetensors"))
    publish(alice, "alice/tiny-lora", lora_dir_2)  # a push between the client's HEAD and its GET

    assert metadata.commit_hash == v1.commit_id
    assert metadata.location.endswith(f"/alice/tiny-lora/resolve/{v1.commit_id}/adapter_model.safetensors")
    assert httpx2.get(metadata.location).content == (lora_dir / "adapter_model.safetensors").read_bytes()


def test_downloads_count_once_per_weights_fetch_and_never_for_head_requests(
    hub: Hub, alice: Any, publish: Any, lora_dir: Path, client_for: Any
) -> None:
    from huggingface_hub import file_exists, hf_hub_download

    publish(alice, "alice/tiny-lora", lora_dir)

    hf_hub_download("alice/tiny-lora", "adapter_config.json")
    assert file_exists("alice/tiny-lora", "adapter_model.safetensors")
    hf_hub_download("alice/tiny-lora", "adapter_model.safetensors")
    hf_hub_download("alice/tiny-lora", "adapter_model.safetensors")  # cached: a HEAD only
    assert Adapter.objects.get(name="tiny-lora").downloads == 1
    client_for(None).get("/api/v1/adapters/alice/tiny-lora/versions/1/files/adapter_model.safetensors")
    assert Adapter.objects.get(name="tiny-lora").downloads == 2  # one counter for both APIs


def test_transformers_load_adapter_resolves_revisions_through_the_api(
    hub: Hub, alice: Any, publish: Any, lora_dir: Path, lora_dir_2: Path
) -> None:
    import torch
    from peft import PeftModel

    publish(alice, "alice/tiny-lora", lora_dir)
    publish(alice, "alice/tiny-lora", lora_dir_2)
    ids = torch.tensor([[1, 5, 9, 17, 3]])
    model = tiny_llama()

    model.load_adapter("alice/tiny-lora", adapter_kwargs={"revision": "1"})

    with torch.no_grad():
        expected = PeftModel.from_pretrained(tiny_llama(), lora_dir)(ids).logits
        torch.testing.assert_close(model(ids).logits, expected, rtol=0, atol=0)


def test_a_bad_token_is_an_authentication_error_not_a_missing_repo(
    hub: Hub, alice: Any, publish: Any, lora_dir: Path
) -> None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    publish(alice, "alice/tiny-lora", lora_dir)
    hub.use_token("ahub_not-a-real-token")

    with pytest.raises(HfHubHTTPError) as raised:
        hf_hub_download("alice/tiny-lora", "adapter_config.json")
    assert not isinstance(raised.value, RepositoryNotFoundError)
    assert raised.value.response.status_code == 401
    assert "Invalid credentials" in str(raised.value)

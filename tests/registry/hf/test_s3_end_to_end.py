"""The issue's acceptance flows, with the real clients against a live hub on the S3 store (SeaweedFS)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from registry.models import Adapter
from tests.factories import BASE_MODEL_NAME, tiny_llama
from tests.helpers import folder_files
from tests.registry.hf.conftest import Hub

pytestmark = pytest.mark.usefixtures("s3_settings")

IDS = [[1, 5, 9, 17, 3]]


def _logits(model: Any) -> Any:
    import torch

    with torch.no_grad():
        return model(torch.tensor(IDS)).logits


def test_a_pushed_adapter_loads_in_an_unmodified_peft_process_with_identical_logits(
    hub: Hub, alice: Any, publish: Any, token_for: Any, lora_dir: Path, lora_dir_2: Path, tmp_path: Path
) -> None:
    import torch
    from peft import PeftModel

    publish(alice, "alice/tiny-lora", lora_dir, visibility="private")
    publish(alice, "alice/tiny-lora", lora_dir_2, label="v2")
    expected_v1 = _logits(PeftModel.from_pretrained(tiny_llama(), lora_dir))
    expected_v2 = _logits(PeftModel.from_pretrained(tiny_llama(), lora_dir_2))
    assert not torch.allclose(expected_v1, expected_v2)

    # Private: only HF_ENDPOINT and the hub token make this work, as a user's shell would.
    token = token_for(alice, scope="read")
    hub.run_client("peft_load.py", "alice/tiny-lora", str(tmp_path / "out.pt"), "1", "main", token=token)

    loaded = torch.load(tmp_path / "out.pt")
    torch.testing.assert_close(loaded["1"]["logits"], expected_v1, rtol=0, atol=0)
    torch.testing.assert_close(loaded["main"]["logits"], expected_v2, rtol=0, atol=0)
    assert loaded["1"]["base_model"] == BASE_MODEL_NAME
    # Each load fetched the weights once, through the hub's 302 to S3 (HEADs are not downloads).
    assert Adapter.objects.get(name="tiny-lora").downloads == 2


def test_push_to_hub_creates_a_repo_then_new_versions_that_the_rest_api_lists_and_peft_loads(
    hub: Hub, alice: Any, publish: Any, token_for: Any, client_for: Any, lora_dir: Path
) -> None:
    import torch
    from peft import PeftModel

    publish(alice, "alice/tiny-lora", lora_dir)
    hub.use_token(token_for(alice))
    model = PeftModel.from_pretrained(tiny_llama(), "alice/tiny-lora")
    original = _logits(model)

    first = model.push_to_hub("alice/tuned-lora")  # a new repo: create_repo, then its first commit
    with torch.no_grad():  # a "fine-tuning step"
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.add_(0.5)
    tuned = _logits(model)
    second = model.push_to_hub("alice/tuned-lora", commit_message="Tuned")

    rest = client_for(alice).get("/api/v1/adapters/alice/tuned-lora/versions/").json()["results"]
    assert [(v["version"], v["digest"][:40]) for v in rest] == [(2, second.oid), (1, first.oid)]
    assert {f["path"] for f in rest[0]["files"]} == {"README.md", "adapter_config.json", "adapter_model.safetensors"}
    assert Adapter.objects.get(name="tuned-lora").base_model.name == BASE_MODEL_NAME
    latest = PeftModel.from_pretrained(tiny_llama(), "alice/tuned-lora")
    pinned = PeftModel.from_pretrained(tiny_llama(), "alice/tuned-lora", revision=first.oid)
    torch.testing.assert_close(_logits(latest), tuned, rtol=0, atol=0)
    torch.testing.assert_close(_logits(pinned), original, rtol=0, atol=0)


def test_snapshot_download_of_an_older_revision_returns_that_versions_files(
    hub: Hub, alice: Any, publish: Any, lora_dir: Path, lora_dir_2: Path
) -> None:
    from huggingface_hub import snapshot_download

    v1 = publish(alice, "alice/tiny-lora", lora_dir, label="first")
    publish(alice, "alice/tiny-lora", lora_dir_2)

    for revision in ("1", "first", v1.commit_id):
        folder = Path(snapshot_download("alice/tiny-lora", revision=revision))
        assert folder.name == v1.commit_id
        assert dict(folder_files(folder)) == dict(folder_files(lora_dir)), revision
    latest = Path(snapshot_download("alice/tiny-lora"))
    assert dict(folder_files(latest)) == dict(folder_files(lora_dir_2))


def test_missing_repo_file_revision_and_private_repo_raise_the_matching_hf_exceptions(
    hub: Hub, alice: Any, bob: Any, publish: Any, token_for: Any, lora_dir: Path
) -> None:
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    publish(alice, "alice/tiny-lora", lora_dir)
    publish(alice, "alice/secret-lora", lora_dir, visibility="private")

    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("alice/nope", "adapter_config.json")
    with pytest.raises(RemoteEntryNotFoundError) as missing:
        hf_hub_download("alice/tiny-lora", "nope.json")
    assert isinstance(missing.value, EntryNotFoundError)  # what peft and transformers catch
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("alice/tiny-lora", "adapter_config.json", revision="9")
    with pytest.raises(RevisionNotFoundError):
        snapshot_download("alice/tiny-lora", revision="no-such-label")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("alice/secret-lora", "adapter_config.json")  # no token
    hub.use_token(token_for(bob))
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("alice/secret-lora", "adapter_config.json")  # a token that may not see it
    hub.use_token(token_for(alice, scope="read"))
    path = Path(hf_hub_download("alice/secret-lora", "adapter_model.safetensors"))
    assert (
        hashlib.sha256(path.read_bytes()).hexdigest()
        == hashlib.sha256((lora_dir / "adapter_model.safetensors").read_bytes()).hexdigest()
    )

"""Writing through unmodified huggingface_hub: create_repo, upload_folder, create_commit."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import pytest

from registry.hf.serializers import PENDING_BASE_MODEL
from registry.models import Adapter, AdapterVersion
from tests.factories import BASE_MODEL_NAME
from tests.helpers import folder_files
from tests.registry.hf.conftest import Hub


def files_of(version: AdapterVersion) -> dict[str, str]:
    return {f.path: f.sha256 for f in version.files.all()}


def test_create_repo_then_upload_folder_publishes_a_version_the_rest_api_lists(
    hub: Hub, alice: Any, token_for: Any, client_for: Any, lora_dir: Path
) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    hub.use_token(token_for(alice))
    api = HfApi()  # hf_xet is installed and HF_HUB_DISABLE_XET unset: the pipelined upload path

    url = api.create_repo("alice/new-lora", private=True)
    assert url == f"{hub.url}/alice/new-lora" and url.repo_id == "alice/new-lora"
    assert api.create_repo("alice/new-lora", exist_ok=True).repo_id == "alice/new-lora"
    with pytest.raises(HfHubHTTPError) as exists:
        api.create_repo("alice/new-lora")
    assert exists.value.response.status_code == 409
    assert api.model_info("alice/new-lora").sha is None  # a repo with no version yet
    listed = client_for(alice).get("/api/v1/base-models/").json()["results"]
    assert "pending:" not in str(listed), "the placeholder base model of an empty repo is never listed"

    commit = api.upload_folder(repo_id="alice/new-lora", folder_path=lora_dir, commit_message="First")
    again = api.upload_folder(repo_id="alice/new-lora", folder_path=lora_dir)

    adapter = Adapter.objects.get(name="new-lora")
    version = adapter.versions.get()  # the identical re-upload made no second version
    assert commit.oid == again.oid == version.commit_id
    assert commit.commit_url == f"{hub.url}/alice/new-lora/commit/{version.commit_id}"
    assert (adapter.base_model.name, adapter.method, adapter.visibility) == (BASE_MODEL_NAME, "lora", "private")
    rest = client_for(alice).get("/api/v1/adapters/alice/new-lora/versions/1/").json()
    assert {f["path"] for f in rest["files"]} == {p for p, _ in folder_files(lora_dir)}
    assert client_for(None).get("/api/v1/adapters/alice/new-lora/").status_code == 404  # still private
    api.update_repo_settings("alice/new-lora", private=False)
    assert client_for(None).get("/api/v1/adapters/alice/new-lora/").status_code == 200


def test_a_commit_adds_copies_and_deletes_relative_to_its_parent(
    hub: Hub, alice: Any, publish: Any, token_for: Any, lora_dir: Path
) -> None:
    from huggingface_hub import CommitOperationAdd, CommitOperationCopy, CommitOperationDelete, HfApi

    v1 = publish(alice, "alice/tiny-lora", lora_dir)
    hub.use_token(token_for(alice))
    api = HfApi()

    api.create_commit(
        "alice/tiny-lora",
        operations=[
            CommitOperationAdd("notes/log.txt", io.BytesIO(b"step 1\n")),
            CommitOperationCopy("adapter_config.json", "notes/config-backup.json"),
            CommitOperationDelete("README.md"),
        ],
        commit_message="Notes",
        parent_commit=v1.commit_id,
    )
    api.delete_folder("notes/", repo_id="alice/tiny-lora")

    v2, v3 = AdapterVersion.objects.filter(number__gt=1).order_by("number")
    parent = files_of(v1)
    assert files_of(v2) == {
        "adapter_config.json": parent["adapter_config.json"],
        "adapter_model.safetensors": parent["adapter_model.safetensors"],
        "notes/config-backup.json": parent["adapter_config.json"],
        "notes/log.txt": v2.files.get(path="notes/log.txt").sha256,
    }
    assert files_of(v3) == {p: s for p, s in parent.items() if p != "README.md"}
    assert files_of(v1) == parent  # versions are immutable


def test_a_refused_file_reaches_the_client_as_a_clear_error_and_creates_nothing(
    hub: Hub, alice: Any, token_for: Any, lora_dir: Path, tmp_path: Path
) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import BadRequestError, HfHubHTTPError

    hub.use_token(token_for(alice))
    api = HfApi()
    api.create_repo("alice/new-lora")
    pickled = tmp_path / "pickled"
    shutil.copytree(lora_dir, pickled)
    (pickled / "training_args.bin").write_bytes(b"\x80\x04K\x01.")
    no_base = tmp_path / "no-base"
    shutil.copytree(lora_dir, no_base)
    config = (no_base / "adapter_config.json").read_text()
    (no_base / "adapter_config.json").write_text(config.replace(f'"{BASE_MODEL_NAME}"', "null"))

    with pytest.raises(BadRequestError) as refused:
        api.upload_folder(repo_id="alice/new-lora", folder_path=pickled)
    assert "training_args.bin is a pickle-based format" in str(refused.value)
    with pytest.raises(HfHubHTTPError) as unprocessable:
        api.upload_folder(repo_id="alice/new-lora", folder_path=no_base)
    assert unprocessable.value.response.status_code == 422
    assert "base_model_name_or_path" in str(unprocessable.value)
    with pytest.raises(ValueError, match="Invalid metadata in README.md"):
        api.upload_file(
            path_or_fileobj=b"---\nlicense: [mit\n---\n", path_in_repo="README.md", repo_id="alice/new-lora"
        )

    adapter = Adapter.objects.get(name="new-lora")
    assert not adapter.versions.exists()
    assert adapter.base_model.name == PENDING_BASE_MODEL  # the refused commits changed nothing


def test_writing_needs_a_write_scoped_token_for_the_namespace(
    hub: Hub, alice: Any, bob: Any, publish: Any, token_for: Any, lora_dir: Path
) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    publish(alice, "alice/tiny-lora", lora_dir)
    api = HfApi()

    for token in (token_for(alice, scope="read"), token_for(bob), token_for(alice, namespace="alice", scope="read")):
        hub.use_token(token)
        with pytest.raises(HfHubHTTPError) as refused:
            api.upload_file(path_or_fileobj=b"x", path_in_repo="notes.txt", repo_id="alice/tiny-lora")
        assert refused.value.response.status_code == 403
        with pytest.raises(HfHubHTTPError):
            api.create_repo("alice/other")
    hub.use_token(None)
    with pytest.raises(HfHubHTTPError) as anonymous:
        api.upload_file(path_or_fileobj=b"x", path_in_repo="notes.txt", repo_id="alice/tiny-lora")
    assert anonymous.value.response.status_code == 401
    assert Adapter.objects.get(name="tiny-lora").versions.count() == 1
    assert not Adapter.objects.filter(name="other").exists()


def test_a_stale_parent_commit_is_refused_and_the_card_updates_metadata(
    hub: Hub, alice: Any, publish: Any, token_for: Any, lora_dir: Path, lora_dir_2: Path
) -> None:
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    v1 = publish(alice, "alice/tiny-lora", lora_dir)
    publish(alice, "alice/tiny-lora", lora_dir_2)
    hub.use_token(token_for(alice))
    api = HfApi()
    card = b"---\nlicense: apache-2.0\npipeline_tag: text-generation\ntags: [sql, base_model:adapter:x]\n---\n# Card\n"

    with pytest.raises(HfHubHTTPError) as stale:
        api.create_commit(
            "alice/tiny-lora",
            operations=[CommitOperationAdd("README.md", card)],
            commit_message="from an old checkout",
            parent_commit=v1.commit_id,
        )
    assert stale.value.response.status_code == 412
    api.upload_file(path_or_fileobj=card, path_in_repo="README.md", repo_id="alice/tiny-lora")

    adapter = Adapter.objects.get(name="tiny-lora")
    assert adapter.versions.count() == 3
    assert (adapter.license, adapter.task, [t.name for t in adapter.tags.all()]) == (
        "apache-2.0",
        "text-generation",
        ["sql"],
    )
    assert adapter.card.endswith("# Card\n")


def test_non_peft_methods_come_from_their_own_layout_over_hf(
    hub: Hub, alice: Any, token_for: Any, library_adapters: Path, tmp_path: Path
) -> None:
    """BitFit names its own type in its config; the `adapters` library's bottleneck adapters are known
    by their library's layout (its config, adapter.safetensors), whatever the card says."""
    import torch
    from huggingface_hub import HfApi

    from composer.bitfit import save_bitfit

    hub.use_token(token_for(alice))
    api = HfApi()
    bitfit = save_bitfit(
        {"model.layers.0.self_attn.q_proj.bias": torch.ones(64)}, tmp_path / "bf", base_model=BASE_MODEL_NAME
    )
    api.create_repo("alice/hf-bitfit")
    api.upload_folder(repo_id="alice/hf-bitfit", folder_path=bitfit)

    bottleneck = tmp_path / "bottleneck"
    shutil.copytree(library_adapters / "pfeiffer", bottleneck)
    (bottleneck / "README.md").write_text("---\nlibrary_name: adapter-transformers\ntags: [lora]\n---\n# B\n")
    api.create_repo("alice/hf-bottleneck")
    api.upload_folder(repo_id="alice/hf-bottleneck", folder_path=bottleneck)

    methods = dict(Adapter.objects.filter(name__startswith="hf-").values_list("name", "method"))
    assert methods == {"hf-bitfit": "bitfit", "hf-bottleneck": "bottleneck"}


def test_a_card_gives_the_same_metadata_whichever_client_pushed_it(
    hub: Hub, alice: Any, token_for: Any, client_for: Any, lora_dir: Path, tmp_path: Path
) -> None:
    """The card is written by huggingface_hub's own ModelCard, as PEFT's save_pretrained writes one;
    pushed over the REST API (as ahub does) and over the HF protocol, it files the same metadata."""
    from huggingface_hub import HfApi, ModelCard, ModelCardData

    from tests.helpers import push_folder

    folder = tmp_path / "carded"
    shutil.copytree(lora_dir, folder)
    data = ModelCardData(
        base_model=BASE_MODEL_NAME,
        license="mit",
        pipeline_tag="text-generation",
        datasets=["squad", "alice/private-set"],
        tags=["qa", "base_model:adapter:" + BASE_MODEL_NAME],
        library_name="peft",
    )
    ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n# QA adapter\n").save(folder / "README.md")

    assert push_folder(client_for(alice), "alice/by-rest", folder).status_code == 201
    hub.use_token(token_for(alice))
    api = HfApi()
    api.create_repo("alice/by-hf")
    api.upload_folder(repo_id="alice/by-hf", folder_path=folder)

    def metadata(name: str) -> tuple[Any, ...]:
        a = client_for(alice).get(f"/api/v1/adapters/alice/{name}/").json()
        return (a["base_model"], a["license"], a["task"], a["tags"], a["datasets"])

    assert (
        metadata("by-rest")
        == metadata("by-hf")
        == (
            BASE_MODEL_NAME,
            "mit",
            "text-generation",
            ["qa"],
            ["squad", "alice/private-set"],
        )
    )
    info = api.model_info("alice/by-hf")
    assert info.card_data is not None and info.card_data.datasets == ["squad", "alice/private-set"]
    assert "dataset:squad" in (info.tags or [])

"""Base models are served read-only over the HF protocol, and every push path files an adapter
trained from a local folder under the registered base model it matches."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from client import HubClient
from registry.base_models import register_from_folder
from registry.models import Adapter, BaseModel
from tests.adaptercheck.builders import OTHER_PEFT_KINDS
from tests.factories import BASE_MODEL_NAME, make_lora_adapter, tiny_llama
from tests.helpers import push_folder
from tests.registry.hf.conftest import Hub

LOCAL_BASE = "/home/me/models/tiny-llama"  # the folder a user trained from, as PEFT records it


@pytest.fixture
def stored_base(base_model_folder: Path, registered_test_base: BaseModel, tmp_path: Path) -> BaseModel:
    """The tests' tiny Llama, with a tokenizer, registered with its files as
    `register_base_model --from-folder` does."""
    from tokenizers import Tokenizer, models

    from tests.factories import tiny_llama_config

    folder = tmp_path / "tiny-llama"
    shutil.copytree(base_model_folder, folder)
    vocab = {f"t{i}": i for i in range(tiny_llama_config().vocab_size)}
    Tokenizer(models.WordLevel(vocab, unk_token="t0")).save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "t0"})
    )
    return register_from_folder(name=BASE_MODEL_NAME, folder=folder)


@pytest.fixture(scope="module")
def local_lora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA whose config names the local folder it was trained from, and a card without base_model."""
    return make_lora_adapter(tmp_path_factory.mktemp("local-lora"), seed=3, base_model_name=LOCAL_BASE)


def _push_rest(hub: Hub, user: Any, client_for: Any, folder: Path) -> None:
    response = push_folder(client_for(user), "alice/from-local", folder)
    assert response.status_code == 201, response.content


def _push_ahub(hub: Hub, user: Any, client_for: Any, folder: Path, token: str) -> None:
    HubClient(hub.url, token, progress=False, cache_dir=hub.home / "ahub").push(folder, "alice/from-local")


def _push_upload_folder(hub: Hub, user: Any, client_for: Any, folder: Path, token: str) -> None:
    from huggingface_hub import HfApi

    hub.use_token(token)
    api = HfApi()
    api.create_repo("alice/from-local", exist_ok=True)
    api.upload_folder(repo_id="alice/from-local", folder_path=folder)


def _push_to_hub(hub: Hub, user: Any, client_for: Any, folder: Path, token: str) -> None:
    from peft import PeftModel

    hub.use_token(token)
    model = PeftModel.from_pretrained(tiny_llama(), folder)
    model.push_to_hub("alice/from-local")


def _push_web(hub: Hub, user: Any, client_for: Any, folder: Path) -> None:
    browser = Client()
    browser.force_login(user)
    files = [SimpleUploadedFile(p.name, p.read_bytes()) for p in sorted(folder.iterdir()) if p.is_file()]
    response = browser.post("/upload/", {"namespace": "alice", "name": "from-local", "files": files})
    assert response.status_code == 302, response.content.decode()[-2000:]


@pytest.mark.parametrize("path", ["rest", "ahub", "upload_folder", "push_to_hub", "web"])
def test_every_push_path_files_a_locally_trained_adapter_under_the_registered_base(
    path: str, hub: Hub, alice: Any, client_for: Any, token_for: Any, local_lora: Path
) -> None:
    bases_before = set(BaseModel.listed.values_list("name", flat=True))
    pushers = {
        "rest": lambda: _push_rest(hub, alice, client_for, local_lora),
        "ahub": lambda: _push_ahub(hub, alice, client_for, local_lora, token_for(alice)),
        "upload_folder": lambda: _push_upload_folder(hub, alice, client_for, local_lora, token_for(alice)),
        "push_to_hub": lambda: _push_to_hub(hub, alice, client_for, local_lora, token_for(alice)),
        "web": lambda: _push_web(hub, alice, client_for, local_lora),
    }
    pushers[path]()

    adapter = Adapter.objects.get(namespace__name="alice", name="from-local")
    version = adapter.versions.get()
    assert adapter.base_model.name == BASE_MODEL_NAME
    assert set(BaseModel.listed.values_list("name", flat=True)) == bases_before, "no new base model row"
    stored = client_for(alice).get("/api/v1/adapters/alice/from-local/versions/1/files/adapter_config.json")
    assert json.loads(b"".join(stored.streaming_content))["base_model_name_or_path"] == BASE_MODEL_NAME
    if path != "push_to_hub":  # PEFT's push_to_hub writes the path it was loaded from
        assert version.trained_from == LOCAL_BASE
    assert version.config["base_model_name_or_path"] == BASE_MODEL_NAME
    facets = client_for(None).get("/api/v1/base-models/").json()["results"]
    assert all(not b["name"].startswith("/") for b in facets), "no path leaks into the catalog"

    # The same folder again is recognised after the config's normalisation: no second version.
    if path == "rest":
        again = push_folder(client_for(alice), "alice/from-local", local_lora)
        assert again.status_code == 200 and again.json()["version"] == 1


def test_auto_peft_model_loads_adapter_and_base_through_the_hub_alone(
    hub: Hub, alice: Any, publish: Any, token_for: Any, stored_base: BaseModel, local_lora: Path, tmp_path: Path
) -> None:
    import torch
    from peft import PeftModel

    publish(alice, "alice/from-local", local_lora, visibility="private")
    out = tmp_path / "logits.pt"
    # The user's machine has no copy of the base: only HF_ENDPOINT and HF_TOKEN.
    hub.run_client("auto_peft_load.py", "alice/from-local", BASE_MODEL_NAME, str(out), token=token_for(alice))

    results = torch.load(out)
    with torch.no_grad():
        expected = PeftModel.from_pretrained(tiny_llama(), local_lora).eval()(torch.tensor([[1, 5, 9, 17, 3]])).logits
    torch.testing.assert_close(results["auto"], expected, rtol=0, atol=0)
    torch.testing.assert_close(results["snippet"], expected, rtol=0, atol=0)
    assert results["config_type"] == "llama" and results["tokenizer_vocab"] == 128


def test_base_model_files_list_in_model_info_and_snapshot_download_verifies_them(
    hub: Hub, stored_base: BaseModel, base_model_folder: Path, tmp_path: Path
) -> None:
    from huggingface_hub import HfApi, snapshot_download

    info = HfApi().model_info(BASE_MODEL_NAME, files_metadata=True)
    assert info.sha == stored_base.commit_id
    by_name = {s.rfilename: s for s in info.siblings}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(by_name)
    assert by_name["model.safetensors"].size == (base_model_folder / "model.safetensors").stat().st_size

    local = Path(snapshot_download(BASE_MODEL_NAME, cache_dir=tmp_path / "cache"))
    for name in ("config.json", "model.safetensors"):
        assert (local / name).read_bytes() == (base_model_folder / name).read_bytes()


def test_a_private_base_model_is_invisible_to_non_members_everywhere(
    hub: Hub, alice: Any, bob: Any, org: Any, client_for: Any, token_for: Any, base_model_folder: Path, tmp_path: Path
) -> None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RepositoryNotFoundError

    register_from_folder(name="acme/secret-base", folder=base_model_folder, visibility="private", namespace="acme")
    outsider = client_for(None)
    assert outsider.get("/api/v1/base-models/acme/secret-base/").status_code == 404
    assert "acme/secret-base" not in str(outsider.get("/api/v1/base-models/").json())
    assert Client().get("/models/acme/secret-base/").status_code == 404
    assert "acme/secret-base" not in Client().get("/models/").content.decode()
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("acme/secret-base", "config.json", cache_dir=tmp_path / "anon")

    member = client_for(bob)  # bob reads in acme
    assert member.get("/api/v1/base-models/acme/secret-base/").json()["weights_stored"] is True
    hub.use_token(token_for(bob, "read"))
    assert Path(hf_hub_download("acme/secret-base", "config.json", cache_dir=tmp_path / "bob")).is_file()


def test_the_base_model_page_lists_its_files_with_sizes_and_sha256(db: Any, stored_base: BaseModel) -> None:
    page = Client().get(f"/models/{BASE_MODEL_NAME}/").content.decode()
    assert 'id="weights-stored"' in page
    for f in stored_base.files.all():
        assert f'data-file="{f.path}"' in page and f.sha256 in page


@pytest.mark.parametrize("kind", OTHER_PEFT_KINDS)
def test_other_methods_pushed_with_ahub_load_through_hf_endpoint_with_identical_logits(
    kind: str, hub: Hub, alice: Any, token_for: Any, stored_base: BaseModel, tmp_path: Path
) -> None:
    """OFT, BOFT, VeRA, FourierFT, LN tuning, LLaMA-Adapter: `ahub push`, then a user's script with
    only HF_ENDPOINT loads adapter and base from the hub; the logits are the saving model's."""
    import torch

    from tests.registry.test_more_methods import trained

    saved = trained(kind, tmp_path / kind)  # logits on [[1, 5, 9, 17, 33, 65, 2, 4]]
    token = token_for(alice)
    HubClient(hub.url, token, progress=False, cache_dir=tmp_path / "ahub").push(tmp_path / kind, f"alice/{kind}")
    out = tmp_path / "logits.pt"

    hub.run_client("auto_peft_load.py", f"alice/{kind}", BASE_MODEL_NAME, str(out), token=token)

    from peft import PeftModel

    with torch.no_grad():
        expected = (
            PeftModel.from_pretrained(tiny_llama(), tmp_path / kind).eval()(torch.tensor([[1, 5, 9, 17, 3]])).logits
        )
    results = torch.load(out)
    torch.testing.assert_close(results["auto"], expected, rtol=0, atol=0)
    torch.testing.assert_close(results["snippet"], expected, rtol=0, atol=0)
    assert saved.shape[-1] == expected.shape[-1]

    # `ahub pull` brings the same bytes back; PEFT's own push_to_hub files the method too.
    pulled = HubClient(hub.url, token, progress=False, cache_dir=tmp_path / "pull").pull(f"alice/{kind}")
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (pulled.path / name).read_bytes() == (tmp_path / kind / name).read_bytes()
    hub.use_token(token)
    PeftModel.from_pretrained(tiny_llama(), tmp_path / kind).push_to_hub(f"alice/{kind}-p2h")
    assert Adapter.objects.get(name=f"{kind}-p2h").method == kind

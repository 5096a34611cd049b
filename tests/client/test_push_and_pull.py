"""Push and pull through a live hub: byte-identical round trips that PEFT loads, on both stores."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from client import HubClient
from registry.models import AdapterVersion
from tests.client.helpers import folder_bytes, write_lora
from tests.factories import tiny_llama

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_pushed_adapter_pulls_back_byte_identical_and_loads_in_peft(
    backend: str, request: pytest.FixtureRequest, hub: HubClient, lora_dir: Path
) -> None:
    if backend == "s3":
        request.getfixturevalue("s3_settings")

    pushed = hub.push(lora_dir, "alice/tiny-lora", label="v1", task="text-generation", tags=["demo"])
    pulled = hub.pull("alice/tiny-lora:v1")

    assert pushed.created and pushed.version.version == 1 and pushed.version.label == "v1"
    assert pushed.skipped == [] and pushed.bytes_uploaded == sum(len(b) for b in folder_bytes(lora_dir).values())
    assert pulled.version == 1 and pulled.path == hub.cache_dir / "adapters" / "alice" / "tiny-lora" / "1"
    assert folder_bytes(pulled.path) == folder_bytes(lora_dir)
    assert hub.info("alice/tiny-lora").task == "text-generation"

    import torch
    from peft import PeftModel

    ids = torch.tensor([[1, 5, 9, 17, 3]])
    with torch.no_grad():
        expected = PeftModel.from_pretrained(tiny_llama(), lora_dir)(ids).logits
        got = PeftModel.from_pretrained(tiny_llama(), pulled.path)(ids).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_on_s3_parts_go_straight_to_the_store_and_never_through_the_hub(
    s3_settings: None, small_parts: int, hub: HubClient, live_server: Any, tmp_path: Path
) -> None:
    folder = write_lora(tmp_path / "big", layers=4, dim=512, r=128)  # ~4 MiB of weights per layer
    weights = (folder / "adapter_model.safetensors").stat().st_size
    hub_host = urlsplit(live_server.url).netloc

    pushed = hub.push(folder, "alice/big")

    parts = -(-weights // small_parts) + 2  # the weights' parts, and one each for config and README
    storage_puts = {host: n for host, n in hub.session.hosts("PUT").items() if host != hub_host}
    assert pushed.parts_uploaded == parts and sum(storage_puts.values()) == parts
    assert hub.session.count("PUT", host=hub_host) == 0
    assert folder_bytes(hub.pull("alice/big").path) == folder_bytes(folder)


def test_a_pull_into_a_folder_copies_and_the_cache_is_shared_by_versions(
    hub: HubClient, lora_dir: Path, tmp_path: Path
) -> None:
    hub.push(lora_dir, "alice/tiny-lora")
    first = hub.pull("alice/tiny-lora", dest=tmp_path / "here")
    again = hub.pull("alice/tiny-lora", version=1, dest=tmp_path / "again")

    assert first.path == tmp_path / "here" and folder_bytes(first.path) == folder_bytes(lora_dir)
    assert first.bytes_downloaded > 0 and again.bytes_downloaded == 0  # served from the cache
    weights = first.path / "adapter_model.safetensors"
    cached = hub.cache_dir / "blobs" / AdapterVersion.objects.get().files.get(path=weights.name).sha256
    assert not os.path.samefile(weights, cached), "a folder of the user's own holds copies"
    assert os.stat(cached).st_mode & 0o222 == 0, "cached blobs are read-only"


def test_the_cache_folder_links_blobs_instead_of_copying_them(hub: HubClient, lora_dir: Path) -> None:
    hub.push(lora_dir, "alice/tiny-lora")
    pulled = hub.pull("alice/tiny-lora")

    for path, target in pulled.files.items():
        sha = AdapterVersion.objects.get().files.get(path=path).sha256
        assert os.path.samefile(target, hub.cache_dir / "blobs" / sha)

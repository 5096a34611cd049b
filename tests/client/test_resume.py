"""Interrupted pushes and pulls resume: only the missing parts or bytes travel again."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from client import ChecksumMismatch, HubClient
from registry.blobs import get_blob_store
from registry.models import VersionFile
from registry.models.uploads import UploadSession, UploadStatus
from tests.client.helpers import folder_bytes, write_lora

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def big_lora(tmp_path: Path) -> Path:
    # 4 layers x 2 modules x (128x1024 + 1024x128) F32 values: 8 MiB of weights, 2 parts of 5 MiB.
    return write_lora(tmp_path / "big-lora", layers=4, dim=1024, r=128)


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_an_interrupted_push_resumes_sending_only_the_missing_parts(
    backend: str, request: pytest.FixtureRequest, small_parts: int, hub_for: Any, alice: Any, tmp_path: Path
) -> None:
    if backend == "s3":
        request.getfixturevalue("s3_settings")
    # 24 MiB of weights: 5 parts of 5 MiB, plus one part each for the config and the README.
    folder = write_lora(tmp_path / "lora", layers=6, dim=1024, r=256)
    total_parts = -(-(folder / "adapter_model.safetensors").stat().st_size // small_parts) + 2
    first = hub_for(alice)
    first.session.fail_after = 3  # the process dies as it starts its fourth part

    with pytest.raises(KeyboardInterrupt):
        first.push(folder, "alice/big")

    session = UploadSession.objects.get()
    assert session.status == UploadStatus.OPEN and not VersionFile.objects.exists()
    second = hub_for(alice)
    state = second._json("GET", f"/api/v1/uploads/{session.id}/")
    stored = sum(len(u["stored_parts"]) for u in state["uploads"])
    assert stored == 3, "the parts sent before the interruption are kept"

    resumed = second.push(folder, "alice/big")

    assert resumed.created and resumed.version.version == 1
    assert resumed.parts_uploaded == total_parts - stored
    assert second.session.part_puts == total_parts - stored, "no stored part is sent again"
    assert UploadSession.objects.get().status == UploadStatus.COMPLETED  # the same session, resumed
    assert folder_bytes(second.pull("alice/big").path) == folder_bytes(folder)


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_an_interrupted_pull_resumes_with_a_range_request(
    backend: str, request: pytest.FixtureRequest, hub: HubClient, big_lora: Path
) -> None:
    if backend == "s3":
        request.getfixturevalue("s3_settings")
    version = hub.push(big_lora, "alice/big").version
    weights = next(f for f in version.files if f.path == "adapter_model.safetensors")
    kept = 3 * 1024 * 1024 + 17
    partial = hub.cache_dir / "blobs" / f"{weights.sha256}.partial"
    partial.parent.mkdir(parents=True)
    partial.write_bytes((big_lora / weights.path).read_bytes()[:kept])

    pulled = hub.pull("alice/big")

    assert f"bytes={kept}-" in hub.session.ranges
    assert pulled.bytes_downloaded == version.total_size - kept
    assert folder_bytes(pulled.path) == folder_bytes(big_lora)
    assert not partial.exists()


def test_a_corrupt_partial_download_is_detected_and_fetched_again_from_zero(hub: HubClient, big_lora: Path) -> None:
    version = hub.push(big_lora, "alice/big").version
    weights = next(f for f in version.files if f.path == "adapter_model.safetensors")
    partial = hub.cache_dir / "blobs" / f"{weights.sha256}.partial"
    partial.parent.mkdir(parents=True)
    kept = 1024 * 1024
    partial.write_bytes(b"\0" * kept)  # not what the file starts with

    pulled = hub.pull("alice/big")

    # The resumed bytes fail the sha256 check, so the file is downloaded once more in full.
    assert pulled.bytes_downloaded == version.total_size - kept + weights.size
    assert folder_bytes(pulled.path) == folder_bytes(big_lora)


def test_bytes_that_do_not_match_their_sha256_are_refused_and_not_cached(
    hub: HubClient, lora_dir: Path, local_blob_store: Path
) -> None:
    version = hub.push(lora_dir, "alice/tiny-lora").version
    weights = next(f for f in version.files if f.path == "adapter_model.safetensors")
    stored = get_blob_store().path(weights.sha256)  # type: ignore[attr-defined]
    data = bytearray(stored.read_bytes())
    data[-1] ^= 0xFF
    os.chmod(stored, 0o644)
    stored.write_bytes(bytes(data))

    with pytest.raises(ChecksumMismatch) as refused:
        hub.pull("alice/tiny-lora")

    assert refused.value.code == "checksum_mismatch" and "adapter_model.safetensors" in refused.value.message
    blobs = hub.cache_dir / "blobs"
    assert not (blobs / weights.sha256).exists() and not (blobs / f"{weights.sha256}.partial").exists()

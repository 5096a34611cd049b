"""Fault injection: the S3 server is killed in the middle of a push and comes back; the push
resumes with the parts it lacks, and nothing is lost or half-written."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from client import HubClient
from client.errors import HubError
from registry.models import AdapterVersion, VersionFile
from registry.models.uploads import UploadSession
from tests.audit import assert_consistent
from tests.client.helpers import CountingSession, folder_bytes, write_lora
from tests.plugins.seaweed import SeaweedServer, start_seaweedfs

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


class KillingSession(CountingSession):
    """Kills the S3 server once `kill_after` parts went through, as an outage would."""

    def __init__(self, server: SeaweedServer, kill_after: int) -> None:
        super().__init__()
        self.server, self.kill_after = server, kill_after

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if str(method) == "PUT" and self.part_puts >= self.kill_after and self.server.process is not None:
            self.server.stop()
        return super().request(method, url, *args, **kwargs)


@pytest.fixture
def own_seaweedfs(tmp_path: Path, settings: Any) -> Iterator[SeaweedServer]:
    from registry.blobs import reset_blob_store

    server = start_seaweedfs(tmp_path / "weed")
    settings.BLOB_STORE = {
        "BACKEND": "s3", "BUCKET": f"hub-{uuid.uuid4().hex[:12]}", "ENDPOINT_URL": server.endpoint_url,
        "ACCESS_KEY": server.access_key, "SECRET_KEY": server.secret_key, "REGION": server.region,
        "CREATE_BUCKET": True, "ROOT": "",
    }  # fmt: skip
    reset_blob_store()
    yield server
    server.stop()
    reset_blob_store()


def test_a_push_cut_by_an_s3_outage_resumes_once_the_store_is_back(
    own_seaweedfs: SeaweedServer, small_parts: int, live_server: Any, token_for: Any, alice: Any, tmp_path: Path
) -> None:
    folder = write_lora(tmp_path / "lora", layers=6, dim=1024, r=256)  # 24 MiB: 5 parts of 5 MiB + 2
    total_parts = -(-(folder / "adapter_model.safetensors").stat().st_size // small_parts) + 2
    token = token_for(alice)
    cut = HubClient(live_server.url, token, progress=False, cache_dir=tmp_path / "c1",
                    session=KillingSession(own_seaweedfs, kill_after=3), workers=1)  # fmt: skip

    with pytest.raises(HubError):  # the parts after the third find no server
        cut.push(folder, "alice/big")
    assert not AdapterVersion.objects.exists() and not VersionFile.objects.exists()

    back = start_seaweedfs(tmp_path / "weed", ports=own_seaweedfs.ports)  # same place, same data
    own_seaweedfs.process = back.process
    resumed = HubClient(
        live_server.url, token, progress=False, cache_dir=tmp_path / "c2", session=CountingSession(), workers=1
    )
    pushed = resumed.push(folder, "alice/big")

    assert pushed.created and pushed.version.version == 1
    assert 0 < resumed.session.part_puts < total_parts, "the parts stored before the outage are not sent again"
    assert UploadSession.objects.count() == 1, "the same session, resumed"
    assert folder_bytes(resumed.pull("alice/big").path) == folder_bytes(folder)
    assert_consistent()


class KillingDownloads(CountingSession):
    """Kills the S3 server once `kill_after` bytes of a download from it have arrived."""

    def __init__(self, server: SeaweedServer, kill_after: int) -> None:
        super().__init__()
        self.server, self.kill_after = server, kill_after

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        response = super().request(method, url, *args, **kwargs)
        if str(method) == "GET" and urlsplit(str(url)).netloc == urlsplit(self.server.endpoint_url).netloc:
            whole = response.iter_content

            def cut_short(chunk_size: int = 1, decode_unicode: bool = False) -> Iterator[bytes]:
                seen = 0
                for chunk in whole(chunk_size, decode_unicode):
                    yield chunk
                    seen += len(chunk)
                    if seen >= self.kill_after and self.server.process is not None:
                        self.server.stop()

            response.iter_content = cut_short
        return response


def test_a_pull_cut_by_an_s3_outage_resumes_where_it_stopped(
    own_seaweedfs: SeaweedServer, live_server: Any, token_for: Any, alice: Any, tmp_path: Path
) -> None:
    folder = write_lora(tmp_path / "lora", layers=6, dim=1024, r=256)  # 24 MiB of weights
    weights = (folder / "adapter_model.safetensors").stat().st_size
    token = token_for(alice)
    HubClient(live_server.url, token, progress=False, cache_dir=tmp_path / "pusher").push(folder, "alice/big")
    cache = tmp_path / "puller"
    cut = HubClient(live_server.url, token, progress=False, cache_dir=cache,
                    session=KillingDownloads(own_seaweedfs, kill_after=2 * 1024 * 1024))  # fmt: skip

    with pytest.raises(HubError, match="pull again to resume|storage"):
        cut.pull("alice/big")
    partial = next((cache / "blobs").glob("*.partial"))
    kept = partial.stat().st_size
    assert 0 < kept < weights, "part of the file arrived before the outage, and is kept"

    back = start_seaweedfs(tmp_path / "weed", ports=own_seaweedfs.ports)
    own_seaweedfs.process = back.process
    resumed = HubClient(live_server.url, token, progress=False, cache_dir=cache, session=CountingSession())
    pulled = resumed.pull("alice/big")

    assert f"bytes={kept}-" in resumed.session.ranges, "the download resumed from the bytes kept"
    assert pulled.bytes_downloaded < weights + 4096
    assert folder_bytes(pulled.path) == folder_bytes(folder)
    assert_consistent()

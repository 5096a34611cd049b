"""A service the hub stands on fails: the answer is JSON 503 with a stable code, nothing is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from registry.models import Adapter, AdapterVersion
from tests.helpers import dead_port, json_of, push_folder

pytestmark = pytest.mark.django_db


def test_a_push_while_the_blob_store_is_down_is_a_503_and_writes_nothing(
    s3_settings: None, settings: Any, alice: Any, client_for: Any, lora_dir: Path
) -> None:
    from registry.blobs import reset_blob_store

    settings.BLOB_STORE = {**settings.BLOB_STORE, "ENDPOINT_URL": f"http://127.0.0.1:{dead_port()}"}
    reset_blob_store()
    response = push_folder(client_for(alice), "alice/x", lora_dir)

    assert response.status_code == 503 and response["Content-Type"] == "application/json"
    assert json_of(response)["code"] == "storage_unavailable"
    assert "127.0.0.1" not in response.content.decode(), "no internal address is shown"
    assert not Adapter.objects.exists() and not AdapterVersion.objects.exists()

"""Fixtures for client tests: a live hub (pytest-django's `live_server`, in this process), a
HubClient pointed at it with a token of alice's, and a client environment of each test's own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from client import HubClient
from registry.services import issue_token
from storage import MIN_PART_SIZE
from tests.client.helpers import CountingSession


@pytest.fixture(autouse=True)
def _own_blob_store(local_blob_store: Path) -> Path:
    return local_blob_store


@pytest.fixture(autouse=True)
def _client_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's ~/.config or ~/.cache, or a HUB_URL/HUB_TOKEN (HF_*) of theirs."""
    monkeypatch.setenv("HUB_CONFIG", str(tmp_path / "ahub-config.json"))
    monkeypatch.setenv("HUB_CACHE", str(tmp_path / "ahub-cache"))
    for name in ("HUB_URL", "HUB_TOKEN", "HF_ENDPOINT", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def small_parts(settings: Any) -> int:
    """Parts of S3's minimum size, so a few-MB adapter already takes several parts."""
    settings.UPLOAD_PART_SIZE = MIN_PART_SIZE
    return MIN_PART_SIZE


@pytest.fixture
def token_for(db: Any) -> Callable[..., str]:
    def make(user: Any, scope: str = "write", namespace: str | None = None) -> str:
        return issue_token(user=user, name="client-test", scope=scope, namespace=namespace).secret

    return make


@pytest.fixture
def hub_for(live_server: Any, tmp_path: Path, token_for: Callable[..., str]) -> Callable[..., HubClient]:
    """A HubClient on the live hub; its session counts every request it sends."""

    def make(user: Any | None, scope: str = "write", *, cache: str = "ahub-cache", **kwargs: Any) -> HubClient:
        token = token_for(user, scope) if user is not None else None
        return HubClient(
            live_server.url, token, cache_dir=tmp_path / cache, progress=False, session=CountingSession(), **kwargs
        )

    return make


@pytest.fixture
def hub(hub_for: Callable[..., HubClient], alice: Any) -> HubClient:
    return hub_for(alice)


@pytest.fixture
def env(live_server: Any, alice: Any, token_for: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """`ahub` pointed at a live hub as alice (HUB_URL, HUB_TOKEN); returns her token."""
    token = token_for(alice)
    monkeypatch.setenv("HUB_URL", live_server.url)
    monkeypatch.setenv("HUB_TOKEN", token)
    return token

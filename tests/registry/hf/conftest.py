"""Fixtures for the HF protocol tests: the real huggingface_hub/transformers/peft clients pointed at
a live hub (pytest-django's `live_server`), with caches and tokens of each test's own."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from registry.access import Actor
from registry.models import AdapterVersion
from registry.push import IncomingFile, push_version
from registry.services import AdapterMetadata, issue_token

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _own_blob_store(local_blob_store: Path) -> Path:
    return local_blob_store


@dataclass
class Hub:
    """The live hub as huggingface_hub sees it: HF_ENDPOINT, HF_HOME and HF_TOKEN."""

    url: str
    home: Path
    monkeypatch: pytest.MonkeyPatch

    def use_token(self, secret: str | None) -> None:
        """What `export HF_TOKEN=...` does (the client reads the variable on every call)."""
        if secret is None:
            self.monkeypatch.delenv("HF_TOKEN", raising=False)
        else:
            self.monkeypatch.setenv("HF_TOKEN", secret)

    def env(self, token: str | None) -> dict[str, str]:
        """Environment for a client in a subprocess: only the variables a user would set."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        env.update(
            HF_ENDPOINT=self.url,
            HF_HOME=str(self.home / "subprocess"),
            HF_HUB_OFFLINE="0",
            HF_HUB_DISABLE_TELEMETRY="1",
            PYTHONPATH=str(REPO_ROOT),
        )
        if token is not None:
            env["HF_TOKEN"] = token
        return env

    def run_client(self, script: str, *args: str, token: str | None) -> subprocess.CompletedProcess[str]:
        """Run tests/registry/hf/clients/<script> in a fresh interpreter; fails the test with its output."""
        done = subprocess.run(
            [sys.executable, str(Path(__file__).parent / "clients" / script), *args],
            env=self.env(token),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr}"
        return done


@pytest.fixture
def hub(live_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Hub:
    """Point the already-imported clients at the live hub.

    huggingface_hub reads HF_ENDPOINT and HF_HOME once, at import, into module constants and its
    default HfApi; transformers caches its own HfApi. Each is patched (and restored after).
    """
    import huggingface_hub.constants as constants
    import huggingface_hub.hf_api as hf_api
    import transformers.utils.hub as transformers_hub

    url = live_server.url
    home = tmp_path / "hf_home"
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(hf_api.api, "endpoint", url)
    monkeypatch.setattr(transformers_hub, "_hf_api", None)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return Hub(url=url, home=home, monkeypatch=monkeypatch)


@pytest.fixture
def token_for() -> Callable[..., str]:
    def make(user: Any, scope: str = "write", namespace: str | None = None) -> str:
        return issue_token(user=user, name="hf-test", scope=scope, namespace=namespace).secret

    return make


def folder_incoming(folder: Path) -> list[IncomingFile]:
    return [
        IncomingFile(path=p.relative_to(folder).as_posix(), stream=p.open("rb"), size=p.stat().st_size)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    ]


@pytest.fixture
def publish() -> Callable[..., AdapterVersion]:
    """Push a folder as a new version straight through the service (fast set-up for read tests)."""

    def push(user: Any, repo_id: str, folder: Path, *, label: str | None = None, **meta: Any) -> AdapterVersion:
        namespace, name = repo_id.split("/")
        files = folder_incoming(folder)
        try:
            pushed = push_version(
                actor=Actor(user=user),
                namespace=namespace,
                name=name,
                files=files,
                meta=AdapterMetadata(**meta),
                label=label,
            )
            return pushed.version
        finally:
            for f in files:
                f.stream.close()

    return push

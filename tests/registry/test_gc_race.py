"""gc_blobs racing pushes: with no grace period and the sweep in a tight loop, no version of any
push path ever points at a deleted blob (registry/blob_claims.py)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connections
from django.test import Client

from client import HubClient
from registry.blobs import get_blob_store
from registry.maintenance import collect_garbage
from registry.models import AdapterVersion
from registry.services import issue_token
from tests.audit import assert_consistent
from tests.factories import make_lora_adapter
from tests.helpers import push_folder

pytestmark = pytest.mark.django_db(transaction=True)

PUSHES_PER_PATH = 10


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("race")
    return [make_lora_adapter(root / f"a{i}", seed=100 + i) for i in range(5)]


def in_thread(work: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        try:
            return work()
        finally:
            connections.close_all()  # each thread has its own connection

    return run


def test_gc_in_a_tight_loop_never_deletes_a_blob_a_push_publishes(
    local_blob_store: Path, live_server: Any, alice: Any, client_for: Any, adapters: list[Path], tmp_path: Path
) -> None:
    from huggingface_hub import HfApi

    store = get_blob_store()
    # Every file is an orphan already, older than the (zero) grace period: pushes reuse blobs the
    # sweep is deleting, the riskiest case.
    for folder in adapters:
        for p in folder.iterdir():
            with p.open("rb") as f:
                store.put(f)
    token = issue_token(user=alice, name="race", scope="write").secret

    def rest(i: int) -> None:
        response = push_folder(client_for(alice), f"alice/rest-{i}", adapters[i % len(adapters)])
        assert response.status_code in (200, 201), response.content

    def ahub(i: int) -> None:
        HubClient(live_server.url, token, progress=False, cache_dir=tmp_path / f"ahub-{i}").push(
            adapters[i % len(adapters)], f"alice/ahub-{i}"
        )

    def hf(i: int) -> None:
        api = HfApi(endpoint=live_server.url, token=token)
        api.create_repo(f"alice/hf-{i}", exist_ok=True)
        api.upload_folder(repo_id=f"alice/hf-{i}", folder_path=adapters[i % len(adapters)])

    def web(i: int) -> None:
        browser = Client()
        browser.force_login(alice)
        folder = adapters[i % len(adapters)]
        files = [SimpleUploadedFile(p.name, p.read_bytes()) for p in sorted(folder.iterdir())]
        response = browser.post("/upload/", {"namespace": "alice", "name": f"web-{i}", "files": files})
        assert response.status_code == 302, response.content.decode()[-1500:]

    stop = threading.Event()
    sweeps = []

    def sweep() -> None:
        while not stop.is_set():
            sweeps.append(len(collect_garbage(grace_seconds=0).deleted))

    sweeper = threading.Thread(target=in_thread(sweep))
    sweeper.start()
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            jobs = [
                pool.submit(in_thread(lambda push=push, i=i: push(i)))
                for i in range(PUSHES_PER_PATH)
                for push in (rest, ahub, hf, web)
            ]
            for job in jobs:
                job.result()
    finally:
        stop.set()
        sweeper.join()

    versions = list(AdapterVersion.objects.prefetch_related("files"))
    assert len(versions) == 4 * PUSHES_PER_PATH
    assert len(sweeps) > 1 and sum(sweeps) > 0, "the sweep ran and deleted the orphans nothing claimed"
    for version in versions:
        for f in version.files.all():
            with store.open(f.sha256) as blob:
                assert hashlib.sha256(blob.read()).hexdigest() == f.sha256, f"{version}/{f.path}"
    assert_consistent()


def test_first_commits_in_parallel_after_create_repo_each_publish_a_version(
    local_blob_store: Path, live_server: Any, alice: Any, adapters: list[Path]
) -> None:
    from huggingface_hub import HfApi

    token = issue_token(user=alice, name="race", scope="write").secret
    HfApi(endpoint=live_server.url, token=token).create_repo("alice/parallel")

    def commit(folder: Path) -> str:
        return (
            HfApi(endpoint=live_server.url, token=token).upload_folder(repo_id="alice/parallel", folder_path=folder).oid
        )

    folders = adapters  # a different adapter each: every commit changes main
    with ThreadPoolExecutor(max_workers=len(folders)) as pool:
        oids = list(pool.map(lambda folder: in_thread(lambda: commit(folder))(), folders))

    versions = list(AdapterVersion.objects.filter(adapter__name="parallel").order_by("number"))
    assert [v.number for v in versions] == list(range(1, len(folders) + 1))
    assert sorted(oids) == sorted(v.commit_id for v in versions), "each commit published its own version"

"""Workers fetch base models from the blob store: verified, resumable, once per worker, LRU-evicted."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from registry.base_models import BaseModelUnavailable, cached_bases, fetch_base_model, register_from_folder
from registry.blobs import get_blob_store

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _own_blob_store(local_blob_store: Path) -> Path:
    return local_blob_store


def test_concurrent_jobs_fetch_a_base_once_and_get_identical_files(base_model_folder: Path, tmp_path: Path) -> None:
    base = register_from_folder(name="org/base", folder=base_model_folder)
    results: list[Any] = []

    def fetch() -> None:
        results.append(fetch_base_model(base, root=tmp_path / "cache", budget=10**12))

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    total = sum(f.size for f in base.files.all())
    assert sorted(r.fetched_bytes for r in results) == [0, 0, 0, total]
    folder = results[0].folder
    for f in base.files.all():
        assert (folder / f.path).read_bytes() == (base_model_folder / f.path).read_bytes()


def test_an_interrupted_fetch_resumes_and_a_corrupt_one_is_refused(base_model_folder: Path, tmp_path: Path) -> None:
    base = register_from_folder(name="org/base", folder=base_model_folder)
    weights = base.files.get(path="model.safetensors")
    folder = tmp_path / "cache" / base.files_digest
    folder.mkdir(parents=True)
    data = (base_model_folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors.part").write_bytes(data[: len(data) // 3])

    fetched = fetch_base_model(base, root=tmp_path / "cache", budget=10**12)
    others = sum(f.size for f in base.files.exclude(pk=weights.pk))
    assert fetched.fetched_bytes == others + len(data) - len(data) // 3
    assert (fetched.folder / "model.safetensors").read_bytes() == data

    other = tmp_path / "other"
    (other / base.files_digest).mkdir(parents=True)
    (other / base.files_digest / "model.safetensors.part").write_bytes(b"\0" * (len(data) // 2))
    with pytest.raises(BaseModelUnavailable, match="sha256"):
        fetch_base_model(base, root=other, budget=10**12)
    assert not (other / base.files_digest / "model.safetensors").exists()


def test_the_least_recently_used_base_is_evicted_beyond_the_budget(base_model_folder: Path, tmp_path: Path) -> None:
    first = register_from_folder(name="org/first", folder=base_model_folder)
    copy = tmp_path / "second"
    copy.mkdir()
    for p in base_model_folder.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    (copy / "generation_config.json").write_text('{"max_length": 7}')  # a different file set
    second = register_from_folder(name="org/second", folder=copy)
    size = sum(f.size for f in second.files.all())
    root = tmp_path / "cache"

    a = fetch_base_model(first, root=root, budget=10 * size)
    os.utime(a.folder / ".complete", (1, 1))  # long unused
    b = fetch_base_model(second, root=root, budget=size + 10)

    assert cached_bases(root) == [b.folder]
    assert fetch_base_model(first, root=root, budget=10 * size).fetched_bytes > 0  # fetched again


def test_a_manifest_only_base_cannot_be_fetched(base_model_folder: Path, tmp_path: Path) -> None:
    base = register_from_folder(name="org/bare", folder=base_model_folder, manifest_only=True)
    assert not base.files.exists() and base.manifest
    with pytest.raises(BaseModelUnavailable, match="manifest-only"):
        fetch_base_model(base, root=tmp_path)
    assert get_blob_store() is not None

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _own_blob_store(local_blob_store: Path) -> Path:
    return local_blob_store


@pytest.fixture(autouse=True)
def _own_worker_cache(worker_blob_cache: Path) -> Path:
    return worker_blob_cache

"""N simultaneous pushes to one adapter make N distinct consecutive versions (real PostgreSQL)."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, connections

from registry.access import Actor
from registry.models import AdapterVersion
from registry.push import IncomingFile, push_version
from tests.helpers import folder_files

N_PUSHES = 8


@pytest.mark.django_db(transaction=True)
def test_simultaneous_pushes_get_distinct_consecutive_versions(alice: Any, lora_dir: Path) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the concurrency guarantee is tested on PostgreSQL (make test sets DATABASE_URL)")
    base_files = folder_files(lora_dir)
    barrier = threading.Barrier(N_PUSHES)
    results: list[int] = []
    errors: list[BaseException] = []

    def push_distinct(i: int) -> None:
        try:
            # Each push differs by one extra file, so none is an identical re-push.
            files = [*base_files, ("notes.txt", f"push {i}".encode())]
            incoming = [IncomingFile(path=p, stream=io.BytesIO(data), size=len(data)) for p, data in files]
            barrier.wait()
            result = push_version(actor=Actor(user=alice), namespace="alice", name="busy", files=incoming)
            results.append(result.version.number)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=push_distinct, args=(i,)) for i in range(N_PUSHES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert sorted(results) == list(range(1, N_PUSHES + 1))
    numbers = list(AdapterVersion.objects.filter(adapter__name="busy").values_list("number", flat=True))
    assert sorted(numbers) == list(range(1, N_PUSHES + 1))
    assert len(set(AdapterVersion.objects.values_list("digest", flat=True))) == N_PUSHES


@pytest.mark.django_db(transaction=True)
def test_simultaneous_identical_pushes_make_one_version(alice: Any, lora_dir: Path) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("tested on PostgreSQL")
    files = folder_files(lora_dir)
    barrier = threading.Barrier(4)
    created: list[bool] = []

    def push_same() -> None:
        try:
            incoming = [IncomingFile(path=p, stream=io.BytesIO(data), size=len(data)) for p, data in files]
            barrier.wait()
            created.append(
                push_version(actor=Actor(user=alice), namespace="alice", name="same", files=incoming).created
            )
        finally:
            connections.close_all()

    threads = [threading.Thread(target=push_same) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert sorted(created) == [False, False, False, True]
    assert AdapterVersion.objects.filter(adapter__name="same").count() == 1

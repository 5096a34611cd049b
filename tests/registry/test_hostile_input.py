"""Hostile and confusing input is refused with a stable code, and writes nothing."""

from __future__ import annotations

import json
import struct
import threading
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from registry.models import Adapter, CompositionJob, Namespace
from tests.factories import make_lora_adapter
from tests.helpers import broker_down, folder_files, json_of, push, push_folder, stored_blobs

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _own_blob_store(local_blob_store: Path) -> Path:
    return local_blob_store


@pytest.mark.parametrize("label", ["main", "Latest", "7", "abc1234", "0123456789abcdef0123456789abcdef01234567"])
def test_labels_that_read_as_another_revision_are_refused(
    label: str, alice: Any, client_for: Any, lora_dir: Path
) -> None:
    response = push_folder(client_for(alice), "alice/x", lora_dir, label=label)
    assert response.status_code == 400 and json_of(response)["code"] == "bad_label"
    assert not Adapter.objects.exists()


def test_a_read_scoped_token_cannot_create_an_organization(alice: Any, client_for: Any) -> None:
    response = client_for(alice, scope="read").post("/api/v1/orgs/", {"name": "acme"}, format="json")
    assert response.status_code == 403 and json_of(response)["code"] == "token_scope"
    assert not Namespace.objects.filter(name="acme").exists()


@pytest.mark.parametrize("name", ["upload", "API", "healthz", "models"])
def test_organizations_named_like_the_hubs_routes_are_refused(name: str, alice: Any, client_for: Any) -> None:
    response = client_for(alice).post("/api/v1/orgs/", {"name": name}, format="json")
    assert response.status_code == 400 and json_of(response)["code"] == "reserved_name"


def test_a_user_named_like_a_route_gets_no_namespace(db: Any) -> None:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("admin", password="pw-admin-123")
    assert not Namespace.objects.filter(name="admin").exists() and user.pk


def test_at_most_32_tags(alice: Any, client_for: Any, lora_dir: Path) -> None:
    tags = ",".join(f"t{i}" for i in range(33))
    response = push_folder(client_for(alice), "alice/x", lora_dir, tags=tags)
    assert response.status_code == 400 and json_of(response)["code"] == "too_many_tags"
    assert not Adapter.objects.exists() and not stored_blobs()


@pytest.mark.parametrize("name", [".env", ".git/config", "notes/.secret", "ａdapter.txt", "ﬁle.txt"])
def test_hidden_files_and_look_alike_names_are_refused(name: str, alice: Any, client_for: Any, lora_dir: Path) -> None:
    response = push(client_for(alice), "alice/x", [*folder_files(lora_dir), (name, b"TOKEN=1")])
    assert response.status_code == 400 and json_of(response)["code"] == "bad_filename", json_of(response)
    assert not Adapter.objects.exists() and not stored_blobs()


def test_integer_lora_tensors_are_refused(alice: Any, client_for: Any, lora_dir: Path, tmp_path: Path) -> None:
    data = (lora_dir / "adapter_model.safetensors").read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    first = next(k for k in header if k != "__metadata__")
    header[first]["dtype"] = "I32"  # same byte size as F32: only the dtype is wrong
    raw = json.dumps(header).encode()
    files = dict(folder_files(lora_dir))
    files["adapter_model.safetensors"] = struct.pack("<Q", len(raw)) + raw + data[8 + length :]
    response = push(client_for(alice), "alice/x", sorted(files.items()))
    assert response.status_code == 422 and json_of(response)["code"] == "bad_dtype"


def test_a_preupload_of_too_many_files_is_refused(alice: Any, client_for: Any, lora_dir: Path) -> None:
    from django.test import Client

    from registry.services import issue_token

    assert push_folder(client_for(alice), "alice/x", lora_dir).status_code == 201
    token = issue_token(user=alice, name="t", scope="write").secret
    body = {"files": [{"path": f"f{i}.txt", "size": 1, "sample": ""} for i in range(100_000)]}
    response = Client().post(
        "/api/models/alice/x/preupload/main",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 413


def test_an_expression_nested_too_deep_is_a_422(alice: Any, client_for: Any, lora_dir: Path) -> None:
    client = client_for(alice)
    assert push_folder(client, "alice/sql", lora_dir).status_code == 201
    expression = "(" * 400 + "alice/sql" + ")" * 400
    response = client.post("/api/v1/compositions/", {"expression": expression, "into": "alice/out"}, format="json")
    assert response.status_code == 422 and json_of(response)["code"] == "bad_expression"
    signs = client.post(
        "/api/v1/compositions/", {"expression": "-" * 400 + "alice/sql", "into": "alice/out"}, format="json"
    )
    assert signs.status_code == 422 and json_of(signs)["code"] == "bad_expression"


def test_a_lora_variant_is_refused_before_a_job_is_queued(alice: Any, client_for: Any, tmp_path: Path) -> None:
    client = client_for(alice)
    folder = make_lora_adapter(tmp_path / "tokens", seed=2, trainable_token_indices=[1, 2])
    assert push_folder(client, "alice/tokens", folder).status_code == 201
    response = client.post(
        "/api/v1/compositions/",
        {"method": "linear", "inputs": [{"adapter": "alice/tokens", "weight": 1}], "into": "alice/out"},
        format="json",
    )
    assert response.status_code == 422 and json_of(response)["code"] == "unsupported_variant"
    assert not CompositionJob.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_identical_composition_requests_in_parallel_make_one_job(
    transactional_db: None, alice: Any, client_for: Any, lora_dir: Path, lora_dir_2: Path
) -> None:
    client = client_for(alice)
    assert push_folder(client, "alice/sql", lora_dir).status_code == 201
    assert push_folder(client, "alice/chat", lora_dir_2).status_code == 201
    recipe = {"expression": "0.5*alice/sql + 0.5*alice/chat", "into": "alice/mix"}
    answers: list[int] = []
    barrier = threading.Barrier(10)

    def submit() -> None:
        try:
            barrier.wait()
            answers.append(client_for(alice).post("/api/v1/compositions/", recipe, format="json").status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=submit) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert CompositionJob.objects.count() == 1
    assert sorted(answers) == [200] * 9 + [202]
    forced = client.post("/api/v1/compositions/", {**recipe, "force": True}, format="json")
    assert forced.status_code == 202 and CompositionJob.objects.count() == 2


def test_unknown_api_routes_answer_json(db: Any) -> None:
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    for path in ("/api/nope", "/api/v2/adapters/", "/api/v1/nothing-here/"):
        for response in (browser.get(path), browser.post(path, {"x": 1})):
            assert response.status_code == 404 and response["Content-Type"] == "application/json", path
            assert json_of(response)["code"] == "not_found"


@pytest.mark.parametrize(
    "path",
    ["/api/v1/adapters/alice%2Fx/y/", "/alice/x/resolve/main/..%2F..%2Fetc%2Fpasswd", "/api/models/alice/x/tree/main/%2E%2E/",
     "/api/v1/adapters/alice/x/versions/1/files/dir/"],
)  # fmt: skip
def test_odd_paths_on_machine_routes_answer_json(path: str, alice: Any, client_for: Any, lora_dir: Path) -> None:
    from django.test import Client

    assert push_folder(client_for(alice), "alice/x", lora_dir).status_code == 201
    response = Client().get(path)
    assert 400 <= response.status_code < 500 and response["Content-Type"] == "application/json", (
        path, response.status_code, response.content[:200],
    )  # fmt: skip


def test_a_composition_while_the_broker_is_down_is_a_503_and_leaves_no_job(
    transactional_db: None, settings: Any, alice: Any, client_for: Any, lora_dir: Path
) -> None:
    # transactional_db: the job is enqueued when its transaction commits, which needs real commits.
    client = client_for(alice)
    assert push_folder(client, "alice/sql", lora_dir).status_code == 201
    with broker_down():
        response = client.post(
            "/api/v1/compositions/",
            {"method": "linear", "inputs": [{"adapter": "alice/sql", "weight": 1}], "into": "alice/out"},
            format="json",
        )
    assert response.status_code == 503 and json_of(response)["code"] == "broker_unavailable"
    assert not CompositionJob.objects.exists()


def test_requests_beyond_the_rate_are_refused_with_retry_after(settings: Any, alice: Any, client_for: Any) -> None:
    from django.core.cache import cache

    cache.clear()
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "read": "3/min"}
    client = client_for(alice)
    answers = [client.get("/api/v1/adapters/").status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    refused = client.get("/api/v1/adapters/")
    assert json_of(refused)["code"] == "throttled" and int(refused["Retry-After"]) > 0
    assert client_for(None).get("/api/v1/adapters/").status_code == 200, "counted per user"
    cache.clear()


def test_hf_routes_share_the_users_rate(settings: Any, alice: Any, client_for: Any, lora_dir: Path) -> None:
    from django.core.cache import cache

    client = client_for(alice)
    push_folder(client, "alice/tiny-lora", lora_dir)
    cache.clear()
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "read": "3/min"}
    answers = [
        client.get("/api/v1/adapters/").status_code,
        client.get("/api/models/alice/tiny-lora").status_code,
        client.get("/api/models/alice/tiny-lora/revision/main").status_code,
        client.get("/api/models/alice/tiny-lora").status_code,
    ]
    assert answers == [200, 200, 200, 429], "REST and HF requests count against one budget"
    refused = client.get("/alice/tiny-lora/resolve/main/adapter_config.json")
    assert refused.status_code == 429 and refused["X-Error-Code"] == "throttled" and int(refused["Retry-After"]) > 0
    cache.clear()


def test_one_user_cannot_queue_more_than_their_share_of_jobs(
    settings: Any, alice: Any, client_for: Any, lora_dir: Path, lora_dir_2: Path
) -> None:
    settings.MAX_ACTIVE_JOBS_PER_USER = 1
    client = client_for(alice)
    assert push_folder(client, "alice/sql", lora_dir).status_code == 201
    assert push_folder(client, "alice/chat", lora_dir_2).status_code == 201
    first = client.post(
        "/api/v1/compositions/", {"expression": "alice/sql + alice/chat", "into": "alice/a"}, format="json"
    )
    second = client.post(
        "/api/v1/compositions/", {"expression": "alice/sql - alice/chat", "into": "alice/b"}, format="json"
    )
    assert first.status_code == 202
    assert second.status_code == 429 and json_of(second)["code"] == "too_many_jobs"
    again = client.post(
        "/api/v1/compositions/", {"expression": "alice/sql + alice/chat", "into": "alice/a"}, format="json"
    )
    assert again.status_code == 200, "asking for the same job again is no new job"

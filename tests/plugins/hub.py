"""Fixtures for tests that run the hub: blob stores, users, tokens, real PEFT adapters."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.factories import BASE_MODEL_NAME, make_base_model_folder, make_lora_adapter, tiny_llama_manifest

# Django and the registry are imported inside the fixtures: this plugin loads for every test
# package, including the pure ones (storage, composer) that may run without Django.


def _user_model() -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model()


_DB_FIXTURES = ("db", "transactional_db", "live_server", "django_db_reset_sequences", "django_db_serialized_rollback")


@pytest.fixture(scope="session")
def test_base_manifest() -> dict[str, list[int]]:
    return tiny_llama_manifest()


@pytest.fixture(autouse=True)
def registered_test_base(request: pytest.FixtureRequest) -> Any:
    """The tests' tiny Llama (BASE_MODEL_NAME) is registered, with its manifest, in every test that
    uses the database, as an operator registers a hub's base models: pushes name it."""
    uses_db = request.node.get_closest_marker("django_db") is not None or any(
        name in request.fixturenames for name in _DB_FIXTURES
    )
    if not uses_db:
        return None
    request.getfixturevalue("_django_db_helper")
    from registry.services import register_base_model

    return register_base_model(
        name=BASE_MODEL_NAME, architecture="LlamaForCausalLM", manifest=request.getfixturevalue("test_base_manifest")
    )


@pytest.fixture
def worker_blob_cache(settings: Any, tmp_path: Path) -> Path:
    """Each test's workers (in-process and started ones) cache staged blobs in a folder of its own."""
    settings.WORKER_BLOB_CACHE_DIR = tmp_path / "worker-blob-cache"
    return settings.WORKER_BLOB_CACHE_DIR


@pytest.fixture
def local_blob_store(settings: Any, tmp_path: Path) -> Iterator[Path]:
    """An empty local blob store of the test's own (registry tests use it automatically)."""
    from registry.blobs import reset_blob_store

    root = tmp_path / "blobs"
    settings.BLOB_STORE = {**settings.BLOB_STORE, "BACKEND": "local", "ROOT": str(root)}
    reset_blob_store()
    yield root
    reset_blob_store()


@pytest.fixture
def s3_settings(settings: Any, seaweedfs: Any) -> Iterator[None]:
    """Switch the registry to the S3 store on the test SeaweedFS, with a bucket of its own."""
    from registry.blobs import reset_blob_store

    settings.BLOB_STORE = {
        "BACKEND": "s3",
        "BUCKET": f"hub-{uuid.uuid4().hex[:12]}",
        "ENDPOINT_URL": seaweedfs.endpoint_url,
        "ACCESS_KEY": seaweedfs.access_key,
        "SECRET_KEY": seaweedfs.secret_key,
        "REGION": seaweedfs.region,
        "CREATE_BUCKET": True,
        "ROOT": "",
    }
    reset_blob_store()
    yield
    reset_blob_store()


@pytest.fixture(scope="session")
def base_model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_base_model_folder(tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="session")
def lora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lora_adapter(tmp_path_factory.mktemp("lora"), seed=0)


@pytest.fixture(scope="session")
def lora_dir_2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lora_adapter(tmp_path_factory.mktemp("lora2"), seed=1)


@pytest.fixture
def alice(db: Any) -> Any:
    return _user_model().objects.create_user("alice", password="pw-alice-123")


@pytest.fixture
def bob(db: Any) -> Any:
    return _user_model().objects.create_user("bob", password="pw-bob-123")


@pytest.fixture
def client_for() -> Callable[..., Any]:
    from rest_framework.test import APIClient

    from registry.services import issue_token

    def make(user: Any | None, scope: str = "write", namespace: str | None = None) -> APIClient:
        client = APIClient()
        if user is not None:
            secret = issue_token(user=user, name="test", scope=scope, namespace=namespace).secret
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return client

    return make


@pytest.fixture
def org(alice: Any, bob: Any) -> Any:
    """An organization where alice owns and bob reads."""
    from registry.models import Membership, Namespace, Role

    namespace = Namespace.objects.create(name="acme", kind=Namespace.Kind.ORG)
    Membership.objects.create(namespace=namespace, user=alice, role=Role.OWNER)
    Membership.objects.create(namespace=namespace, user=bob, role=Role.READER)
    return namespace

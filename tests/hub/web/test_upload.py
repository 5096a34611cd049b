"""Pushing a version from the browser's upload form."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from registry.models import Adapter, AdapterVersion
from tests.hub.web.builders import make_adapter

pytestmark = pytest.mark.django_db


def files_of(folder: Path, *names: str) -> list[SimpleUploadedFile]:
    paths = [folder / n for n in names] if names else sorted(p for p in folder.iterdir() if p.is_file())
    return [SimpleUploadedFile(p.name, p.read_bytes()) for p in paths]


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_anonymous_visitors_are_sent_to_log_in(db: Any) -> None:
    response = Client().get("/upload/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=/upload/")


def test_an_upload_publishes_a_version_and_the_adapter_appears_in_the_catalog(alice: Any, lora_dir: Path) -> None:
    client = signed_in(alice)
    form = client.get("/upload/").content.decode()
    assert '<option value="alice" selected>alice</option>' in form

    response = client.post(
        "/upload/",
        {
            "namespace": "alice",
            "name": "sql",
            "task": "text-to-sql",
            "tags": "sql, code",
            "label": "v1.0",
            "files": files_of(lora_dir),
        },
    )

    assert response.status_code == 302 and response["Location"] == "/alice/sql/?version=1"
    version = AdapterVersion.objects.get(adapter__name="sql")
    assert version.label == "v1.0" and version.rank == 4
    assert sorted(version.adapter.tags.values_list("name", flat=True)) == ["code", "sql"]
    assert "Published alice/sql version 1." in client.get(response["Location"]).content.decode()
    assert 'data-adapter="alice/sql"' in Client().get("/", {"q": "sql"}).content.decode()

    again = client.post("/upload/", {"namespace": "alice", "name": "sql", "files": files_of(lora_dir)}, follow=True)
    assert "already version 1" in again.content.decode()
    assert AdapterVersion.objects.filter(adapter__name="sql").count() == 1


def test_the_server_s_validation_errors_are_shown_on_the_form(alice: Any, lora_dir: Path) -> None:
    client = signed_in(alice)

    missing = client.post(
        "/upload/", {"namespace": "alice", "name": "sql", "files": files_of(lora_dir, "adapter_model.safetensors")}
    )
    assert missing.status_code == 400
    assert "adapter_config.json is missing" in missing.content.decode()

    pickled = client.post(
        "/upload/",
        {
            "namespace": "alice",
            "name": "sql",
            "files": [
                *files_of(lora_dir, "adapter_config.json"),
                SimpleUploadedFile("adapter_model.bin", b"\x80\x04K\x01."),
            ],
        },
    )
    assert pickled.status_code in (400, 422)
    assert 'class="msg msg-error form-errors"' in pickled.content.decode()
    nothing = client.post("/upload/", {"namespace": "alice", "name": "sql"})
    assert nothing.status_code == 400 and "Pick the files" in nothing.content.decode()
    assert not Adapter.objects.exists()


def test_one_cannot_upload_into_a_namespace_one_may_not_write(alice: Any, bob: Any, org: Any, lora_dir: Path) -> None:
    response = signed_in(bob).post("/upload/", {"namespace": "acme", "name": "x", "files": files_of(lora_dir)})

    assert response.status_code == 400 and "Select a valid choice" in response.content.decode()
    assert not Adapter.objects.exists()
    assert "acme" in signed_in(alice).get("/upload/").content.decode()


def test_a_new_version_of_an_existing_adapter_is_offered_from_its_page(alice: Any) -> None:
    make_adapter(alice, "sql")
    html = signed_in(alice).get("/upload/", {"into": "alice/sql"}).content.decode()
    assert 'value="sql"' in html and "this upload becomes its next version" in html


def test_posts_without_a_csrf_token_are_refused(alice: Any, lora_dir: Path) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    response = client.post("/upload/", {"namespace": "alice", "name": "sql", "files": files_of(lora_dir)})

    assert response.status_code == 403
    assert not Adapter.objects.exists()

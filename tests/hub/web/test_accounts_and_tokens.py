"""Sign up, log in, log out, and the API token page."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from registry.models import ApiToken, Namespace

pytestmark = pytest.mark.django_db


def test_signing_up_creates_the_user_and_their_namespace_and_logs_them_in(db: Any) -> None:
    client = Client()

    response = client.post(
        "/accounts/signup/",
        {"username": "carol", "password1": "a-long-passphrase-9", "password2": "a-long-passphrase-9"},
    )

    assert response.status_code == 302
    assert Namespace.objects.filter(name="carol", user__username="carol").exists()
    assert "carol" in client.get("/").content.decode()
    assert client.get("/settings/tokens/").status_code == 200


@pytest.mark.parametrize("username", ["acme", "models", "bad name", "-dash"])
def test_taken_reserved_or_malformed_names_are_refused(org: Any, username: str) -> None:
    response = Client().post(
        "/accounts/signup/",
        {"username": username, "password1": "a-long-passphrase-9", "password2": "a-long-passphrase-9"},
    )

    assert response.status_code == 400
    assert not get_user_model().objects.filter(username=username).exists()


def test_logging_in_returns_to_the_page_asked_for_and_logging_out_needs_a_post(alice: Any) -> None:
    client = Client()
    assert (
        "didn't match" in client.post("/accounts/login/", {"username": "alice", "password": "wrong"}).content.decode()
    )

    response = client.post(
        "/accounts/login/?next=/upload/", {"username": "alice", "password": "pw-alice-123", "next": "/upload/"}
    )
    assert response.status_code == 302 and response["Location"] == "/upload/"
    assert client.get("/upload/").status_code == 200

    assert client.get("/accounts/logout/").status_code == 405
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/upload/").status_code == 302


def test_a_new_token_is_shown_once_works_and_can_be_revoked(alice: Any) -> None:
    client = Client()
    client.force_login(alice)

    response = client.post("/settings/tokens/", {"name": "laptop", "scope": "write", "namespace": "", "expires": "30"})
    assert response.status_code == 302
    shown = client.get("/settings/tokens/").content.decode()
    secret = shown.split('<code id="token-secret">', 1)[1].split("</code>", 1)[0]
    assert secret.startswith("ahub_") and "shown only once" in shown
    # Both ways in: the hub's own variables and the ones huggingface_hub reads, with this hub's address.
    assert f"export HUB_URL=http://testserver HUB_TOKEN={secret}" in shown
    assert f"export HF_ENDPOINT=http://testserver HF_TOKEN={secret}" in shown
    assert secret not in client.get("/settings/tokens/").content.decode()

    api = Client(headers={"Authorization": f"Bearer {secret}"})
    assert api.get("/api/v1/whoami/").json()["username"] == "alice"
    token = ApiToken.objects.get(name="laptop")
    assert token.scope == "write" and token.expires_at is not None

    assert client.post(f"/settings/tokens/{token.pk}/revoke/").status_code == 302
    assert api.get("/api/v1/whoami/").status_code == 401
    assert "revoked" in client.get("/settings/tokens/").content.decode()


def test_one_cannot_revoke_another_user_s_token_or_mint_an_admin_token_without_staff(alice: Any, bob: Any) -> None:
    from registry.services import issue_token

    bobs = issue_token(user=bob, name="bob's").token
    client = Client()
    client.force_login(alice)

    assert client.post(f"/settings/tokens/{bobs.pk}/revoke/").status_code == 404
    assert client.post("/settings/tokens/", {"name": "root", "scope": "admin"}).status_code == 400
    bobs.refresh_from_db()
    assert bobs.revoked_at is None and not ApiToken.objects.filter(name="root").exists()

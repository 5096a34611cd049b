from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from registry.models import ApiToken, Namespace
from registry.services import issue_token
from tests.helpers import json_of, push_folder

pytestmark = pytest.mark.django_db


def test_private_adapters_are_invisible_to_non_members_everywhere(
    alice: Any, bob: Any, client_for: Any, lora_dir: Path
) -> None:
    owner = client_for(alice)
    push_folder(owner, "alice/secret", lora_dir, visibility="private", task="secret-task")
    push_folder(owner, "alice/open", lora_dir, task="secret-task")
    stranger, anonymous = client_for(bob), client_for(None)

    for client in (stranger, anonymous):
        for url in (
            "/api/v1/adapters/alice/secret/",
            "/api/v1/adapters/alice/secret/versions/",
            "/api/v1/adapters/alice/secret/versions/1/",
            "/api/v1/adapters/alice/secret/versions/1/files/adapter_model.safetensors",
        ):
            response = client.get(url)
            assert response.status_code == 404, url
            assert json_of(response)["code"] == "adapter_not_found"
        found = json_of(client.get("/api/v1/adapters/?task=secret-task"))
        assert found["count"] == 1 and [a["id"] for a in found["results"]] == ["alice/open"]
        bases = json_of(client.get("/api/v1/base-models/"))["results"]
        assert bases[0]["adapter_count"] == 1

    mine = json_of(owner.get("/api/v1/adapters/?task=secret-task"))
    assert mine["count"] == 2
    assert owner.get("/api/v1/adapters/alice/secret/").status_code == 200


def test_a_stranger_pushing_to_someone_elses_namespace_is_forbidden(
    alice: Any, bob: Any, client_for: Any, lora_dir: Path
) -> None:
    response = push_folder(client_for(bob), "alice/mine", lora_dir)

    assert response.status_code == 403
    assert json_of(response)["code"] == "namespace_forbidden"


def test_anonymous_pushes_need_authentication(db: Any, lora_dir: Path) -> None:
    response = push_folder(APIClient(), "alice/mine", lora_dir)

    assert response.status_code == 401
    assert json_of(response)["code"] == "auth_required"


def test_a_read_token_cannot_push(alice: Any, client_for: Any, lora_dir: Path) -> None:
    response = push_folder(client_for(alice, scope="read"), "alice/mine", lora_dir)

    assert response.status_code == 403
    assert json_of(response)["code"] == "token_scope"


def test_a_token_limited_to_one_namespace_cannot_write_another(
    alice: Any, org: Namespace, client_for: Any, lora_dir: Path
) -> None:
    limited = client_for(alice, namespace="acme")

    assert push_folder(limited, "acme/team-lora", lora_dir).status_code == 201
    refused = push_folder(limited, "alice/mine", lora_dir)
    assert refused.status_code == 403 and json_of(refused)["code"] == "token_namespace"


@pytest.mark.parametrize("problem", ["unknown", "revoked", "expired"])
def test_bad_tokens_are_refused_with_401(problem: str, alice: Any, lora_dir: Path) -> None:
    issued = issue_token(user=alice, name="t", scope="write")
    if problem == "revoked":
        ApiToken.objects.filter(pk=issued.token.pk).update(revoked_at=timezone.now())
    if problem == "expired":
        ApiToken.objects.filter(pk=issued.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    secret = "ahub_not-a-real-token" if problem == "unknown" else issued.secret
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")

    response = client.get("/api/v1/adapters/")

    assert response.status_code == 401
    assert json_of(response)["code"] == "bad_token"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_organization_roles_decide_who_writes(
    alice: Any, bob: Any, org: Namespace, client_for: Any, lora_dir: Path
) -> None:
    reader = client_for(bob)
    assert push_folder(reader, "acme/team-lora", lora_dir).status_code == 403

    owner = client_for(alice)
    promoted = owner.post("/api/v1/orgs/acme/members/", {"user": "bob", "role": "writer"}, format="json")
    assert promoted.status_code == 200
    assert push_folder(reader, "acme/team-lora", lora_dir, visibility="private").status_code == 201
    removed = owner.post("/api/v1/orgs/acme/members/", {"user": "bob", "role": None}, format="json")
    assert removed.status_code == 204
    assert reader.get("/api/v1/adapters/acme/team-lora/").status_code == 404  # private, and bob left


def test_an_organization_keeps_at_least_one_owner(alice: Any, org: Namespace, client_for: Any) -> None:
    response = client_for(alice).post("/api/v1/orgs/acme/members/", {"user": "alice", "role": "reader"}, format="json")

    assert response.status_code == 409
    assert json_of(response)["code"] == "last_owner"


def test_creating_an_organization_makes_the_creator_its_owner(alice: Any, client_for: Any, lora_dir: Path) -> None:
    client = client_for(alice)
    created = client.post("/api/v1/orgs/", {"name": "lab"}, format="json")
    assert created.status_code == 201
    assert push_folder(client, "lab/x", lora_dir).status_code == 201
    taken = client.post("/api/v1/orgs/", {"name": "alice"}, format="json")
    assert taken.status_code == 409 and json_of(taken)["code"] == "namespace_taken"


def test_tokens_are_shown_once_stored_hashed_listed_and_revoked(alice: Any) -> None:
    session = APIClient()
    session.force_login(alice)

    created = session.post("/api/v1/tokens/", {"name": "laptop", "scope": "write"}, format="json")
    assert created.status_code == 201
    secret = json_of(created)["token"]
    assert secret.startswith("ahub_")
    stored = ApiToken.objects.get(pk=json_of(created)["id"])
    assert secret not in (stored.key_hash, stored.key_prefix) and stored.key_hash == ApiToken.hash_key(secret)

    listed = json_of(session.get("/api/v1/tokens/"))["results"]
    assert [t["name"] for t in listed] == ["laptop"] and "token" not in listed[0]

    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert json_of(bearer.get("/api/v1/whoami/"))["username"] == "alice"
    assert session.delete(f"/api/v1/tokens/{stored.pk}/").status_code == 204
    assert bearer.get("/api/v1/whoami/").status_code == 401


def test_a_write_token_cannot_mint_new_tokens(alice: Any, client_for: Any) -> None:
    response = client_for(alice, scope="write").post("/api/v1/tokens/", {"name": "x", "scope": "write"}, format="json")

    assert response.status_code == 403


def test_only_staff_get_admin_tokens_and_only_admins_register_base_models(alice: Any, client_for: Any) -> None:
    payload = {"name": "org/model", "architecture": "LlamaForCausalLM", "manifest": {"q": [8, 4]}}
    assert client_for(alice).post("/api/v1/base-models/", payload, format="json").status_code == 403
    with pytest.raises(Exception, match="staff"):
        issue_token(user=alice, name="x", scope="admin")

    alice.is_staff = True
    alice.save()
    admin = client_for(alice, scope="admin")
    created = admin.post("/api/v1/base-models/", payload, format="json")
    assert created.status_code == 201
    assert json_of(client_for(None).get("/api/v1/base-models/org/model/"))["manifest"] == {"q": [8, 4]}
    bad = admin.post("/api/v1/base-models/", {**payload, "manifest": {"q": [8]}}, format="json")
    assert bad.status_code == 400 and json_of(bad)["code"] == "invalid"

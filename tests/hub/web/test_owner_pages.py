"""Owners manage their organization's members on its page: add with a role, change a role, remove.
Nobody else sees the controls, and a POST from anyone else is refused."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from registry.models import Membership, Namespace

pytestmark = pytest.mark.django_db


@pytest.fixture
def carol(db: Any) -> Any:
    return get_user_model().objects.create_user("carol", password="pw-carol-123")


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def roles(org: Namespace) -> dict[str, str]:
    return dict(Membership.objects.filter(namespace=org).values_list("user__username", "role"))


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_an_owner_sees_the_member_controls(org: Namespace, alice: Any) -> None:
    html = signed_in(alice).get("/acme/").content.decode()

    assert 'id="add-member"' in html and 'action="/settings/orgs/acme/members/"' in html
    assert 'action="/settings/orgs/acme/members/bob/remove/"' in html
    assert 'aria-label="Role of bob"' in html
    row = html.split('data-member="bob"', 1)[1].split("</tr>", 1)[0]
    assert '<option value="reader" selected>' in row


@pytest.mark.parametrize("who", ["bob", "carol", "anonymous"])
def test_others_see_the_members_but_no_control(org: Namespace, bob: Any, carol: Any, who: str) -> None:
    client = {"bob": signed_in(bob), "carol": signed_in(carol), "anonymous": Client()}[who]

    html = client.get("/acme/").content.decode()

    assert "Members" in html and "alice" in html and "bob" in html
    assert "/settings/orgs/acme/members/" not in html and 'id="add-member"' not in html


def test_an_owner_adds_a_member_with_a_role(org: Namespace, alice: Any, carol: Any) -> None:
    response = signed_in(alice).post(
        "/settings/orgs/acme/members/", {"username": "carol", "role": "writer"}, follow=True
    )

    assert response.redirect_chain == [("/acme/#members", 302)]
    assert roles(org) == {"alice": "owner", "bob": "reader", "carol": "writer"}
    assert "carol is now writer of acme." in messages_of(response)
    assert 'data-member="carol"' in response.content.decode()


def test_an_owner_changes_a_role_and_removes_a_member(org: Namespace, alice: Any) -> None:
    client = signed_in(alice)

    client.post("/settings/orgs/acme/members/", {"username": "bob", "role": "owner"})
    assert roles(org) == {"alice": "owner", "bob": "owner"}

    response = client.post("/settings/orgs/acme/members/bob/remove/", follow=True)
    assert roles(org) == {"alice": "owner"}
    assert "bob is no longer a member of acme." in messages_of(response)


def test_mistakes_an_owner_can_fix_are_said_on_the_page(org: Namespace, alice: Any) -> None:
    client = signed_in(alice)

    unknown = client.post("/settings/orgs/acme/members/", {"username": "nobody", "role": "reader"}, follow=True)
    assert "user nobody does not exist" in messages_of(unknown)
    bad_role = client.post("/settings/orgs/acme/members/", {"username": "bob", "role": "boss"}, follow=True)
    assert any("role must be one of" in m for m in messages_of(bad_role))
    last_owner = client.post("/settings/orgs/acme/members/alice/remove/", follow=True)
    assert "an organization needs at least one owner" in messages_of(last_owner)
    demoted = client.post("/settings/orgs/acme/members/", {"username": "alice", "role": "reader"}, follow=True)
    assert "an organization needs at least one owner" in messages_of(demoted)
    assert roles(org) == {"alice": "owner", "bob": "reader"}


@pytest.mark.parametrize("who", ["bob", "carol"])
def test_a_post_from_anyone_but_an_owner_is_refused(org: Namespace, bob: Any, carol: Any, who: str) -> None:
    client = signed_in(bob if who == "bob" else carol)

    added = client.post("/settings/orgs/acme/members/", {"username": who, "role": "owner"})
    removed = client.post("/settings/orgs/acme/members/alice/remove/")

    assert added.status_code == removed.status_code == 403
    assert "only owners of acme manage its members" in added.content.decode()
    assert roles(org) == {"alice": "owner", "bob": "reader"}


def test_a_writer_is_refused_too(org: Namespace, alice: Any, bob: Any) -> None:
    Membership.objects.filter(namespace=org, user=bob).update(role="writer")

    assert signed_in(bob).post("/settings/orgs/acme/members/bob/remove/").status_code == 403
    assert 'id="add-member"' not in signed_in(bob).get("/acme/").content.decode()
    assert roles(org)["bob"] == "writer"


def test_anonymous_visitors_are_sent_to_log_in_and_a_get_changes_nothing(org: Namespace, alice: Any) -> None:
    response = Client().post("/settings/orgs/acme/members/", {"username": "bob", "role": "owner"})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")

    assert signed_in(alice).get("/settings/orgs/acme/members/bob/remove/").status_code == 405
    assert roles(org) == {"alice": "owner", "bob": "reader"}


def test_a_user_namespace_has_no_members_to_manage(alice: Any, bob: Any) -> None:
    from registry.services import ensure_user_namespace

    ensure_user_namespace(alice)
    client = signed_in(alice)

    assert 'id="add-member"' not in client.get("/alice/").content.decode()
    response = client.post("/settings/orgs/alice/members/", {"username": "bob", "role": "reader"}, follow=True)
    assert "only organizations have members" in messages_of(response)
    assert client.post("/settings/orgs/nowhere/members/", {"username": "bob", "role": "reader"}).status_code == 404

"""`ahub org`: create an organization, list its members, add them, change their roles, remove them."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from client.cli import main
from registry.models import Membership
from tests.client.helpers import run_cli as run

pytestmark = pytest.mark.django_db(transaction=True)


def roles() -> dict[str, str]:
    return {m.user.username: m.role for m in Membership.objects.filter(namespace__name="acme").select_related("user")}


def test_an_owner_creates_an_organization_and_manages_its_members(
    env: str, capsys: pytest.CaptureFixture[str], bob: Any
) -> None:
    code, out, _ = run(capsys, "org", "create", "acme", "--display-name", "Acme Corp")
    assert code == 0 and out.strip() == "Created the organization acme; you are its owner"
    assert roles() == {"alice": "owner"}

    code, out, _ = run(capsys, "org", "add", "acme", "bob", "--role", "writer")
    assert code == 0 and out.strip() == "bob is now writer of acme" and roles() == {"alice": "owner", "bob": "writer"}

    code, out, _ = run(capsys, "org", "members", "acme")
    header, *members = [re.split(r" {2,}", line) for line in out.splitlines()]
    assert code == 0 and header == ["USER", "ROLE", "SINCE"]
    assert [m[:2] for m in members] == [["alice", "owner"], ["bob", "writer"]] and members[1][2] == "now"

    code, out, _ = run(capsys, "org", "add", "acme", "bob", "--json")  # the default role: reader
    assert code == 0 and json.loads(out)["role"] == "reader" and roles()["bob"] == "reader"
    code, out, _ = run(capsys, "org", "members", "acme", "--json")
    assert [(m["user"], m["role"]) for m in json.loads(out)] == [("alice", "owner"), ("bob", "reader")]
    code, out, _ = run(capsys, "whoami")
    assert "organizations: acme (owner)" in out

    code, out, _ = run(capsys, "org", "remove", "acme", "bob")
    assert code == 0 and out.strip() == "bob is no longer a member of acme" and roles() == {"alice": "owner"}


def test_the_hubs_refusals_come_back_as_clear_errors(
    env: str, capsys: pytest.CaptureFixture[str], bob: Any, token_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(capsys, "org", "create", "acme")[0] == 0
    assert run(capsys, "org", "add", "acme", "bob")[0] == 0

    code, _, err = run(capsys, "org", "create", "acme")
    assert code == 1 and "[namespace_taken]" in err
    code, _, err = run(capsys, "org", "add", "acme", "carol")
    assert code == 1 and "user carol does not exist [user_not_found]" in err
    code, _, err = run(capsys, "org", "remove", "acme", "alice")
    assert code == 1 and "[last_owner]" in err and roles()["alice"] == "owner"
    with pytest.raises(SystemExit) as usage:
        main(["org", "add", "acme", "bob", "--role", "admin"])  # the hub's roles: reader, writer, owner
    assert usage.value.code == 2 and "invalid choice: 'admin'" in capsys.readouterr().err

    monkeypatch.setenv("HUB_TOKEN", token_for(bob))
    code, _, err = run(capsys, "--json", "org", "add", "acme", "bob", "--role", "owner")
    assert code == 1 and json.loads(err)["error"]["code"] == "owner_required" and roles()["bob"] == "reader"
    code, out, _ = run(capsys, "org", "members", "acme")
    assert code == 0 and "alice" in out, "a reader sees the members"

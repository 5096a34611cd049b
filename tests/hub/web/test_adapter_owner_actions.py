"""Owners act on the adapter page: edit the metadata and the visibility (Settings tab), yank and
restore versions (Files and versions), request evaluations (Evaluation). Each is a POST form that
goes through the registry's services and redirects back with a message; nobody else sees the
controls, and a POST from anyone else is refused (403 for a reader, 404 where the adapter is
hidden, the login page for a visitor)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from registry.models import Adapter, AdapterVersion, EvaluationRequest, JobStatus
from tests.hub.web.builders import add_version, make_adapter, make_suite, score

pytestmark = pytest.mark.django_db


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def act(client: Client, path: str, data: dict[str, str]) -> tuple[str, list[str]]:
    """POST a form, follow its redirect: where it went back to, and the messages that page shows."""
    response = client.post(path, data, follow=True)
    assert [status for _, status in response.redirect_chain] == [302], response.status_code
    return response.redirect_chain[0][0], [str(m) for m in response.context["messages"]]


@pytest.fixture
def owner(alice: Any) -> Client:
    return signed_in(alice)


@pytest.fixture
def sql(alice: Any) -> Adapter:
    return make_adapter(alice, "sql", task="chat", tags=["old"], description="Before", versions=2)


# --- Who may act ---------------------------------------------------------------------------------------

OWNER_POSTS = [
    ("/{ref}/settings/", {"description": "x", "method": "lora", "base_model": "hub-test/tiny-llama"}),
    ("/{ref}/settings/visibility/", {"visibility": "private"}),
    ("/{ref}/versions/1/yank/", {"action": "yank", "reason": "broken"}),
    ("/{ref}/versions/1/evaluate/", {"suite": "capitals"}),
]


@pytest.mark.parametrize(("path", "data"), OWNER_POSTS)
def test_a_reader_of_the_namespace_is_refused_with_403_and_nothing_changes(
    alice: Any, bob: Any, org: Any, path: str, data: dict[str, str]
) -> None:
    adapter = make_adapter(org, "tool", description="Before", visibility="private")
    make_suite(name="capitals")

    response = signed_in(bob).post(path.format(ref="acme/tool"), data)  # bob reads acme

    assert response.status_code == 403
    adapter.refresh_from_db()
    assert adapter.description == "Before" and adapter.visibility == "private"
    assert not AdapterVersion.objects.filter(adapter=adapter, yanked=True).exists()
    assert not EvaluationRequest.objects.exists()


@pytest.mark.parametrize(("path", "data"), OWNER_POSTS)
def test_a_stranger_gets_403_on_a_public_adapter_and_404_on_a_private_one(
    alice: Any, bob: Any, path: str, data: dict[str, str]
) -> None:
    make_adapter(alice, "open")
    make_adapter(alice, "secret", visibility="private")
    make_suite(name="capitals")
    as_bob = signed_in(bob)

    assert as_bob.post(path.format(ref="alice/open"), data).status_code == 403
    assert as_bob.post(path.format(ref="alice/secret"), data).status_code == 404
    assert as_bob.post(path.format(ref="alice/absent"), data).status_code == 404
    assert Adapter.objects.get(name="open").visibility == "public"
    assert not AdapterVersion.objects.filter(yanked=True).exists() and not EvaluationRequest.objects.exists()


@pytest.mark.parametrize(("path", "data"), OWNER_POSTS)
def test_a_visitor_is_sent_to_the_login_page(alice: Any, path: str, data: dict[str, str]) -> None:
    make_adapter(alice, "open")
    make_suite(name="capitals")

    response = Client().post(path.format(ref="alice/open"), data)

    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")
    assert not AdapterVersion.objects.filter(yanked=True).exists()


def test_the_settings_tab_is_the_owners_only(alice: Any, bob: Any, org: Any) -> None:
    make_adapter(org, "tool")
    make_adapter(alice, "secret", visibility="private")

    assert signed_in(alice).get("/acme/tool/settings/").status_code == 200
    assert signed_in(bob).get("/acme/tool/settings/").status_code == 403
    assert signed_in(bob).get("/alice/secret/settings/").status_code == 404
    assert Client().get("/acme/tool/settings/").status_code == 302


def test_the_controls_are_shown_to_owners_only(alice: Any, bob: Any, sql: Adapter) -> None:
    make_suite(name="capitals")
    owner, stranger = signed_in(alice), signed_in(bob)

    files = owner.get("/alice/sql/files/").content.decode()
    assert files.count('data-owner-action="yank"') == 2 and 'name="csrfmiddlewaretoken"' in files
    assert 'data-owner-action="evaluate"' in owner.get("/alice/sql/evaluation/").content.decode()
    for client in (stranger, Client()):
        for tab in ("", "files/", "evaluation/", "lineage/"):
            assert "data-owner-action" not in client.get(f"/alice/sql/{tab}").content.decode()


def test_owner_actions_answer_only_posts(owner: Client, sql: Adapter) -> None:
    for path in ("/alice/sql/settings/visibility/", "/alice/sql/versions/1/yank/", "/alice/sql/versions/1/evaluate/"):
        assert owner.get(path).status_code == 405


# --- Metadata and visibility -----------------------------------------------------------------------------


def test_the_owner_edits_the_metadata_and_is_sent_back_with_a_message(owner: Client, sql: Adapter) -> None:
    page = owner.get("/alice/sql/settings/").content.decode()
    assert 'value="chat"' in page and ">\nBefore</textarea>" in page and 'value="old"' in page
    assert 'name="base_model"' in page and "disabled" in page.split('name="base_model"', 1)[1].split(">", 1)[0]

    back, shown = act(
        owner,
        "/alice/sql/settings/",
        {
            "description": "Turns questions into SQL",
            "task": "text-to-sql",
            "tags": "SQL, code ,",
            "license": "apache-2.0",
            "method": "dora",
            "base_model": "someone/else",  # disabled once versions exist: ignored
        },
    )

    assert (back, shown) == ("/alice/sql/settings/", ["Saved the metadata of alice/sql."])
    sql.refresh_from_db()
    assert (sql.description, sql.task, sql.license, sql.method) == (
        "Turns questions into SQL",
        "text-to-sql",
        "apache-2.0",
        "dora",
    )
    assert sorted(t.name for t in sql.tags.all()) == ["code", "sql"]
    assert sql.base_model.name == "hub-test/tiny-llama"
    assert "Turns questions into SQL" in owner.get("/alice/sql/").content.decode()


def test_the_registry_refusing_metadata_shows_its_message_on_the_form(owner: Client, alice: Any) -> None:
    make_adapter(alice, "draft", versions=0)

    too_long = owner.post(
        "/alice/draft/settings/", {"tags": "x" * 65, "method": "lora", "base_model": "hub-test/tiny-llama"}
    )
    unknown = owner.post("/alice/draft/settings/", {"method": "lora", "base_model": "nobody/unknown-model"})

    assert too_long.status_code == 400 and "must have 1 to 64 characters" in too_long.content.decode()
    assert unknown.status_code == 422 and "is not registered on this hub" in unknown.content.decode()
    assert Adapter.objects.get(name="draft").base_model.name == "hub-test/tiny-llama"


def test_the_owner_makes_an_adapter_private_and_public_again(owner: Client, bob: Any, sql: Adapter) -> None:
    back, shown = act(owner, "/alice/sql/settings/visibility/", {"visibility": "private"})

    assert (back, shown) == ("/alice/sql/settings/", ["alice/sql is now private: seen by members of alice only."])
    assert Client().get("/alice/sql/").status_code == 404
    assert signed_in(bob).get("/alice/sql/files/").status_code == 404

    assert act(owner, "/alice/sql/settings/visibility/", {"visibility": "public"})[1] == [
        "alice/sql is now public: seen by everyone."
    ]
    assert Client().get("/alice/sql/").status_code == 200
    assert act(owner, "/alice/sql/settings/visibility/", {"visibility": "secret"})[1] == ["Choose public or private."]


# --- Yank and restore -------------------------------------------------------------------------------------


def test_the_owner_yanks_a_version_with_a_reason_and_restores_it(owner: Client, sql: Adapter) -> None:
    back, shown = act(owner, "/alice/sql/versions/2/yank/", {"action": "yank", "reason": "trained on the test set"})

    assert back == "/alice/sql/files/?version=2"
    assert shown == ["Yanked version 2: trained on the test set. It stays downloadable by number; latest skips it."]
    version = sql.versions.get(number=2)
    assert version.yanked and version.yanked_reason == "trained on the test set"
    files = owner.get("/alice/sql/files/").content.decode()
    assert 'badge-version">v1' in files  # the newest non-yanked version is shown
    assert 'data-owner-action="restore"' in files

    assert act(owner, "/alice/sql/versions/2/yank/", {"action": "restore"})[1] == ["Restored version 2."]
    version.refresh_from_db()
    assert not version.yanked and version.yanked_reason == ""


def test_yanking_without_a_reason_is_refused_with_the_registrys_message(owner: Client, sql: Adapter) -> None:
    back, shown = act(owner, "/alice/sql/versions/1/yank/", {"action": "yank", "reason": "  "})

    assert back == "/alice/sql/files/?version=1"
    assert shown == ["say why the version is yanked: users who pinned it will read the reason"]
    assert not sql.versions.get(number=1).yanked
    assert owner.post("/alice/sql/versions/9/yank/", {"action": "yank", "reason": "x"}).status_code == 404


# --- Evaluations ---------------------------------------------------------------------------------------------


def test_the_owner_requests_an_evaluation_of_a_version_on_a_suite(owner: Client, sql: Adapter) -> None:
    make_suite(name="capitals")
    make_suite(name="wiki", higher_is_better=False)
    page = owner.get("/alice/sql/evaluation/", {"version": "1"}).content.decode()
    assert '<option value="capitals">' in page and '<option value="wiki">' in page

    back, shown = act(owner, "/alice/sql/versions/1/evaluate/", {"suite": "wiki"})

    assert back == "/alice/sql/evaluation/?version=1"
    assert shown == ["Queued an evaluation of version 1 on wiki: its score appears here once a worker has run it."]
    queued = EvaluationRequest.objects.get()
    assert (queued.version.number, queued.suite.name, queued.status) == (1, "wiki", JobStatus.QUEUED)
    assert act(owner, "/alice/sql/versions/1/evaluate/", {"suite": "wiki"})[1] == [
        "An evaluation of version 1 on wiki is already queued."
    ]
    assert EvaluationRequest.objects.count() == 1
    listed = owner.get("/alice/sql/evaluation/", {"version": "1"}).content.decode()
    assert 'data-request-suite="wiki"' in listed and "status-queued" in listed


def test_a_scored_suite_is_not_queued_twice_unless_forced(owner: Client, sql: Adapter) -> None:
    suite = make_suite(name="capitals")
    version = sql.versions.get(number=2)
    EvaluationRequest.objects.create(version=version, suite=suite, status=JobStatus.SUCCEEDED)
    score(version, suite, 0.9)

    assert act(owner, "/alice/sql/versions/2/evaluate/", {"suite": "capitals"})[1] == [
        "There is already a score of version 2 on capitals (tick “Evaluate again” to run it anew)."
    ]
    forced = act(owner, "/alice/sql/versions/2/evaluate/", {"suite": "capitals", "force": "on"})[1]
    assert forced[0].startswith("Queued an evaluation of version 2 on capitals")
    assert EvaluationRequest.objects.filter(status=JobStatus.QUEUED).count() == 1


def test_an_evaluation_the_registry_refuses_comes_back_as_its_message(owner: Client, alice: Any) -> None:
    make_suite(name="capitals")
    adapter = make_adapter(alice, "bottleneck", versions=0)
    version = add_version(adapter)
    # No peft_type: the workers cannot load it (versions are immutable; a row update stands in for a push).
    AdapterVersion.objects.filter(pk=version.pk).update(config={"adapter_type": "bottleneck"})

    refused = act(owner, "/alice/bottleneck/versions/1/evaluate/", {"suite": "capitals"})[1]
    unknown = act(owner, "/alice/bottleneck/versions/1/evaluate/", {"suite": "nope"})[1]

    assert len(refused) == 1 and "which the evaluation workers cannot load" in refused[0]
    assert unknown == ["Pick one of hub-test/tiny-llama's eval suites."]
    assert not EvaluationRequest.objects.exists()

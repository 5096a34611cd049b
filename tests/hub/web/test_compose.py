"""The compose form: adapter search, the check before submitting, submitting, and the job page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from registry.compositions import run_composition
from registry.models import CompositionJob
from tests.hub.web.builders import make_adapter, push_folder

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_client(alice: Any, lora_dir: Path, lora_dir_2: Path) -> Client:
    push_folder(alice, "alice/sql", lora_dir)
    push_folder(alice, "alice/chat", lora_dir_2)
    client = Client()
    client.force_login(alice)
    return client


def recipe(*inputs: tuple[str, str], method: str = "linear", into: str = "mix", **extra: str) -> dict[str, Any]:
    return {
        "adapter": [ref for ref, _ in inputs],
        "version": ["" for _ in inputs],
        "weight": [weight for _, weight in inputs],
        "method": method,
        "into_namespace": "alice",
        "into_name": into,
        **extra,
    }


def test_anonymous_visitors_are_sent_to_log_in(db: Any) -> None:
    assert Client().get("/compose/").status_code == 302


def test_the_form_offers_every_merge_method_and_prefills_an_adapter(alice_client: Client) -> None:
    html = alice_client.get("/compose/", {"add": "alice/sql"}).content.decode()

    methods = re.findall(r'<option value="([a-z_]+)" data-uses-rank', html)
    assert methods == [
        "stack", "linear", "expr", "svd", "ties", "dare_linear", "dare_ties", "magnitude_prune", "hybrid"
    ]  # fmt: skip
    assert 'name="adapter" value="alice/sql"' in html


def test_the_check_lists_compatibility_problems_without_creating_a_job(alice_client: Client, bob: Any) -> None:
    make_adapter(bob, "other-base", base="hub-test/other")
    make_adapter(bob, "prompts", method="ia3")
    make_adapter(bob, "secret", visibility="private")

    mismatch = alice_client.post(
        "/compose/check/", recipe(("alice/sql", "0.7"), ("bob/other-base", "0.3"))
    ).content.decode()
    assert "different base models" in mismatch and 'data-check="problems"' in mismatch

    many = alice_client.post(
        "/compose/check/", recipe(("bob/prompts", "1"), ("bob/secret", "1"), ("alice/sql", "1"))
    ).content.decode()
    assert "2 problems" in many and "changes no weight by a computable delta" in many
    assert "bob/secret does not exist" in many  # private: as absent as in the API

    weight = alice_client.post("/compose/check/", recipe(("alice/sql", "x"), ("alice/chat", "1"))).content.decode()
    assert "The weight of alice/sql must be a number" in weight

    density = alice_client.post(
        "/compose/check/", recipe(("alice/sql", "1"), ("alice/chat", "1"), method="ties")
    ).content.decode()
    assert "needs density" in density
    assert not CompositionJob.objects.exists()


def test_a_sound_recipe_checks_ok_and_ignores_parameters_its_method_does_not_use(alice_client: Client) -> None:
    response = alice_client.post(
        "/compose/check/", recipe(("alice/sql", "0.7"), ("alice/chat", "-0.3"), method="stack", rank="8")
    )

    html = response.content.decode()
    assert 'data-check="ok"' in html and "into <strong>alice/mix</strong>" in html
    assert "the result has rank 8" in html and "Negative weights subtract" in html

    # Without JavaScript, the Check button re-renders the whole form with the result.
    page = alice_client.post("/compose/", {**recipe(("alice/sql", "1"), ("alice/chat", "1")), "action": "check"})
    assert page.status_code == 200 and 'data-check="ok"' in page.content.decode()
    assert not CompositionJob.objects.exists()


def test_submitting_goes_to_the_job_page_which_links_to_the_new_adapter_once_done(
    alice_client: Client, bob: Any
) -> None:
    response = alice_client.post(
        "/compose/",
        {**recipe(("alice/sql", "0.7"), ("alice/chat", "-0.3"), method="linear", rank="4"), "action": "submit"},
    )

    assert response.status_code == 302
    job = CompositionJob.objects.get()
    assert response["Location"] == f"/jobs/{job.pk}/"
    queued = alice_client.get(response["Location"]).content.decode()
    assert "status-queued" in queued and f'data-job-url="/api/v1/jobs/{job.pk}/"' in queued
    assert "alice/sql:1" in queued and "× -0.3" in queued

    finished = run_composition(str(job.pk), worker="test")
    assert finished is not None and finished.status == "succeeded", finished.error_message

    done = alice_client.get(f"/jobs/{job.pk}/").content.decode()
    assert 'href="/alice/mix/?version=1"' in done
    # The recipe is on the new adapter's Lineage tab.
    lineage = alice_client.get("/alice/mix/lineage/").content.decode()
    assert "alice/sql:1" in lineage and ">-0.3<" in lineage and "composed with <strong>linear</strong>" in lineage

    again = alice_client.post(
        "/compose/",
        {**recipe(("alice/sql", "0.7"), ("alice/chat", "-0.3"), method="linear", rank="4"), "action": "submit"},
        follow=True,
    )
    assert CompositionJob.objects.count() == 1 and "already submitted" in again.content.decode()

    as_bob = Client()
    as_bob.force_login(bob)
    assert as_bob.get(f"/jobs/{job.pk}/").status_code == 404
    assert "alice/mix" in alice_client.get("/jobs/").content.decode()


def test_submit_time_refusals_are_shown_on_the_form(alice_client: Client, bob: Any) -> None:
    make_adapter(bob, "other-base", base="hub-test/other")

    response = alice_client.post(
        "/compose/", {**recipe(("alice/sql", "1"), ("bob/other-base", "1")), "action": "submit"}
    )

    assert response.status_code == 422 and "different base models" in response.content.decode()
    assert not CompositionJob.objects.exists()


def test_the_adapter_search_offers_lora_adapters_the_user_can_see(alice_client: Client, bob: Any) -> None:
    make_adapter(bob, "sql-prompts", method="ia3")
    make_adapter(bob, "sql-secret", visibility="private")
    make_adapter(bob, "sql-dora", method="dora")

    html = alice_client.get("/compose/search/", {"q": "sql"}).content.decode()

    # The exact name first (relevance), then the other name match.
    assert re.findall(r'data-add-adapter="([^"]+)"', html) == ["alice/sql", "bob/sql-dora"]
    assert alice_client.get("/compose/search/", {"q": ""}).content.decode().strip() == ""


def test_the_check_accepts_a_hybrid_of_a_lora_and_a_prompt(alice_client: Client, alice: Any) -> None:
    style = make_adapter(alice, "style", method="prompt_tuning")
    style.versions.update(config={"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 4}, peft_type="PROMPT_TUNING")

    ok = alice_client.post("/compose/check/", recipe(("alice/sql", "1"), ("alice/style", "1"), method="hybrid"))

    assert 'data-check="ok"' in ok.content.decode(), ok.content.decode()
    two_prompts = alice_client.post(
        "/compose/check/", recipe(("alice/style", "1"), ("alice/style", "1"), method="hybrid")
    ).content.decode()
    assert "at most one prompt part" in two_prompts

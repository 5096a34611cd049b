"""In Chromium: the compose page narrows its inputs to the chosen base model and fills method
defaults; the gate's verdict on the job page, the jobs list and catalog cards; an owner manages
members. Screenshots land in the system's temporary folder (adapter-hub-screenshots/)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from composer.compose import DEFAULT_SEED
from hub.web.compose import SUGGESTED_DENSITY
from registry.models import Membership, Namespace, Role
from tests.hub.web.builders import make_adapter
from tests.hub.web.e2e.conftest import log_in
from tests.hub.web.test_verdict_pages import REJECTED, VALIDATED, composed, job_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture(autouse=True)
def fresh_counts(transactional_db: Any) -> None:
    """Live-server tests empty the tables with TRUNCATE, which fires no row trigger: the catalog's
    maintained counts would still hold an earlier test's adapters."""
    from registry import facet_counts

    facet_counts.rebuild()


def test_choosing_a_base_model_narrows_the_inputs_and_a_method_fills_its_defaults(
    page: Any, alice: Any, bob: Any, screenshot: Any
) -> None:
    make_adapter(alice, "sql-lora", task="text-to-sql", downloads=7)
    make_adapter(alice, "chat-lora", method="dora", task="chat", downloads=3)
    make_adapter(bob, "poems-lora", base="hub-test/other", task="poetry")
    make_adapter(bob, "secret-lora", visibility="private")
    log_in(page, "alice", "pw-alice-123")

    page.goto("/compose/")
    choices = page.locator("[data-choice]")
    expect(choices).to_have_count(0)
    page.select_option("#id_base_model", "hub-test/tiny-llama")
    expect(choices).to_have_count(2)  # bob's private adapter is not among them
    expect(page.locator("[data-choice='bob/secret-lora']")).to_have_count(0)
    page.wait_for_url(re.compile(r"\?base_model=hub-test%2Ftiny-llama$"))
    page.click("[data-add-choice='alice/sql-lora']")
    page.click("[data-add-choice='alice/chat-lora']")
    inputs = page.locator("input[name=adapter]")
    expect(inputs.nth(0)).to_have_value("alice/sql-lora")
    expect(inputs.nth(1)).to_have_value("alice/chat-lora")

    # The search looks among the chosen base model's adapters only.
    page.fill("#adapter-search", "lora")
    expect(page.locator("#adapter-search-results [data-add-adapter]")).to_have_count(2)
    expect(page.locator("[data-add-adapter='bob/poems-lora']")).to_have_count(0)
    page.fill("#adapter-search", "")
    expect(page.locator("#adapter-search-results [data-add-adapter]")).to_have_count(0)

    # TIES: its density appears with the default, and its sign method; an emptied density is filled
    # again when another density method is picked.
    density = page.locator("#id_density")
    expect(density).to_be_hidden()  # linear takes none
    page.select_option("#id_method", "ties")
    expect(density).to_be_visible()
    expect(density).to_have_value(str(SUGGESTED_DENSITY))
    expect(page.locator("#id_majority_sign_method")).to_have_value("total")
    density.fill("")
    page.select_option("#id_method", "dare_linear")
    expect(density).to_have_value(str(SUGGESTED_DENSITY))
    expect(page.locator("#id_seed")).to_have_attribute("placeholder", f"{DEFAULT_SEED} (default)")
    expect(page.locator("#id_majority_sign_method")).to_be_hidden()
    page.fill("#id_into_name", "mixed")
    expect(page.locator("[data-check=ok]")).to_contain_text("into alice/mixed")  # hub.js checked the form
    screenshot(page, "compose-filtered")

    page.select_option("#id_base_model", "hub-test/other")
    expect(choices).to_have_count(1)
    expect(page.locator("[data-choice='bob/poems-lora']")).to_be_visible()
    expect(page.locator("#compose-base-model")).to_have_value("hub-test/other")


def test_the_job_page_the_jobs_list_and_the_catalog_show_the_gate_s_verdict(
    page: Any, alice: Any, bob: Any, screenshot: Any
) -> None:
    make_adapter(alice, "capital-lora", task="qa", description="Knows capitals", downloads=12)
    make_adapter(alice, "opposite-lora", task="qa", description="Knows opposites", downloads=8)
    good = composed(alice, "capital-opposite", "validated", VALIDATED, description="Both skills, stacked")
    bad = composed(alice, "capital-minus", "rejected", REJECTED, description="Capitals minus opposites")
    composed(alice, "fresh-mix", "pending", [], description="Just composed")
    good_job = job_for(alice, good, inputs=["alice/capital-lora", "alice/opposite-lora"])
    bad_job = job_for(alice, bad, inputs=["alice/capital-lora", "alice/opposite-lora"])
    log_in(page, "alice", "pw-alice-123")

    page.goto(f"/jobs/{bad_job.pk}/")
    verdict = page.locator("#verdict")
    expect(verdict.locator(".badge")).to_have_text(re.compile(r"✗ rejected · opposites 0\.400"))
    expect(verdict.locator(".verdict-reasons li")).to_have_count(2)
    expect(verdict.locator(".verdict-reasons li").nth(1)).to_contain_text("✗ opposites: exact_match 0.400")
    screenshot(page, "job-verdict-rejected")
    page.goto(f"/jobs/{good_job.pk}/")
    expect(page.locator("#verdict .badge")).to_contain_text("✓ validated")
    screenshot(page, "job-verdict-validated")

    page.goto("/jobs/")
    expect(page.locator("tr[data-job] [data-verdict]")).to_have_count(2)
    expect(page.locator(f"tr[data-job='{good_job.pk}'] [data-verdict='validated']")).to_contain_text("capitals 0.990")
    screenshot(page, "jobs-list")

    page.goto("/")
    card = page.locator("[data-adapter='alice/capital-opposite']")
    expect(card.locator("[data-verdict='validated']")).to_have_text("✓ validated · capitals 0.990")
    expect(page.locator("[data-adapter='alice/capital-minus'] [data-verdict='rejected']")).to_contain_text(
        "opposites 0.400"
    )
    expect(page.locator("[data-adapter='alice/fresh-mix'] [data-verdict='pending']")).to_be_visible()
    expect(page.locator("[data-adapter='alice/capital-lora'] [data-verdict]")).to_have_count(0)
    title = card.locator("[data-verdict]").get_attribute("title")
    assert title is not None and "✓ opposites: exact_match 0.780 (needs ≥ 0.760)" in title
    screenshot(page, "catalog-verdicts")


def test_an_owner_adds_a_member_changes_a_role_and_removes_one(
    page: Any, alice: Any, bob: Any, screenshot: Any
) -> None:
    acme = Namespace.objects.create(name="acme", kind=Namespace.Kind.ORG, display_name="Acme Labs")
    Membership.objects.create(namespace=acme, user=alice, role=Role.OWNER)
    make_adapter(acme, "acme-lora", description="The org's adapter")
    log_in(page, "alice", "pw-alice-123")

    page.goto("/acme/")
    page.fill("#add-member input[name=username]", "bob")
    page.select_option("#add-member select[name=role]", "writer")
    page.click("#add-member button[type=submit]")
    expect(page.locator(".msg-success")).to_contain_text("bob is now writer of acme.")
    row = page.locator("tr[data-member='bob']")
    expect(row.locator("select[name=role]")).to_have_value("writer")

    row.locator("select[name=role]").select_option("owner")  # submits itself
    expect(page.locator(".msg-success")).to_contain_text("bob is now owner of acme.")
    assert Membership.objects.get(namespace=acme, user=bob).role == Role.OWNER
    screenshot(page, "namespace-members")

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("tr[data-member='bob'] .btn-danger").click()
    expect(page.locator(".msg-success")).to_contain_text("bob is no longer a member of acme.")
    expect(page.locator("tr[data-member='bob']")).to_have_count(0)


def test_the_catalog_says_the_demo_data_is_being_built_and_fills_in_by_itself(
    page: Any, alice: Any, settings: Any, tmp_path: Path, screenshot: Any
) -> None:
    from demo import status

    settings.VAR_DIR = tmp_path
    with status.marking_build():
        page.goto("/")
        notice = page.locator("[data-demo-building]")
        expect(notice).to_contain_text("Building demo data…")
        screenshot(page, "catalog-building-demo")
        make_adapter(alice, "capital-lora", description="Knows capitals")
        expect(page.locator("[data-adapter='alice/capital-lora']")).to_be_visible(timeout=15_000)
    expect(notice).to_have_count(0, timeout=15_000)  # the build is over: the notice goes, no reload

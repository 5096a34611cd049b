"""In Chromium: the compose page's "let the hub find the weights", and a search job's page, whose chart
(plotly.js) follows the job's report while it runs and shows the found weights once done. Screenshots
land in the system's temporary folder (adapter-hub-screenshots/)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from registry.models import CompositionJob
from tests.factories import BASE_MODEL_NAME
from tests.hub.web.builders import make_adapter, push_folder
from tests.hub.web.e2e.conftest import log_in
from tests.hub.web.test_compose_search import RUNNING_TRACE, make_suite, search_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture(autouse=True)
def fresh_counts(transactional_db: Any) -> None:
    from registry import facet_counts

    facet_counts.rebuild()


def test_letting_the_hub_find_the_weights_hides_them_and_submits_a_search(
    page: Any, alice: Any, lora_dir: Path, lora_dir_2: Path, screenshot: Any
) -> None:
    push_folder(alice, "alice/sql", lora_dir)
    push_folder(alice, "alice/chat", lora_dir_2)
    make_suite("capital-qa")
    make_suite("whole-suite", fraction=0.0)
    log_in(page, "alice", "pw-alice-123")

    page.goto(f"/compose/?base_model={BASE_MODEL_NAME}&add=alice/sql&add=alice/chat")
    expect(page.locator("#search-options")).to_be_hidden()
    expect(page.locator("input[name=weight]").first).to_be_visible()
    page.get_by_label("Let the hub find the weights (search)").check()
    expect(page.locator("#search-options")).to_be_visible()
    expect(page.locator("input[name=weight]").first).to_be_hidden()
    expect(page.locator("#id_method")).to_be_hidden()
    expect(page.locator("input[name=suites][value=whole-suite]")).to_be_disabled()
    page.locator("input[name=suites][value=capital-qa]").check()
    expect(page.locator("#id_budget")).to_have_value("40")
    page.fill("#id_into_name", "found")
    expect(page.locator("#check-result [data-check=ok]")).to_contain_text("with search")
    screenshot(page, "compose-search")
    page.click("#submit-button")

    page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]+/$"))
    job = CompositionJob.objects.get()
    assert job.recipe["method"] == "search" and job.recipe["parameters"]["suites"] == ["capital-qa"]
    expect(page.locator("#job-search")).to_contain_text("0 / 40 candidates")


def test_the_search_chart_follows_the_job_and_shows_the_found_weights(page: Any, alice: Any, screenshot: Any) -> None:
    make_adapter(alice, "sql")
    make_adapter(alice, "chat")
    job = search_job(
        alice,
        status="running",
        progress=8,
        report={"search": {"done": 3, "budget": 40, "best": RUNNING_TRACE[1], "trace": RUNNING_TRACE}},
    )
    log_in(page, "alice", "pw-alice-123")

    page.goto(f"/jobs/{job.pk}/")
    section = page.locator("#job-search")
    expect(section.locator("[data-chart=job-search].drawn .main-svg").first).to_be_visible()
    expect(section.locator("[data-search-field=best]")).to_have_text("-1.7500")
    expect(section.locator("tbody td.mono").first).to_have_text("alice/sql:1")
    expect(section.locator(".legendtext")).to_have_text(["candidate", "best so far", "uniform merge"])
    expect(section.locator(".g-ytitle")).to_contain_text("−mean NLL per token on the search split")
    screenshot(page, "job-search-running")

    # The worker reports more candidates: the page's poll of the job API picks them up.
    trace = [*RUNNING_TRACE, *({"weights": [1.0 + i / 10, 0.2], "score": -1.7 + i / 20} for i in range(1, 18))]
    job.progress = 40
    job.report = {"search": {"done": len(trace), "budget": 40, "best": trace[-1], "trace": trace}}
    job.save()
    expect(section.locator("[data-search-field=done]")).to_have_text("20")
    expect(section.locator("[data-search-field=best]")).to_have_text("-0.8500")
    expect(section.locator("[data-search-weight='0']")).to_have_text("2.700")
    expect(section.locator(".scatterlayer .trace").first.locator(".point")).to_have_count(20)

    best = {"weights": [1.25, 0.35], "score": -0.6}
    trace = [*trace, *({"weights": [1.2, 0.3], "score": -1.1 + i / 100} for i in range(19)), best]
    job.status, job.progress = "succeeded", 100
    job.report = {"search": {"objective": "loss", "suites": ["capital-qa"], "weights": best["weights"],
                             "score": best["score"], "uniform_score": -2.5, "budget": 40, "trace": trace}}  # fmt: skip
    job.save()
    expect(section.locator("[data-search-field=weights-title]")).to_have_text("Found weights")
    expect(section.locator(".search-progress")).to_contain_text("best score -0.6000")
    expect(section.locator("[data-search-field=done]")).to_have_text("40")
    expect(section.locator("[data-search-weight='0']")).to_have_text("1.250")
    expect(section.locator("[data-search-weight='1']")).to_have_text("0.350")
    expect(page.locator("[data-job-field=status]")).to_have_text("succeeded")
    screenshot(page, "job-search-done")

"""End to end in Chromium: browse and download, upload, compose and follow the job."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest

from registry.models import CompositionJob
from tests.hub.web.builders import make_adapter, make_suite, push_folder, score
from tests.hub.web.e2e.conftest import log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture
def catalog(alice: Any, bob: Any, lora_dir: Path, lora_dir_2: Path) -> None:
    """Two real adapters of alice (downloadable), and a few others to filter out."""
    push_folder(
        alice,
        "alice/sql-lora",
        lora_dir,
        task="text-to-sql",
        tags=["sql", "code"],
        description="Turns questions into SQL",
        license="apache-2.0",
    )
    push_folder(alice, "alice/chat-lora", lora_dir_2, task="chat", tags=["chat"], description="A friendlier assistant")
    make_adapter(
        bob,
        "sql-ia3",
        method="ia3",
        task="text-to-sql",
        tags=["sql"],
        base="hub-test/other",
        downloads=12,
        description="IA3 for SQL",
    )
    make_adapter(
        bob, "poems", method="dora", task="poetry", tags=["poetry"], downloads=40, description="Writes short poems"
    )
    make_adapter(bob, "private-sql", visibility="private", tags=["sql"], description="Never shown to others")


def test_search_filter_open_an_adapter_and_download_a_file_with_its_sha256(
    page: Any, catalog: None, screenshot: Any
) -> None:
    page.goto("/")
    cards = page.locator("#catalog-results [data-adapter]")
    expect(cards).to_have_count(4)
    screenshot(page, "catalog")

    page.fill("#catalog-form input[name=q]", "sql")  # results follow the box as one types
    expect(cards).to_have_count(2)
    expect(page.locator('[data-adapter="bob/private-sql"]')).to_have_count(0)
    page.click('[data-facet=method] a[data-value="lora"]')
    page.wait_for_url(re.compile(r"method=lora"))
    expect(cards).to_have_count(1)
    expect(page.locator(".chip").first).to_contain_text("Method: LoRA")
    screenshot(page, "catalog-filtered")

    page.click('[data-adapter="alice/sql-lora"] .card-title')
    page.wait_for_url("**/alice/sql-lora/")
    expect(page.locator("h1.adapter-name")).to_contain_text("sql-lora")
    expect(page.locator(".markdown h1")).to_have_text("A test adapter")
    expect(page.locator("#details")).to_contain_text("q_proj")
    page.click('button[data-copy-target="#snippet-cli"]')
    assert page.evaluate("navigator.clipboard.readText()") == "ahub pull alice/sql-lora:1"
    screenshot(page, "adapter")

    page.click(".adapter-tabs a[data-tab=files]")  # files live in the "Files and versions" tab
    page.wait_for_url("**/alice/sql-lora/files/")
    row = page.locator('tr[data-file="adapter_model.safetensors"]')
    shown_sha = row.locator("[data-sha256]").get_attribute("data-sha256")
    with page.expect_download() as info:
        row.locator("a[data-download]").click()
    download = info.value
    assert download.suggested_filename == "adapter_model.safetensors"
    assert hashlib.sha256(Path(download.path()).read_bytes()).hexdigest() == shown_sha

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/?q=lora")
    expect(page.locator("#catalog-results [data-adapter]")).to_have_count(2)
    screenshot(page, "catalog-mobile")


def test_sign_in_upload_an_adapter_and_find_it_in_the_catalog(
    page: Any, alice: Any, lora_dir: Path, screenshot: Any
) -> None:
    log_in(page, "alice", "pw-alice-123")
    expect(page.locator(".usermenu .username")).to_have_text("alice")

    page.click("nav.mainnav >> text=Upload")
    page.wait_for_url("**/upload/")
    page.set_input_files("#id_files", [str(lora_dir / "adapter_model.safetensors")])
    page.fill("#id_name", "browser-upload")
    page.click("button:has-text('Publish version')")
    expect(page.locator(".form-errors")).to_contain_text("adapter_config.json is missing")  # the server's own message

    page.set_input_files("#id_files", sorted(str(p) for p in lora_dir.iterdir() if p.is_file()))
    expect(page.locator("[data-picked] li")).to_have_count(3)
    page.fill("#id_name", "browser-upload")
    page.locator("details.more").evaluate("details => { details.open = true }")
    page.fill("#id_task", "summarization")
    page.fill("#id_tags", "browser, e2e")
    page.fill("#id_description", "Uploaded from Chromium")
    page.fill("#id_label", "v1.0")
    screenshot(page, "upload")
    page.click("button:has-text('Publish version')")

    page.wait_for_url("**/alice/browser-upload/?version=1")
    expect(page.locator(".msg-success")).to_contain_text("Published alice/browser-upload version 1.")
    expect(page.locator(".badge-version")).to_contain_text("v1 · v1.0")

    page.goto("/")
    page.fill("#catalog-form input[name=q]", "browser")
    card = page.locator('#catalog-results [data-adapter="alice/browser-upload"]')
    expect(card).to_be_visible()
    expect(card).to_contain_text("Uploaded from Chromium")
    page.click('[data-facet=tag] a[data-value="e2e"]')
    expect(page.locator('[data-adapter="alice/browser-upload"]')).to_be_visible()

    page.goto("/settings/tokens/")
    page.fill("#id_name", "ci")
    page.select_option("#id_scope", "write")
    page.click("button:has-text('Create token')")
    secret = page.locator("#token-secret").inner_text()
    assert secret.startswith("ahub_")
    screenshot(page, "tokens")
    page.reload()
    expect(page.locator("#token-secret")).to_have_count(0)  # shown once


def test_compose_two_adapters_follow_the_job_and_see_lineage_and_scores(
    page: Any, alice: Any, bob: Any, lora_dir: Path, lora_dir_2: Path, inline_worker: Any, screenshot: Any
) -> None:
    sql = push_folder(alice, "alice/sql", lora_dir, task="text-to-sql", description="SQL").version
    chat = push_folder(alice, "alice/chat", lora_dir_2, task="chat", description="Chat").version
    make_adapter(bob, "other-base", base="hub-test/other")
    capitals, ppl = make_suite(name="capitals"), make_suite(name="wiki-ppl", higher_is_better=False)
    for version, (a, b) in ((sql, (0.82, 9.4)), (chat, (0.35, 7.9))):
        score(version, capitals, a)
        score(version, ppl, b)

    log_in(page, "alice", "pw-alice-123")
    page.goto("/compose/")

    def add(query: str, reference: str) -> None:
        page.fill("#adapter-search", query)
        page.click(f'[data-add-adapter="{reference}"]')

    add("sql", "alice/sql")
    add("other", "bob/other-base")
    page.click("#check-button")
    expect(page.locator("[data-check=problems]")).to_contain_text("different base models")

    page.locator(".input-row").nth(1).locator(".remove-row").click()
    add("chat", "alice/chat")
    page.locator("input[name=weight]").nth(0).fill("0.7")
    page.locator("input[name=weight]").nth(1).fill("-0.3")
    page.select_option("#id_method", "linear")
    page.fill("#id_rank", "4")
    page.fill("#id_into_name", "sql-minus-chat")
    page.fill("#id_description", "SQL, with less chat")
    page.click("#check-button")
    expect(page.locator("[data-check=ok]")).to_contain_text("into alice/sql-minus-chat")
    screenshot(page, "compose")

    page.click("#submit-button")
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}/$"))
    screenshot(page, "job-queued")
    result = page.locator("#result-link")
    expect(result).to_be_visible(timeout=90_000)  # the page follows the job through the API
    expect(page.locator("[data-job-field=status]")).to_have_text("succeeded")
    page.wait_for_timeout(500)  # the progress bar eases to 100%
    screenshot(page, "job-done")

    # The lead's eval worker would score the result; here the test records its scores.
    composed = CompositionJob.objects.get().result_version
    assert composed is not None
    score(composed, capitals, 0.78)
    score(composed, ppl, 8.1)

    result.click()
    page.wait_for_url("**/alice/sql-minus-chat/?version=1")
    expect(page.locator(".tags")).to_contain_text("#composed")
    page.click(".adapter-tabs a[data-tab=evaluation]")
    page.wait_for_url("**/alice/sql-minus-chat/evaluation/?version=1")
    expect(page.locator('#evaluation tr[data-suite="capitals"]')).to_contain_text("0.7800")
    expect(page.locator("#history .chart-box")).to_have_count(0)  # one version: its table, no one-dot charts
    page.click(".adapter-tabs a[data-tab=lineage]")
    page.wait_for_url("**/alice/sql-minus-chat/lineage/?version=1")
    lineage = page.locator("#lineage svg.lineage")
    expect(lineage).to_contain_text("alice/sql:1")
    expect(lineage).to_contain_text("alice/chat:1")
    expect(page.locator("#lineage .edge-negated")).to_contain_text("-0.3")
    expect(page.locator("#lineage .edge-input")).to_contain_text("+0.7")
    screenshot(page, "composed-adapter")

    page.click("#lineage a:has-text('alice/sql:1')")  # walks the graph, staying on the lineage tab
    page.wait_for_url("**/alice/sql/lineage/?version=1")
    expect(page.locator("#lineage svg.lineage")).to_contain_text("alice/sql-minus-chat:1")

    page.goto("/models/hub-test/tiny-llama/")
    board = page.locator('.board[data-suite="capitals"] tbody tr')
    expect(board).to_have_count(3)
    expect(board.first).to_contain_text("alice/sql")
    screenshot(page, "base-model")

"""End to end in Chromium: the adapter page's tabs, its plotly.js charts (served by the hub itself)
and lineage graph, and an owner yanking, restoring, editing, hiding and evaluating from the page.

Screenshots land in var/screenshots/ (adapter-tab-*.png, adapter-owner-*.png)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from hub.web import views
from registry.models import Adapter, EvaluationRequest, LineageRole, VersionParent
from tests.hub.web.builders import add_version, make_adapter, make_suite, score
from tests.hub.web.e2e.conftest import log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LONG_CARD = "# SQL adapter\n\n" + "\n\n".join(f"## Section {i}\n\n" + "Some prose. " * 40 for i in range(12))


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def boxes_overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


@pytest.fixture
def scored(alice: Any, monkeypatch: pytest.MonkeyPatch) -> Adapter:
    """alice/sql: three versions scored on two suites (one with the base model's baseline), a long
    model card, and a composed child with two parents, one negated."""
    adapter = make_adapter(
        alice,
        "sql",
        versions=3,
        card=LONG_CARD,
        task="text-to-sql",
        tags=["sql", "code", "assistant"],
        description="Turns questions into SQL. " * 6,
    )
    capitals, wiki = make_suite(name="capitals-qa"), make_suite(name="wiki-perplexity", higher_is_better=False)
    for version, (a, b) in zip(
        adapter.versions.order_by("number"), [(0.52, 12.4), (0.71, 9.6), (0.8, 9.1)], strict=True
    ):
        score(version, capitals, a)
        score(version, wiki, b)
    monkeypatch.setattr(views, "baseline_scores_of", lambda base: {"capitals-qa": {"exact_match": 0.31}})

    chat = make_adapter(alice, "chat")
    hybrid = make_adapter(alice, "sql-minus-chat", versions=0)
    child = add_version(hybrid)
    for position, (parent, weight) in enumerate([(adapter.versions.get(number=3), 0.7), (chat.versions.get(), -0.3)]):
        VersionParent.objects.create(
            child=child,
            parent=parent,
            weight=weight,
            position=position,
            role=LineageRole.NEGATED if weight < 0 else LineageRole.INPUT,
        )
    return adapter


def test_the_tabs_the_charts_from_the_hubs_plotly_and_the_lineage_graph(
    page: Any, live_server: Any, scored: Adapter, screenshot: Any
) -> None:
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url))

    page.goto("/alice/sql/")
    tabs = page.locator("nav.adapter-tabs")
    expect(tabs.locator("a")).to_have_text(["Model card", "Files and versions", "Evaluation", "Lineage"])
    box = tabs.bounding_box()
    assert box is not None and box["y"] + box["height"] < 900 * 0.6, "the tabs sit high above the fold"
    expect(page.locator(".markdown h1")).to_have_text("SQL adapter")
    expect(page.locator("#files")).to_have_count(0)
    assert page.evaluate("typeof window.Plotly") == "undefined"  # plotly.js only where charts are drawn
    screenshot(page, "adapter-tab-card")

    page.click(".adapter-tabs a[data-tab=evaluation]")
    page.wait_for_url("**/alice/sql/evaluation/")
    expect(page.locator(".adapter-tabs a.current")).to_have_text("Evaluation")
    charts = page.locator(".chart-plot.drawn")
    expect(charts).to_have_count(2)
    expect(charts.locator(".main-svg").first).to_be_visible()
    plotly = [url for url in fetched if url.endswith("plotly.min.js")]
    assert plotly == [f"{live_server.url}/static/vendor/plotly/plotly.min.js"]
    assert all(url.startswith(live_server.url) for url in fetched), "nothing is fetched from elsewhere"
    expect(page.locator('tr.baseline[data-baseline-suite="capitals-qa"]')).to_contain_text("0.3100")

    for index in range(2):
        chart = charts.nth(index)
        title = chart.locator(".gtitle").bounding_box()
        plot = chart.locator(".draglayer .nsewdrag").bounding_box()  # the plotting area
        assert title is not None and plot is not None
        assert title["y"] + title["height"] <= plot["y"], "the title sits above the plot"
        legend = chart.locator(".legend")
        if legend.count():
            legend_box = legend.bounding_box()
            assert legend_box is not None and not boxes_overlap(title, legend_box), "title and legend overlap"
            assert legend_box["y"] >= plot["y"] + plot["height"], "the legend sits below the plot"
    expect(page.locator('[data-chart="chart-1"] .legend')).to_contain_text("base model (baseline)")
    expect(page.locator('[data-chart="chart-2"] .legend')).to_have_count(0)  # one line: no legend
    screenshot(page, "adapter-tab-evaluation")

    page.click(".adapter-tabs a[data-tab=files]")
    page.wait_for_url("**/alice/sql/files/")
    expect(page.locator("#versions tr[data-version]")).to_have_count(3)
    screenshot(page, "adapter-tab-files")

    page.goto("/alice/sql-minus-chat/lineage/")
    graph = page.locator("#lineage svg.lineage")
    expect(graph).to_contain_text("alice/sql:3")
    expect(graph).to_contain_text("alice/chat:1")
    nodes = [graph.locator(".node").nth(i).bounding_box() for i in range(graph.locator(".node").count())]
    assert len(nodes) == 3
    for i, a in enumerate(nodes):
        for b in nodes[i + 1 :]:
            assert a is not None and b is not None and not boxes_overlap(a, b), "lineage nodes overlap"
    screenshot(page, "adapter-tab-lineage")
    graph.locator("a.node-parent").first.click()
    page.wait_for_url("**/alice/sql/lineage/?version=3")
    expect(page.locator("#lineage svg.lineage")).to_contain_text("alice/sql-minus-chat:1")

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/alice/sql/evaluation/")
    expect(page.locator(".chart-plot.drawn")).to_have_count(2)
    screenshot(page, "adapter-tab-evaluation-mobile")


def test_an_owner_yanks_restores_edits_hides_and_evaluates_from_the_page(
    page: Any, alice: Any, scored: Adapter, screenshot: Any
) -> None:
    page.goto("/alice/sql/files/")
    expect(page.locator("[data-owner-action]")).to_have_count(0)  # visitors see no controls
    log_in(page, "alice", "pw-alice-123")

    page.goto("/alice/sql/files/")
    row = page.locator('#versions tr[data-version="3"]')
    row.locator("details.yank summary").click()
    row.locator("input[name=reason]").fill("trained on the test set")
    screenshot(page, "adapter-owner-yank-form")
    row.locator("button:has-text('Yank v3')").click()
    page.wait_for_url("**/alice/sql/files/?version=3")
    expect(page.locator(".msg-success")).to_contain_text("Yanked version 3: trained on the test set")
    expect(page.locator('#versions tr[data-version="3"] .badge-bad')).to_have_text("yanked")
    screenshot(page, "adapter-owner-yanked")
    page.locator('#versions tr[data-version="3"] button:has-text("Restore")').click()
    expect(page.locator(".msg-success")).to_contain_text("Restored version 3.")
    expect(page.locator('#versions tr[data-version="3"] .badge-bad')).to_have_count(0)

    page.click(".adapter-tabs a[data-tab=settings]")
    page.wait_for_url("**/alice/sql/settings/")
    page.fill("#id_description", "Questions in, SQL out")
    page.fill("#id_tags", "sql, postgres")
    page.fill("#id_license", "mit")
    page.click("button:has-text('Save metadata')")
    expect(page.locator(".msg-success")).to_have_text("Saved the metadata of alice/sql.")
    expect(page.locator(".adapter-head .lead")).to_have_text("Questions in, SQL out")
    expect(page.locator(".adapter-head .tags")).to_contain_text("#postgres")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Make private')")
    expect(page.locator(".msg-success")).to_contain_text("alice/sql is now private")
    expect(page.locator(".adapter-head .badge-private")).to_have_text("private")
    screenshot(page, "adapter-owner-settings")

    page.click(".adapter-tabs a[data-tab=evaluation]")
    page.select_option("#id_suite", "wiki-perplexity")
    page.check("#id_force")
    page.click("button:has-text('Request evaluation')")
    page.wait_for_url(re.compile(r"/alice/sql/evaluation/\?version=3$"))
    expect(page.locator(".msg-info")).to_contain_text("Queued an evaluation of version 3 on wiki-perplexity")
    expect(page.locator('[data-request-suite="wiki-perplexity"] .status')).to_have_text("queued")
    screenshot(page, "adapter-owner-evaluation")

    adapter = Adapter.objects.get(pk=scored.pk)
    assert adapter.visibility == "private" and adapter.license == "mit"
    assert EvaluationRequest.objects.get().suite.name == "wiki-perplexity"

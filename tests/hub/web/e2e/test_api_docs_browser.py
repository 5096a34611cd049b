"""The API docs pages in a real browser: Swagger UI and ReDoc render the schema from the hub alone
(no CDN, no web fonts: offline machines get working docs), and Swagger's Authorize takes a token."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import pytest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.mark.parametrize(("path", "rendered"), [("/api/docs/", ".opblock"), ("/api/redoc/", "[data-section-id]")])
def test_the_docs_render_loading_nothing_from_outside_the_hub(
    page: Any, live_server: Any, screenshot: Any, path: str, rendered: str
) -> None:
    hub = urlparse(live_server.url).netloc
    requested: list[str] = []
    blocked: list[str] = []
    refused: dict[str, str] = {}
    page.on("request", lambda request: requested.append(request.url))
    page.on("requestfailed", lambda request: refused.setdefault(request.url, request.failure or ""))
    page.on(
        "console", lambda message: blocked.append(message.text) if "Content Security Policy" in message.text else None
    )

    page.goto(path)
    page.wait_for_selector(rendered)
    page.wait_for_load_state("networkidle")
    screenshot(page, f"api-docs-{path.strip('/').replace('/', '-')}")

    # A request the page's policy refuses never leaves the browser (Chromium still reports it, as failed).
    outside = [
        url
        for url in requested
        if urlparse(url).scheme in ("http", "https")
        and urlparse(url).netloc != hub
        and refused.get(url) not in ("csp", "net::ERR_BLOCKED_BY_CSP")
    ]
    assert requested and not outside, (outside, refused)
    assert page.locator(rendered).count() > 5  # the operations, drawn from /api/schema/
    # Nothing the page needs was refused by its same-origin policy (only ReDoc's hidden CDN logo may be).
    assert all("redoc.ly" in line or "redocly" in line for line in blocked), blocked


def test_swaggers_authorize_offers_the_bearer_token(page: Any) -> None:
    page.goto("/api/docs/")
    page.click("button.authorize")
    dialog = page.locator(".modal-ux")
    assert dialog.locator("text=bearerAuth").count() == 1
    assert dialog.locator("text=http, Bearer").count() == 1

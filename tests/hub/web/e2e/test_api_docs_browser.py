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
    page.on("request", lambda request: requested.append(request.url))

    page.goto(path)
    page.wait_for_selector(rendered)
    page.wait_for_load_state("networkidle")
    screenshot(page, f"api-docs-{path.strip('/').replace('/', '-')}")

    outside = [url for url in requested if urlparse(url).scheme in ("http", "https") and urlparse(url).netloc != hub]
    assert requested and not outside, outside
    assert page.locator(rendered).count() > 5  # the operations, drawn from /api/schema/


def test_swaggers_authorize_offers_the_bearer_token(page: Any) -> None:
    page.goto("/api/docs/")
    page.click("button.authorize")
    dialog = page.locator(".modal-ux")
    assert dialog.locator("text=bearerAuth").count() == 1
    assert dialog.locator("text=http, Bearer").count() == 1

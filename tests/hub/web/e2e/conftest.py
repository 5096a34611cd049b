"""Playwright (sync API) driving Debian's Chromium against pytest-django's live server.

`make browser` (.ci/browser.sh) installs /usr/bin/chromium; Playwright's own browser download is
never used, so the tests run offline. Screenshots of the main pages land in var/screenshots/.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
SCREENSHOTS = Path(__file__).resolve().parents[4] / "var" / "screenshots"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for this module's tests, closed after them so no other test runs beside
    Playwright's event loop."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: run `make browser` (installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API runs an event loop in this thread; Django would then refuse the test's
    # own (synchronous, legitimate) database calls as if they came from async code.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_api.sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser: Any, live_server: Any) -> Iterator[Any]:
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1280, "height": 900}, accept_downloads=True
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    context.set_default_timeout(20_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


@pytest.fixture
def screenshot() -> Callable[[Any, str], Path]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(tab: Any, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        tab.evaluate("window.scrollTo(0, 0)")  # the sticky header would otherwise land mid-page
        tab.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture(autouse=True)
def no_celery(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """No broker in end-to-end tests: live-server tests commit for real, so every on_commit
    enqueue would otherwise reach the configured broker (e.g. the eval gate's GPU tasks).
    Tasks are recorded instead; `inline_worker` runs compositions."""
    from celery.app.task import Task

    sent: list[tuple[str, Any]] = []

    def record(self: Any, args: Any = None, kwargs: Any = None, **options: Any) -> None:
        sent.append((self.name, args))

    monkeypatch.setattr(Task, "apply_async", record)
    return sent


@pytest.fixture
def inline_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[threading.Thread]]:
    """Runs each submitted composition job in a thread of this process, as a Celery worker would.

    `submit_composition` sends its job through `registry.enqueue.publish` once its transaction
    commits (in the live server's thread); the job then runs for real (composer, storage, push).
    A short pause first lets the browser see the job queued before it finishes.
    """
    from django.db import connection

    from registry import compositions, enqueue

    threads: list[threading.Thread] = []

    def work(job_id: str) -> None:
        try:
            threading.Event().wait(1.5)
            compositions.run_composition(job_id, worker="e2e-inline-worker")
        finally:
            connection.close()

    def publish(task_name: str, job_id: str) -> None:
        if task_name != enqueue.TASK_NAMES[compositions.CompositionJob]:
            return
        thread = threading.Thread(target=work, args=(job_id,), daemon=True)
        threads.append(thread)
        thread.start()

    monkeypatch.setattr(enqueue, "publish", publish)
    yield threads
    for thread in threads:
        thread.join(timeout=60)


def log_in(tab: Any, username: str, password: str) -> None:
    tab.goto("/accounts/login/")
    tab.fill("#id_username", username)
    tab.fill("#id_password", password)
    tab.click("button[type=submit]")
    tab.wait_for_url("**/")

"""/docs and /redoc in real headless Chromium (Debian's, driven by Playwright) with every request
that leaves the app refused: both render (Swagger UI with its Authorize button for the bearer key),
and neither asked for anything (a script, stylesheet, font or image) from outside."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Route, expect, sync_playwright

from qfleet_server.stack import Stack

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        yield b
        b.close()


@pytest.mark.parametrize("page_path", ["/docs", "/redoc"])
def test_docs_render_offline(browser: Browser, stack: Stack, page_path: str) -> None:
    page = browser.new_page()
    outside: list[str] = []

    def only_the_app(route: Route) -> None:
        if route.request.url.startswith(stack.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_app)
    page.goto(f"{stack.url}{page_path}")
    if page_path == "/docs":
        expect(page.get_by_role("button", name="Authorize")).to_be_visible(timeout=20_000)
        expect(page.get_by_text("/v1/jobs/{job_id}/result").first).to_be_visible()
    else:
        expect(page.get_by_role("heading", name="Submit a job")).to_be_visible(timeout=20_000)
    assert outside == []
    page.close()

"""The admin dashboard in real headless Chromium (Debian's, driven by Playwright; no browser
download). Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from qfleet import Client
from redis import Redis

from bench.workloads import training_ansatz, z_observables
from service.stack import Stack
from service.store import Store

pytestmark = pytest.mark.e2e
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def logged_in(browser: Browser, stack: Stack, key: str | None = None) -> Page:
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.goto(f"{stack.url}/admin")
    page.fill("input[name=key]", key or stack.api_key)
    page.click("button[type=submit]")
    return page


def big_job(client: Client, rows: int = 3000) -> object:
    circuit = training_ansatz(16)
    return client.estimate(
        [(circuit, z_observables(16), np.random.default_rng().uniform(0, 1, (rows, circuit.num_parameters)))]
    )


def test_overview_shows_a_running_job_advance(browser: Browser, stack: Stack, client: Client) -> None:
    job = big_job(client)
    page = logged_in(browser, stack)
    row = page.locator(f"tr[data-job='{job.id}'] .progress")  # type: ignore[attr-defined]
    expect(row).to_be_visible(timeout=10_000)
    first = int(row.inner_text().split("/")[0])
    page.screenshot(path=str(SHOTS / "overview-running.png"), full_page=True)
    # the page refreshes its live part itself: no reload here
    expect(row).not_to_have_text(re.compile(rf"^{first}/"), timeout=20_000)
    assert int(row.inner_text().split("/")[0]) > first
    page.screenshot(path=str(SHOTS / "overview-advanced.png"), full_page=True)
    job.cancel()  # type: ignore[attr-defined]
    page.close()


def test_cancel_a_job_from_the_ui(browser: Browser, stack: Stack, client: Client) -> None:
    job = big_job(client, rows=6000)
    page = logged_in(browser, stack)
    page.goto(f"{stack.url}/admin/jobs/{job.id}")  # type: ignore[attr-defined]
    page.on("dialog", lambda dialog: dialog.accept())  # the confirmation
    page.click("#cancel")
    expect(page.locator("#status")).to_have_text("cancelled", timeout=10_000)
    page.screenshot(path=str(SHOTS / "job-cancelled.png"), full_page=True)
    assert job.status().status == "cancelled"  # type: ignore[attr-defined]  # seen through the API
    actions = Store(Redis.from_url(stack.redis_url or "")).audit_log(5)
    assert any(a["action"] == "cancel job" and a["target"] == job.id for a in actions)  # type: ignore[attr-defined]
    page.close()


def test_other_pages_render(browser: Browser, stack: Stack, client: Client) -> None:
    page = logged_in(browser, stack)
    for path, text in [("/admin/jobs", "Jobs"), ("/admin/tenants", "dev"), ("/admin/backends", "Audit log")]:
        page.goto(f"{stack.url}{path}")
        expect(page.locator("main")).to_contain_text(text)
        page.screenshot(path=str(SHOTS / f"{path.strip('/').replace('/', '-')}.png"), full_page=True)
    page.goto(f"{stack.url}/admin/backends")
    chip = page.locator("svg#chip")
    expect(chip.locator("circle.qubit")).to_have_count(72)
    expect(chip.locator("line.coupler")).to_have_count(126)
    assert "error" in (chip.locator("circle.qubit").first.locator("title").text_content() or "")
    page.goto(f"{stack.url}/admin/jobs?status=cancelled")
    expect(page.locator("#jobs")).to_contain_text("cancelled")
    page.close()


def test_non_admins_are_refused(browser: Browser, stack: Stack) -> None:
    store = Store(Redis.from_url(stack.redis_url or ""))
    store.add_api_key("qf_user_key_for_browser_test_000", tenant="someone", role="user")
    page = browser.new_page()
    page.goto(f"{stack.url}/admin/jobs")
    expect(page).to_have_url(re.compile(r"/admin/login$"))  # no key: sent to log in
    page.fill("input[name=key]", "qf_user_key_for_browser_test_000")
    page.click("button[type=submit]")
    expect(page.locator("#error")).to_contain_text("not an admin")
    page.context.add_cookies([{"name": "qfleet_key", "value": "qf_user_key_for_browser_test_000", "url": stack.url}])
    response = page.goto(f"{stack.url}/admin")
    assert response is not None and response.status == 403
    page.screenshot(path=str(SHOTS / "refused.png"))
    page.close()

"""The admin dashboard in real headless Chromium (Debian's, driven by Playwright; no browser
download): what it shows, and that it resists XSS, CSRF from another origin (another port of
the same host is the same *site*, so SameSite alone would not stop it), open redirects and
framing. Screenshots go to artifacts/screenshots/ (or $QFLEET_SCREENSHOTS; docs/screenshots/
holds the ones the README shows)."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from qfleet import Client
from redis import Redis

from qfleet_server.bench.workloads import training_ansatz, z_observables
from qfleet_server.stack import Stack, free_port
from qfleet_server.store import Store

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("QFLEET_SCREENSHOTS") or ROOT / "artifacts" / "screenshots")
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
XSS = "<img src=x onerror=\"window.__xss=1;alert('xss')\">"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def store(stack: Stack) -> Store:
    return Store(Redis.from_url(stack.redis_url or ""))


def logged_in(browser: Browser, stack: Stack, key: str | None = None) -> Page:
    page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
    page.dialogs = dialogs  # type: ignore[attr-defined]
    page.goto(f"{stack.url}/admin")
    page.fill("input[name=key]", key or stack.api_key)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Overview")
    return page


def csrf_token(page: Page) -> str:
    return re.search(r'"X-CSRF-Token": "([^"]+)"', page.locator("body").get_attribute("hx-headers") or "").group(1)  # type: ignore[union-attr]


def big_job(client: Client, rows: int = 3000) -> object:
    circuit = training_ansatz(16)
    return client.estimate(
        [(circuit, z_observables(16), np.random.default_rng().uniform(0, 1, (rows, circuit.num_parameters)))]
    )


def failing_job(client: Client, store: Store) -> str:
    """A job whose task really fails in its worker: its payload is deleted while the backend is
    paused, so the worker raises, RQ retries, and the failure callback fails the job."""
    store.set_paused("lightning", True)
    try:
        circuit = training_ansatz(4)
        job = client.estimate([(circuit, "ZIII", np.zeros((2, circuit.num_parameters)))], backend="lightning")
        store.redis.delete(store.keys.job_data(job.id))
    finally:
        store.set_paused("lightning", False)
    deadline = time.monotonic() + 60
    while job.status().status != "failed":
        assert time.monotonic() < deadline, "the job did not fail"
        time.sleep(0.2)
    return job.id


class EvilSite:
    """A page on another port of the same host (same site, other origin) that acts on the
    dashboard through the admin's browser."""

    def __init__(self, html: str) -> None:
        body = html.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_a_failure_is_shown_with_its_whole_traceback(
    browser: Browser, stack: Stack, client: Client, store: Store
) -> None:
    job_id = failing_job(client, store)
    page = logged_in(browser, stack)
    expect(page.locator("#failure-summary")).to_contain_text("lightning")
    expect(page.locator("#latest-failures")).to_contain_text(job_id)
    page.goto(f"{stack.url}/admin/jobs/{job_id}")
    expect(page.locator("#job-error")).to_contain_text("LookupError")
    trace = page.locator("pre.traceback").first
    expect(trace).to_contain_text("Traceback (most recent call last)")
    expect(trace).to_contain_text("worker/runner.py")  # the frames that matter, not only RQ's
    expect(trace).to_contain_text(f"payload of job {job_id} pub 0 is gone")
    assert trace.evaluate("e => e.scrollHeight <= e.clientHeight + 1")  # not cut off
    # payload gone: a re-queue would fail again, so none is offered
    expect(page.locator("#requeue")).to_have_count(0)
    expect(page.locator("#no-requeue")).to_be_visible()
    page.screenshot(path=str(SHOTS / "job-failed.png"), full_page=True)
    page.goto(f"{stack.url}/admin/failures")
    expect(page.locator(f"details.failure[data-job='{job_id}'] pre.traceback")).to_contain_text("LookupError")
    expect(page.locator("[data-chart='tasks failed on lightning'] rect.bar")).to_have_count(24)  # over time
    page.screenshot(path=str(SHOTS / "failures.png"), full_page=True)
    page.close()


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
    expect(page.locator("[data-chart='tasks done'] svg text").first).to_be_visible()  # axes are labelled
    page.screenshot(path=str(SHOTS / "overview.png"), full_page=True)
    job.cancel()  # type: ignore[attr-defined]
    page.close()


def test_cancel_a_job_from_the_ui(browser: Browser, stack: Stack, client: Client, store: Store) -> None:
    job = big_job(client, rows=6000)
    page = logged_in(browser, stack)
    page.goto(f"{stack.url}/admin/jobs/{job.id}")  # type: ignore[attr-defined]
    page.click("#cancel")  # the confirmation is accepted by logged_in's dialog handler
    expect(page.locator("#status")).to_have_text("cancelled", timeout=10_000)
    assert page.dialogs == [f"Cancel job {job.id}?"]  # type: ignore[attr-defined]
    page.screenshot(path=str(SHOTS / "job-cancelled.png"), full_page=True)
    assert job.status().status == "cancelled"  # type: ignore[attr-defined]  # seen through the API
    actions = store.audit_log(5)
    assert any(a["action"] == "cancel job" and a["target"] == job.id for a in actions)  # type: ignore[attr-defined]
    page.close()


def test_other_pages_render(browser: Browser, stack: Stack, client: Client) -> None:
    bearer = {"Authorization": f"Bearer {stack.api_key}"}
    made = httpx.post(f"{stack.url}/v1/admin/keys", json={"tenant": "carol"}, headers=bearer).json()
    httpx.put(f"{stack.url}/v1/admin/tenants/carol/limits", json={"max_shots": 5000}, headers=bearer)
    page = logged_in(browser, stack)
    page.goto(f"{stack.url}/admin/audit")
    rest = page.locator("#audit tr", has_text=made["prefix"])
    expect(rest).to_contain_text("create key")  # a REST action, shown on the dashboard
    expect(rest).to_contain_text("rest")
    limits = page.locator("#audit tr", has_text="set limits").filter(has_text="carol")
    expect(limits).to_contain_text("max_shots 1000000 → 5000")
    for path, text in [
        ("/admin/jobs", "Jobs"),
        ("/admin/tenants", "dev"),
        ("/admin/backends", "wukong72"),
        ("/admin/audit", "log in"),
        ("/admin/failures", "Failures"),
    ]:
        page.goto(f"{stack.url}{path}")
        expect(page.locator("main")).to_contain_text(text)
        page.screenshot(path=str(SHOTS / f"{path.strip('/').replace('/', '-')}.png"), full_page=True)
    page.goto(f"{stack.url}/admin/backends")
    chip = page.locator("svg#chip")
    expect(chip.locator("circle.qubit")).to_have_count(72)
    expect(chip.locator("line.coupler")).to_have_count(126)
    assert "readout error" in (chip.locator("circle.qubit").first.locator("title").text_content() or "")
    expect(page.locator("svg.legend")).to_have_count(2)  # a legend with values for each colour scale
    expect(page.locator("svg.legend").first).to_contain_text("readout error")
    page.goto(f"{stack.url}/admin/jobs?status=cancelled")
    expect(page.locator("select[name=status] option[selected]")).to_have_text("cancelled")
    assert set(page.locator("#jobs .pill").all_inner_texts()) <= {"cancelled"}
    page.close()


def test_status_is_the_same_on_every_page_and_in_the_api(browser: Browser, stack: Stack, client: Client) -> None:
    page = logged_in(browser, stack)

    def everywhere() -> dict[str, tuple[str, str, str]]:
        page.goto(f"{stack.url}/admin")
        overview = {
            name: page.locator(f"#backends tr[data-backend='{name}'] .pill").inner_text()
            for name in ("aer", "lightning", "wukong72", "origin", "ibm")
        }
        page.goto(f"{stack.url}/admin/backends")
        backends = {name: page.locator(f"section#{name} .backend-head .pill").inner_text() for name in overview}
        api = {b.name: b.status for b in client.backends()}  # type: ignore[attr-defined]
        return {name: (overview[name], backends[name], api[name]) for name in overview}

    seen = everywhere()
    for name, (a, b, c) in seen.items():
        assert a == b == c, (name, seen)
    assert seen["origin"][0] == "unavailable" and seen["aer"][0] == "online"
    expect(page.locator("section#origin .reason")).to_contain_text("QFLEET_ORIGIN_API_KEY")
    page.click("section#lightning button:has-text('Pause')")
    expect(page.locator("section#lightning .backend-head .pill")).to_have_text("paused")
    try:
        assert everywhere()["lightning"] == ("paused", "paused", "paused")
    finally:
        page.click("section#lightning button:has-text('Resume')")
        expect(page.locator("section#lightning .backend-head .pill")).to_have_text("online")
    page.close()


def test_nothing_a_user_controls_runs_as_script(browser: Browser, stack: Stack, store: Store) -> None:
    store.add_api_key("qf_xss_tenant_key_0000000000000", tenant=XSS, role="user")  # the CLI takes any name
    page = logged_in(browser, stack)
    for url in [
        f"{stack.url}/admin/jobs/{XSS}",
        f"{stack.url}/admin/jobs/%3Cscript%3Ewindow.__xss%3D1%3C%2Fscript%3E",
        f"{stack.url}/admin/{XSS}",
        f"{stack.url}/admin/tenants",
        f"{stack.url}/admin/jobs?tenant={XSS}&backend=%22%3E%3Cscript%3Ewindow.__xss%3D1%3C/script%3E",
    ]:
        page.goto(url)
        expect(page.locator("main")).to_be_visible()
        assert page.evaluate("window.__xss") is None, url
        assert page.locator("main img, main script").count() == 0, url
    page.goto(f"{stack.url}/admin/jobs/{XSS}")
    expect(page.locator("#error-message")).to_contain_text(XSS)  # shown as text, in a styled page
    expect(page.locator("header")).to_contain_text("Overview")
    page.screenshot(path=str(SHOTS / "job-404.png"), full_page=True)
    assert page.dialogs == []  # type: ignore[attr-defined]
    page.close()
    store.revoke_api_key("qf_xss_ten")


def test_another_origin_cannot_act_through_the_admins_browser(browser: Browser, stack: Stack, store: Store) -> None:
    page = logged_in(browser, stack)
    evil = EvilSite(
        f"""<!doctype html><form id="f" method="post" action="{stack.url}/admin/backends/aer/pause"></form>
        <script>
        fetch("{stack.url}/admin/backends/wukong72/pause", {{method: "POST", credentials: "include", mode: "no-cors"}});
        document.getElementById("f").submit();
        </script>"""
    )
    try:
        page.goto(evil.url)
        page.wait_for_url(re.compile(r"/admin"), timeout=10_000)  # where the form's POST landed
        time.sleep(0.5)  # and the fetch
        assert store.paused() == set(), "a page on another port paused a backend"
        expect(page).to_have_url(re.compile(r"/admin/backends/aer/pause$"))
        expect(page.locator("#error-page")).to_contain_text("not sent from the dashboard")
    finally:
        evil.close()
        for name in ("aer", "wukong72"):
            store.set_paused(name, False)
    # a stolen token alone does not do either: the origin must be this site's
    page.goto(f"{stack.url}/admin")
    token = csrf_token(page)
    refused = page.request.post(
        f"{stack.url}/admin/backends/aer/pause",
        headers={"X-CSRF-Token": token, "Origin": evil.url.rstrip("/")},
        max_redirects=0,
    )
    assert refused.status == 403 and store.paused() == set()
    no_token = page.request.post(
        f"{stack.url}/admin/backends/aer/pause", headers={"Origin": stack.url}, max_redirects=0
    )
    assert no_token.status == 403 and store.paused() == set()
    page.close()


def test_actions_redirect_only_within_the_dashboard(browser: Browser, stack: Stack, store: Store) -> None:
    page = logged_in(browser, stack)
    token = csrf_token(page)
    for action in ("pause", "resume"):
        response = page.request.post(
            f"{stack.url}/admin/backends/aer/{action}",
            headers={"X-CSRF-Token": token, "Origin": stack.url, "Referer": "https://evil.example/phish"},
            max_redirects=0,
        )
        assert response.status == 303
        assert response.headers["location"] == "/admin/backends"
    assert store.paused() == set()
    search = page.request.get(f"{stack.url}/admin/jobs?job=//evil.example/x", max_redirects=0)
    assert search.headers["location"].startswith("/admin/jobs/")
    page.close()


def test_headers_forbid_framing_and_inline_script(browser: Browser, stack: Stack) -> None:
    page = logged_in(browser, stack)
    response = page.goto(f"{stack.url}/admin/backends")
    assert response is not None
    headers = response.headers
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    assert page.locator("script:not([src])").count() == 0  # nothing inline to allow
    # and the pages, htmx included, need nothing the policy forbids
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    for path in ("/admin", "/admin/jobs", "/admin/failures", "/admin/tenants", "/admin/backends", "/admin/audit"):
        page.goto(f"{stack.url}{path}")
    page.goto(f"{stack.url}/admin")
    page.wait_for_timeout(2500)  # one live refresh
    assert violations == []
    evil = EvilSite(f'<!doctype html><iframe id="d" src="{stack.url}/admin/backends" width=800 height=600></iframe>')
    try:
        page.goto(evil.url)
        page.wait_for_timeout(1500)
        framed = [f for f in page.frames if f != page.main_frame]
        assert framed, "no frame"
        for frame in framed:
            try:
                text = frame.evaluate("document.body ? document.body.innerText : ''")
            except Exception:
                text = ""
            assert "Pause" not in text, "the dashboard rendered inside another site's frame"
    finally:
        evil.close()
    page.close()


def test_the_session_cookie_is_not_the_key(browser: Browser, stack: Stack) -> None:
    page = logged_in(browser, stack)
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "qfleet_session"]
    assert stack.api_key not in cookie["value"] and cookie["value"] not in stack.api_key
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/admin"
    assert page.evaluate("document.cookie") == ""  # script cannot read it
    assert not [c for c in page.context.cookies() if stack.api_key in c["value"]]
    # logging out ends the session on the server: the old id is worthless
    page.click("header button:has-text('Log out')")
    expect(page).to_have_url(re.compile(r"/admin/login$"))
    replay = httpx.get(f"{stack.url}/admin", cookies={"qfleet_session": cookie["value"]}, follow_redirects=False)
    assert replay.status_code == 303 and replay.headers["location"] == "/admin/login"
    # over https (here: behind a TLS proxy on loopback) the cookie is Secure
    https = httpx.post(
        f"{stack.url}/admin/login",
        data={"key": stack.api_key},
        headers={"X-Forwarded-Proto": "https", "Origin": stack.url.replace("http://", "https://")},
        follow_redirects=False,
    )
    assert https.status_code == 303
    assert "secure" in https.headers["set-cookie"].lower() and "httponly" in https.headers["set-cookie"].lower()
    page.close()


def test_non_admins_are_refused(browser: Browser, stack: Stack, store: Store) -> None:
    store.add_api_key("qf_user_key_for_browser_test_000", tenant="someone", role="user")
    page = browser.new_page()
    page.goto(f"{stack.url}/admin/jobs")
    expect(page).to_have_url(re.compile(r"/admin/login$"))  # no session: sent to log in
    page.screenshot(path=str(SHOTS / "login.png"))
    page.fill("input[name=key]", "qf_user_key_for_browser_test_000")
    page.click("button[type=submit]")
    expect(page.locator("#error")).to_contain_text("not an admin")
    assert not page.context.cookies()  # no session for a user key
    page.set_extra_http_headers({"Authorization": "Bearer qf_user_key_for_browser_test_000"})
    response = page.goto(f"{stack.url}/admin")
    assert response is not None and response.status == 403
    expect(page.locator("#error-page")).to_contain_text("not an admin key")
    page.screenshot(path=str(SHOTS / "refused.png"))
    page.close()

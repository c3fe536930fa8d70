"""The dashboard's routes: pages (GET) and actions (POST, each confirmed in the page, CSRF-checked
and audited). Every POST answers with a redirect to a fixed dashboard path, or for htmx a refresh."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader

from .. import queueing
from ..audit import audit
from ..errors import ServiceError
from . import charts, context
from .session import (
    COOKIE,
    PREFIX,
    Admin,
    CsrfRefused,
    NotAdmin,
    SecurityHeaders,
    acting_admin,
    admin_of,
    check_origin,
    end_session,
    jobs_of,
    set_cookie,
    start_session,
)

HERE = Path(__file__).parent
log = logging.getLogger("qfleet.audit")
router = APIRouter(prefix=PREFIX, include_in_schema=False)
templates = Jinja2Templates(env=Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True))
templates.env.filters["utc"] = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(t)))
templates.env.filters["duration"] = charts.duration
PAGE_SIZE = 25
ActingAdmin = Annotated[Admin, Depends(acting_admin)]


def page(request: Request, name: str, admin: Admin | None = None, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, {"now": time.time(), "admin": admin, "path": request.url.path, **ctx}, status_code=status_code
    )


def error_page(request: Request, status: int, title: str, message: str, admin: Admin | None = None) -> HTMLResponse:
    return page(request, "error.html", admin, status_code=status, status=status, title=title, message=message)


def back(request: Request, to: str) -> Response:
    """Where an action lands: a fixed path of the dashboard (never what Referer says)."""
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Refresh": "true"})
    return RedirectResponse(to, status_code=303)


# -- log in and out ---------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    return page(request, "login.html")


@router.post("/login")
def login(request: Request, key: Annotated[str, Form()]) -> Response:
    check_origin(request)  # no one logs an admin in from another site
    started = start_session(request, key.strip())
    if started is None:
        log.warning("dashboard log in refused", extra={"target": request.client.host if request.client else ""})
        return page(request, "login.html", status_code=401, error="That is not an admin API key.")
    session_id, prefix = started
    audit(jobs_of(request).store, prefix, "log in", "dashboard", "dashboard")
    response = RedirectResponse(PREFIX, status_code=303)
    set_cookie(request, response, session_id)
    return response


@router.post("/logout")
def logout(request: Request, admin: ActingAdmin) -> Response:
    end_session(request)
    audit(jobs_of(request).store, admin.prefix, "log out", "dashboard", "dashboard")
    response = RedirectResponse(PREFIX + "/login", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


# -- pages ---------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def overview(request: Request) -> HTMLResponse:
    admin = admin_of(request)
    return page(request, "overview.html", admin, **context.overview(jobs_of(request)))


@router.get("/partials/overview", response_class=HTMLResponse)
def overview_partial(request: Request) -> HTMLResponse:
    admin = admin_of(request)
    return page(request, "_overview.html", admin, **context.overview(jobs_of(request)))


@router.get("/jobs", response_class=HTMLResponse)
def job_list(
    request: Request,
    tenant: str = "",
    status: str = "",
    backend: str = "",
    page_no: int = 1,
    job: str = "",
    tag: str = "",
) -> Response:
    admin = admin_of(request)
    if job.strip():  # the search box: straight to that job's page
        return RedirectResponse(f"{PREFIX}/jobs/{quote(job.strip(), safe='')}", status_code=303)
    return page(
        request,
        "jobs.html",
        admin,
        **context.job_list(jobs_of(request), tenant, status, backend, page_no, PAGE_SIZE, tag),
    )


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_detail(request: Request, job_id: str) -> HTMLResponse:
    return _job_page(request, job_id, "job.html")


@router.get("/partials/jobs/{job_id}", response_class=HTMLResponse)
def job_partial(request: Request, job_id: str) -> HTMLResponse:
    return _job_page(request, job_id, "_job.html")


def _job_page(request: Request, job_id: str, template: str) -> HTMLResponse:
    """A job's page, or its live part (htmx polls it); a styled 404 for an unknown id."""
    admin = admin_of(request)
    detail = context.job_detail(jobs_of(request), job_id)
    if detail is None:
        return error_page(request, 404, "No such job", f"There is no job '{job_id}' (or it has expired).", admin)
    return page(request, template, admin, **detail)


@router.get("/failures", response_class=HTMLResponse)
def failures(request: Request) -> HTMLResponse:
    admin = admin_of(request)
    return page(request, "failures.html", admin, failures=context.failures_context(jobs_of(request)))


@router.get("/tenants", response_class=HTMLResponse)
def tenants(request: Request) -> HTMLResponse:
    admin = admin_of(request)
    return page(request, "tenants.html", admin, tenants=context.tenants(jobs_of(request)))


@router.get("/backends", response_class=HTMLResponse)
def backends(request: Request) -> HTMLResponse:
    admin = admin_of(request)
    return page(request, "backends.html", admin, backends=context.backends(jobs_of(request)))


@router.get("/audit", response_class=HTMLResponse)
def audit_log(request: Request) -> HTMLResponse:
    admin = admin_of(request)
    return page(request, "audit.html", admin, audit=context.audit(jobs_of(request)))


# -- actions -------------------------------------------------------------------------


@router.post("/jobs/{job_id}/cancel")
def cancel(request: Request, job_id: str, admin: ActingAdmin) -> Response:
    jobs = jobs_of(request)
    if jobs.store.job(job_id) is None:
        return error_page(request, 404, "No such job", f"There is no job '{job_id}'.", admin)
    jobs.cancel_any(job_id)
    audit(jobs.store, admin.prefix, "cancel job", job_id, "dashboard")
    return back(request, f"{PREFIX}/jobs/{job_id}")


@router.post("/jobs/{job_id}/requeue")
def requeue(request: Request, job_id: str, admin: ActingAdmin) -> Response:
    jobs = jobs_of(request)
    try:
        count = jobs.requeue_failed(job_id)
    except ServiceError as exc:
        return error_page(request, exc.status, "Not re-queued", exc.message, admin)
    audit(jobs.store, admin.prefix, "requeue failed tasks", job_id, "dashboard", tasks=count)
    return back(request, f"{PREFIX}/jobs/{job_id}")


@router.post("/backends/{name}/{action}")
def pause_resume(request: Request, name: str, action: str, admin: ActingAdmin) -> Response:
    jobs = jobs_of(request)
    if action not in ("pause", "resume") or name not in jobs.backends:
        return error_page(request, 404, "No such action", f"Cannot {action} '{name}'.", admin)
    jobs.store.set_paused(name, action == "pause")
    audit(jobs.store, admin.prefix, f"{action} backend", name, "dashboard")
    return back(request, f"{PREFIX}/backends")


@router.post("/workers/{name}/drain")
def drain(request: Request, name: str, admin: ActingAdmin) -> Response:
    jobs = jobs_of(request)
    if name not in {w["name"] for w in queueing.workers(jobs.store)}:
        return error_page(request, 404, "No such worker", f"There is no worker '{name}'.", admin)
    queueing.drain(jobs.store, name)
    audit(jobs.store, admin.prefix, "drain worker", name, "dashboard")
    return back(request, PREFIX)


def install(app: FastAPI) -> None:
    """Add the dashboard, its static files, error pages and security headers to the app."""
    app.mount(PREFIX + "/static", StaticFiles(directory=str(HERE / "static")), name="dashboard-static")
    app.include_router(router)

    @app.get(PREFIX + "/{path:path}", include_in_schema=False)
    async def not_found(request: Request, path: str) -> Response:
        admin = await run_in_threadpool(_maybe_admin, request)
        return error_page(request, 404, "Not found", f"There is no page '{request.url.path}'.", admin)

    @app.exception_handler(NotAdmin)
    async def not_admin(request: Request, exc: NotAdmin) -> Response:
        if not exc.logged_in:
            if request.headers.get("hx-request"):  # a live part whose session ended: the whole page goes
                return Response(status_code=204, headers={"HX-Redirect": PREFIX + "/login"})
            return RedirectResponse(PREFIX + "/login", status_code=303)
        return error_page(request, 403, "Admins only", "This API key is not an admin key.")

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, exc: CsrfRefused) -> Response:
        return error_page(request, 403, "Refused", f"This request was not sent from the dashboard: {exc}.")

    app.add_middleware(SecurityHeaders)


def _maybe_admin(request: Request) -> Admin | None:
    try:
        return admin_of(request)
    except NotAdmin:
        return None

"""The admin dashboard: server-rendered pages (Jinja2), live parts refreshed by vendored
htmx, admin-only. Actions need a confirmation in the page and are written to the audit log."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from . import queueing
from .jobs import JobService
from .store import ApiKey
from .tasks import JobSpec, assemble

log = logging.getLogger("qfleet.api")
router = APIRouter(prefix="/admin", include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.filters["utc"] = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(t)))
COOKIE = "qfleet_key"
PAGE_SIZE = 25


class NotAdmin(Exception):
    def __init__(self, logged_in: bool) -> None:
        self.logged_in = logged_in


def jobs_of(request: Request) -> JobService:
    return request.app.state.jobs  # type: ignore[no-any-return]


def admin_of(request: Request) -> ApiKey:
    """The admin behind the request: the dashboard cookie, or a Bearer header (for curl)."""
    key = request.cookies.get(COOKIE) or request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    record = jobs_of(request).store.api_key(key) if key else None
    if record is None or record.role != "admin":
        raise NotAdmin(logged_in=record is not None)
    return record


def page(request: Request, name: str, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"now": time.time(), **context})


def sparkline(values: list[float], width: int = 260, height: int = 48) -> str:
    """SVG polyline points for a small chart."""
    if not values:
        return ""
    top = max(values) or 1.0
    step = width / max(1, len(values) - 1)
    return " ".join(f"{i * step:.1f},{height - (v / top) * (height - 4) - 2:.1f}" for i, v in enumerate(values))


def series(store: Any, minutes: int = 5, bucket_s: int = 10) -> dict[str, Any]:
    """Per-bucket throughput and latency over the last minutes, from the recent-task list."""
    now = time.time()
    n = minutes * 60 // bucket_s
    tasks = [0] * n
    circuits = [0] * n
    durations: list[list[float]] = [[] for _ in range(n)]
    waits: list[list[float]] = [[] for _ in range(n)]
    for t in store.recent_tasks():
        i = n - 1 - int((now - t["t"]) // bucket_s)
        if 0 <= i < n:
            tasks[i] += 1
            circuits[i] += t["circuits"]
            durations[i].append(t["seconds"])
            waits[i].append(t["wait"])

    def pct(values: list[float], q: float) -> float:
        return float(np.percentile(values, q)) * 1000 if values else 0.0

    charts = {
        "circuit evaluations / s": [c / bucket_s for c in circuits],
        "tasks / s": [c / bucket_s for c in tasks],
        "task p50 (ms)": [pct(d, 50) for d in durations],
        "task p99 (ms)": [pct(d, 99) for d in durations],
        "queue wait p50 (ms)": [pct(w, 50) for w in waits],
    }
    return {
        name: {"points": sparkline(v), "last": v[-1] if v else 0.0, "max": max(v) if v else 0.0}
        for name, v in charts.items()
    }


def overview_context(request: Request) -> dict[str, Any]:
    jobs = jobs_of(request)
    store = jobs.store
    paused = store.paused()
    backends = [
        {
            "name": name,
            "status": "paused" if name in paused else ("online" if jobs.workers_on(name) else "no workers"),
            "depth": jobs.queue_depth(name),
        }
        for name in jobs.backends
    ]
    workers = [{**w, "queues": ", ".join(w["backends"])} for w in queueing.workers(store)]
    running = [j for j in job_rows(store, limit=200) if j["status"] in ("queued", "running")][:10]
    return {"backends": backends, "workers": workers, "charts": series(store), "running": running}


def job_rows(store: Any, limit: int = 2000) -> list[dict[str, Any]]:
    ids = store.recent_jobs(limit)
    fields = ["tenant", "backend", "status", "created_at", "started_at", "finished_at", "tasks_total"]
    rows: list[dict[str, Any]] = []
    for job_id, values, done in store.job_rows(ids, fields):
        rows.append({**values, "id": job_id, "done": done, "total": int(values["tasks_total"] or 0)})
    return rows


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, error: str = "") -> HTMLResponse:
    return page(request, "login.html", error=error)


@router.post("/login")
def login(request: Request, key: Annotated[str, Form()]) -> Response:
    record = jobs_of(request).store.api_key(key.strip())
    if record is None or record.role != "admin":
        return page(request, "login.html", error="That is not an admin API key.")
    response = RedirectResponse("/admin", status_code=303)
    response.set_cookie(COOKIE, key.strip(), httponly=True, samesite="strict", max_age=12 * 3600)
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


@router.get("", response_class=HTMLResponse)
def overview(request: Request) -> HTMLResponse:
    admin_of(request)
    return page(request, "overview.html", **overview_context(request))


@router.get("/partials/overview", response_class=HTMLResponse)
def overview_partial(request: Request) -> HTMLResponse:
    admin_of(request)
    return page(request, "_overview.html", **overview_context(request))


@router.get("/jobs", response_class=HTMLResponse)
def job_list(request: Request, tenant: str = "", status: str = "", backend: str = "", page_no: int = 1) -> HTMLResponse:
    admin_of(request)
    rows = [
        r
        for r in job_rows(jobs_of(request).store)
        if (not tenant or r["tenant"] == tenant)
        and (not status or r["status"] == status)
        and (not backend or r["backend"] == backend)
    ]
    pages = max(1, math.ceil(len(rows) / PAGE_SIZE))
    page_no = min(max(1, page_no), pages)
    return page(
        request,
        "jobs.html",
        rows=rows[(page_no - 1) * PAGE_SIZE : page_no * PAGE_SIZE],
        page_no=page_no,
        pages=pages,
        filters={"tenant": tenant, "status": status, "backend": backend},
        total=len(rows),
    )


def job_context(request: Request, job_id: str) -> dict[str, Any]:
    store = jobs_of(request).store
    record = store.job(job_id)
    if record is None:
        raise NotFoundPage(job_id)
    spec = JobSpec.from_json(record["spec"])
    done = store.done_tasks(job_id)
    total = int(record["tasks_total"])
    failures = queueing.failures(store, record["queue"], job_id)
    summary = []
    if record["status"] == "done":
        for i, arrays in enumerate(assemble(spec, store.results(job_id))):
            evs = arrays["evs"]
            assert evs is not None
            summary.append(
                {
                    "pub": i,
                    "shape": list(evs.shape),
                    "mean": float(np.mean(evs)),
                    "min": float(np.min(evs)),
                    "max": float(np.max(evs)),
                    "gradient": arrays["gradient"] is not None,
                }
            )
    created = float(record["created_at"])
    started = float(record["started_at"]) if record.get("started_at") else None
    finished = float(record["finished_at"]) if record.get("finished_at") else None
    return {
        "job": record,
        "job_id": job_id,
        "spec": spec,
        "tasks": [t in done for t in range(total)],
        "done": len(done),
        "total": total,
        "attempts": store.attempts(job_id),
        "failures": failures,
        "summary": summary,
        "error": json.loads(record["error"]) if record.get("error") else None,
        "timings": {
            "created": created,
            "queued_s": (started or time.time()) - created if started or record["status"] == "queued" else None,
            "running_s": ((finished or time.time()) - started) if started else None,
        },
    }


class NotFoundPage(Exception):
    pass


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_detail(request: Request, job_id: str) -> HTMLResponse:
    admin_of(request)
    return page(request, "job.html", **job_context(request, job_id))


@router.get("/partials/jobs/{job_id}", response_class=HTMLResponse)
def job_partial(request: Request, job_id: str) -> HTMLResponse:
    admin_of(request)
    return page(request, "_job.html", **job_context(request, job_id))


@router.get("/tenants", response_class=HTMLResponse)
def tenants(request: Request) -> HTMLResponse:
    admin_of(request)
    jobs = jobs_of(request)
    store = jobs.store
    keys = store.api_keys().values()
    hours = [time.strftime("%Y-%m-%dT%H", time.gmtime(time.time() - 3600 * h)) for h in range(23, -1, -1)]
    rows = []
    for tenant in store.tenants():
        usage = store.usage(tenant)
        per_hour: list[dict[str, Any]] = [
            {
                "hour": h[-2:] + ":00",
                **{m: usage.get(f"{h}|{m}", 0.0) for m in ("jobs", "circuits", "shots", "seconds")},
            }
            for h in hours
        ]
        rows.append(
            {
                "name": tenant,
                "limits": jobs.limits(tenant).model_dump(),
                "api_keys": [k for k in keys if k.tenant == tenant],
                "hours": [h for h in per_hour if any(h[m] for m in ("jobs", "circuits", "shots", "seconds"))],
                "totals": {m: sum(h[m] for h in per_hour) for m in ("jobs", "circuits", "shots", "seconds")},
                "chart": sparkline([h["circuits"] for h in per_hour]),
            }
        )
    return page(request, "tenants.html", tenants=rows)


def _color(value: float, low: float, high: float) -> str:
    """Green (good) to red (bad) for an error rate between low and high."""
    x = min(1.0, max(0.0, (value - low) / ((high - low) or 1.0)))
    return f"rgb({int(60 + 190 * x)},{int(170 - 110 * x)},{int(80 - 30 * x)})"


def device_svg(calibration: dict[str, Any]) -> str:
    """The chip as a picture: qubits coloured by readout error, couplers by CZ error; disabled couplers dashed."""
    from .devices.wukong72 import COLS, ROWS

    step, pad = 46, 24

    def xy(q: int) -> tuple[int, int]:
        return pad + (q % COLS) * step, pad + (q // COLS) * step

    parts = [
        f'<svg id="chip" width="{2 * pad + (COLS - 1) * step}" height="{2 * pad + (ROWS - 1) * step}" xmlns="http://www.w3.org/2000/svg">'
    ]
    cz = [c["cz_error"] for c in calibration["couplers"]]
    for c in calibration["couplers"]:
        (x1, y1), (x2, y2) = xy(c["pair"][0]), xy(c["pair"][1])
        if c["enabled"]:
            style = f'stroke="{_color(c["cz_error"], min(cz), max(cz))}" stroke-width="5"'
            label = f"CZ {c['pair'][0]}-{c['pair'][1]}: error {c['cz_error']:.4f}"
        else:
            style = 'stroke="#9aa1b1" stroke-width="2" stroke-dasharray="4 3"'
            label = f"coupler {c['pair'][0]}-{c['pair'][1]}: disabled"
        parts.append(
            f'<line class="coupler" x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" {style}><title>{label}</title></line>'
        )
    ro = [q["readout_error"] for q in calibration["qubits"]]
    for q in calibration["qubits"]:
        x, y = xy(q["qubit"])
        label = (
            f"Q{q['qubit']}: T1 {q['t1_us']} µs, T2 {q['t2_us']} µs, readout error {q['readout_error']:.4f}, "
            f"SX error {q['sx_error']:.4f}, {q['frequency_ghz']} GHz"
        )
        parts.append(
            f'<circle class="qubit" cx="{x}" cy="{y}" r="12" fill="{_color(q["readout_error"], min(ro), max(ro))}" stroke="#1d2330">'
            f'<title>{label}</title></circle><text x="{x}" y="{y + 4}" font-size="10" text-anchor="middle" fill="#fff">{q["qubit"]}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


@router.get("/backends", response_class=HTMLResponse)
def backends(request: Request) -> HTMLResponse:
    admin_of(request)
    jobs = jobs_of(request)
    paused = jobs.store.paused()
    from .devices.wukong72 import load_calibration

    rows = [
        {
            "b": b,
            "paused": b.name in paused,
            "depth": jobs.queue_depth(b.name),
            "workers": jobs.workers_on(b.name),
            "svg": device_svg(load_calibration()) if b.name == "wukong72" else "",
        }
        for b in jobs.backends.values()
    ]
    return page(request, "backends.html", backends=rows, audit=jobs.store.audit_log(20))


def _act(request: Request, action: str, target: str) -> ApiKey:
    admin = admin_of(request)
    jobs_of(request).store.audit(admin.prefix, action, target)
    log.info("admin action", extra={"actor": admin.prefix, "action": action, "target": target})
    return admin


def _back(request: Request, default: str) -> Response:
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Refresh": "true"})
    return RedirectResponse(request.headers.get("referer") or default, status_code=303)


@router.post("/jobs/{job_id}/cancel")
def cancel(request: Request, job_id: str) -> Response:
    _act(request, "cancel job", job_id)
    jobs_of(request).cancel_any(job_id)
    return _back(request, f"/admin/jobs/{job_id}")


@router.post("/jobs/{job_id}/requeue")
def requeue(request: Request, job_id: str) -> Response:
    _act(request, "requeue failed tasks", job_id)
    jobs_of(request).requeue_failed(job_id)
    return _back(request, f"/admin/jobs/{job_id}")


@router.post("/backends/{name}/{action}")
def pause_resume(request: Request, name: str, action: str) -> Response:
    if action not in ("pause", "resume") or name not in jobs_of(request).backends:
        return Response(status_code=404)
    _act(request, f"{action} backend", name)
    jobs_of(request).store.set_paused(name, action == "pause")
    return _back(request, "/admin/backends")


@router.post("/workers/{name}/drain")
def drain(request: Request, name: str) -> Response:
    _act(request, "drain worker", name)
    queueing.drain(jobs_of(request).store, name)
    return _back(request, "/admin")


def install(app: FastAPI) -> None:
    """Add the dashboard and its error pages to the app."""
    from fastapi.staticfiles import StaticFiles

    app.include_router(router)
    app.mount("/admin/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")

    @app.exception_handler(NotAdmin)
    async def not_admin(request: Request, exc: NotAdmin) -> Response:
        if not exc.logged_in:
            return RedirectResponse("/admin/login", status_code=303)
        return HTMLResponse("<h1>403 — admin only</h1><p>This key is not an admin key.</p>", status_code=403)

    @app.exception_handler(NotFoundPage)
    async def not_found(request: Request, exc: NotFoundPage) -> Response:
        return HTMLResponse(f"<h1>404</h1><p>No job {exc}.</p>", status_code=404)

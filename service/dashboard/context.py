"""View-models: what each page shows, as plain data. Reads go through JobService, Store and
the queue boundary (service/queueing.py); nothing here knows RQ or Redis key names."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import timezone
from typing import Any

import numpy as np

from .. import queueing
from ..jobs import JobService
from ..tasks import JobSpec, assemble
from . import charts

FAILURE_WINDOWS = (("last hour", 3600), ("last 24 h", 86400))
JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled")


def backend_rows(jobs: JobService) -> list[dict[str, Any]]:
    """Every backend with its status (the same function as ``GET /v1/backends``) and queue."""
    paused = jobs.store.paused()
    rows = []
    for name, backend in jobs.backends.items():
        status, reason, workers = jobs.backend_status(name, paused)
        depth = jobs.queue_depth(name)
        rows.append(
            {
                "name": name,
                "b": backend,
                "status": status,
                "reason": reason,
                "workers": workers,
                "depth": depth,
                "queued": sum(depth.values()),
                "paused": status == "paused",
            }
        )
    return rows


def worker_rows(jobs: JobService) -> list[dict[str, Any]]:
    now = time.time()
    rows = []
    for w in queueing.workers(jobs.store):
        beat = w["heartbeat"].replace(tzinfo=timezone.utc).timestamp() if w["heartbeat"] else None  # RQ's UTC
        stale = beat is None or now - beat > 60
        rows.append({**w, "backends": ", ".join(w["backends"]), "age": charts.age(beat, now), "stale": stale})
    return rows


def job_summaries(jobs: JobService, limit: int = 2000) -> list[dict[str, Any]]:
    """The latest jobs, newest first, with their tasks done and in all."""
    fields = ["tenant", "backend", "status", "created_at", "started_at", "finished_at", "tasks_total", "error", "tags"]
    rows = jobs.store.job_rows(jobs.store.recent_jobs(limit), fields)
    return [
        {
            **values,
            "id": job_id,
            "done": done,
            "total": int(values["tasks_total"] or 0),
            "tags": json.loads(values["tags"] or "{}"),
        }
        for job_id, values, done in rows
    ]


def failure_summary(failures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Failed tasks per (backend, tenant) in each window, most recent first."""
    now = time.time()
    counts: dict[tuple[str, str], Counter[str]] = {}
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for f in failures:
        key = (f["backend"], f["tenant"])
        counts.setdefault(key, Counter())
        last.setdefault(key, f)
        for label, seconds in FAILURE_WINDOWS:
            if now - f["t"] <= seconds:
                counts[key][label] += 1
    return [
        {
            "backend": backend,
            "tenant": tenant,
            "counts": [counts[(backend, tenant)][label] for label, _ in FAILURE_WINDOWS],
            "last": last[(backend, tenant)],
            "last_age": charts.age(last[(backend, tenant)]["t"], now),
        }
        for backend, tenant in sorted(counts, key=lambda k: -last[k]["t"])
    ]


def failures_context(jobs: JobService, limit: int = 50) -> dict[str, Any]:
    failures = jobs.store.failures()
    now = time.time()
    hourly = [0.0] * 24
    by_backend: dict[str, list[float]] = {}
    end = (now // 3600 + 1) * 3600
    for f in failures:
        i = 23 - int((end - f["t"]) // 3600)
        if 0 <= i < 24:
            hourly[i] += 1
            by_backend.setdefault(f["backend"], [0.0] * 24)[i] += 1
    for f in failures[:limit]:
        f["age"] = charts.age(f["t"], now)
    return {
        "summary": failure_summary(failures),
        "windows": [label for label, _ in FAILURE_WINDOWS],
        "latest": failures[:limit],
        "chart": charts.hourly_chart("tasks failed, all backends", "per hour", hourly),
        "backend_charts": [
            charts.hourly_chart(f"tasks failed on {name}", "per hour", values)
            for name, values in sorted(by_backend.items())
        ],
        "total": sum(jobs.store.tasks_failed().values()),
    }


def overview(jobs: JobService) -> dict[str, Any]:
    store = jobs.store
    failures = store.failures()
    running = [j for j in job_summaries(jobs, 200) if j["status"] in ("queued", "running")][:10]
    return {
        "backends": backend_rows(jobs),
        "workers": worker_rows(jobs),
        "charts": charts.recent_charts(store.recent_tasks(), failures),
        "running": running,
        "failures": failures_context(jobs, limit=3),
        "cache": cache_summary(counters := store.counters()),
        "cache_stored_mb": f"{counters.get('result_cache_stored_bytes', 0) / 1e6:.1f}",
    }


def cache_summary(counters: dict[str, float]) -> list[dict[str, Any]]:
    """The result cache's hits and misses since the counters began: whole jobs answered at
    submission, and chunks of results the workers did not compute."""
    rows = []
    for level, suffix in (("jobs", "_job"), ("chunks", "")):
        hits, misses = (
            int(counters.get(f"result_cache{suffix}_hits", 0)),
            int(counters.get(f"result_cache{suffix}_misses", 0)),
        )
        rate = f"{100 * hits / (hits + misses):.0f}%" if hits + misses else "none yet"
        rows.append({"level": level, "hits": hits, "misses": misses, "hit_rate": rate})
    return rows


def job_list(
    jobs: JobService, tenant: str, status: str, backend: str, page_no: int, page_size: int, tag: str = ""
) -> dict[str, Any]:
    all_rows = job_summaries(jobs)
    tag_key, _, tag_value = tag.strip().partition(":")
    rows = [
        r
        for r in all_rows
        if (not tenant or r["tenant"] == tenant)
        and (not status or r["status"] == status)
        and (not backend or r["backend"] == backend)
        and (not tag_key or r["tags"].get(tag_key) == tag_value)
    ]
    for r in rows:
        error = json.loads(r["error"]) if r.get("error") else None
        r["error_text"] = f"{error['code']}: {error['message']}" if error else ""
    pages = max(1, -(-len(rows) // page_size))
    page_no = min(max(1, page_no), pages)
    return {
        "rows": rows[(page_no - 1) * page_size : page_no * page_size],
        "page_no": page_no,
        "pages": pages,
        "filters": {"tenant": tenant, "status": status, "backend": backend, "tag": tag.strip()},
        "choices": {
            "tenant": sorted({r["tenant"] for r in all_rows} | set(jobs.store.tenants())),
            "status": list(JOB_STATUSES),
            "backend": list(jobs.backends),
        },
        "total": len(rows),
    }


def job_detail(jobs: JobService, job_id: str) -> dict[str, Any] | None:
    store = jobs.store
    record = store.job(job_id)
    if record is None:
        return None
    spec = JobSpec.from_json(record["spec"])
    done = store.done_tasks(job_id)
    total = int(record["tasks_total"])
    summary = []
    sampler = bool(spec.pubs) and spec.pubs[0].primitive == "sampler"  # bit arrays: no evs to summarize
    if record["status"] == "done" and not sampler:
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
    queued_s = (started or time.time()) - created if started or record["status"] == "queued" else None
    running_s = ((finished or time.time()) - started) if started else None
    return {
        "job": record,
        "job_id": job_id,
        "spec": spec,
        "tasks": [t in done for t in range(total)],
        "done": len(done),
        "total": total,
        "attempts": store.attempts(job_id),
        "failures": store.job_failures(job_id),
        "requeue": jobs.requeue_can_help(job_id),
        "summary": summary,
        "tags": json.loads(record.get("tags") or "{}"),
        "error": json.loads(record["error"]) if record.get("error") else None,
        "timings": {
            "created": created,
            "queued": charts.duration(queued_s) if queued_s is not None else "–",
            "running": charts.duration(running_s) if running_s is not None else "–",
        },
    }


LIMIT_NOTES = {
    "max_qubits": ("qubits", "each backend's own width applies below it"),
    "max_shots": ("shots", "per PUB"),
    "max_circuits": ("circuit evaluations", "per job"),
    "max_body_bytes": ("bytes", "per request"),
    "max_jobs_in_flight": ("jobs", "queued or running at once"),
    "max_tasks_in_flight": ("tasks", "queued or running at once"),
    "jobs_per_second": ("per s", "sustained submission rate"),
    "burst": ("submissions", "allowed at once before the rate applies"),
}


def _limit_value(name: str, value: Any) -> str:
    if name == "max_body_bytes":
        return f"{value / 2**20:g} MiB"
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def tenants(jobs: JobService) -> list[dict[str, Any]]:
    store = jobs.store
    keys = store.api_keys().values()
    hours = [time.strftime("%Y-%m-%dT%H", time.gmtime(time.time() - 3600 * h)) for h in range(23, -1, -1)]
    metrics = ("jobs", "circuits", "shots", "seconds")
    widest = max((b.num_qubits for b in jobs.backends.values()), default=0)
    rows = []
    for tenant in store.tenants():
        usage = store.usage(tenant)
        per_hour: list[dict[str, Any]] = [
            {"hour": h[-2:] + ":00", **{m: usage.get(f"{h}|{m}", 0.0) for m in metrics}} for h in hours
        ]
        limits = jobs.limits(tenant).model_dump()
        rows.append(
            {
                "name": tenant,
                "limits": [
                    {
                        "name": name,
                        "value": _limit_value(name, value),
                        "unit": LIMIT_NOTES.get(name, ("", ""))[0],
                        "note": LIMIT_NOTES.get(name, ("", ""))[1]
                        + (" (no backend is this wide)" if name == "max_qubits" and value > widest else ""),
                    }
                    for name, value in limits.items()
                ],
                "api_keys": [k for k in keys if k.tenant == tenant],
                "hours": [h for h in per_hour if any(h[m] for m in metrics)],
                "totals": {m: sum(h[m] for h in per_hour) for m in metrics},
                "chart": charts.hourly_chart("circuit evaluations", "per hour", [h["circuits"] for h in per_hour]),
            }
        )
    return rows


def backends(jobs: JobService) -> list[dict[str, Any]]:
    from ..devices.wukong72 import COLS, ROWS, load_calibration

    rows = backend_rows(jobs)
    for row in rows:
        row["chip"] = charts.device_map(load_calibration(), COLS, ROWS) if row["name"] == "wukong72" else None
    return rows


def audit(jobs: JobService, limit: int = 200) -> list[dict[str, Any]]:
    entries = jobs.store.audit_log(limit)
    for e in entries:
        details = {k: v for k, v in e.items() if k not in ("t", "actor", "action", "target", "via")}
        changed = details.pop("changed", None) or {}
        e["details"] = [f"{k} {v}" for k, v in details.items()]
        e["details"] += [f"{k} {before} → {after}" for k, (before, after) in changed.items()]
    return entries

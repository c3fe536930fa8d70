"""``/metrics`` for Prometheus, read from Redis at scrape time so that every API and worker
process counts, whichever one is scraped.

HTTP request counts and latencies are gathered in each API process by :class:`HttpMetrics`
(a small ASGI middleware, labelled by route template, never by raw path) and added to Redis
at most once a second, and by the scraped process just before it answers."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .deps import AdminDep, JobsDep
from .jobs import JobService
from .store import TASK_SECONDS_BUCKETS, Store, histogram_bucket

router = APIRouter(tags=["metrics"])
FLUSH_EVERY_S = 1.0


def _buckets(hist: dict[str, float]) -> list[tuple[str, float]]:
    """Prometheus' cumulative buckets from per-bucket counts."""
    cumulative, out = 0.0, []
    for bound in (*map(repr, TASK_SECONDS_BUCKETS), "+Inf"):
        cumulative += hist.get(bound, 0.0)
        out.append((bound, cumulative))
    return out


class RedisCollector:
    def __init__(self, jobs: JobService) -> None:
        self.jobs = jobs

    def collect(self) -> Iterator[Metric]:
        store = self.jobs.store
        counters = store.counters()
        jobs = CounterMetricFamily("qfleet_jobs", "Jobs by what happened to them.", labels=["event"])
        for event in ("submitted", "done", "failed", "cancelled"):
            jobs.add_metric([event], counters.get(f"jobs_{event}", 0.0))
        yield jobs
        yield CounterMetricFamily(
            "qfleet_tasks_done", "Distinct tasks completed.", value=counters.get("tasks_done", 0.0)
        )
        hits = CounterMetricFamily(
            "qfleet_result_cache_hits",
            "Result-cache hits: whole jobs answered at submission (level 'job'), and chunks of results "
            "(one engine call each) that workers found instead of computing (level 'chunk').",
            labels=["level"],
        )
        misses = CounterMetricFamily(
            "qfleet_result_cache_misses",
            "Cacheable jobs not found whole (level 'job'), and cacheable chunks computed, then kept (level 'chunk').",
            labels=["level"],
        )
        for level, suffix in (("job", "_job"), ("chunk", "")):
            hits.add_metric([level], counters.get(f"result_cache{suffix}_hits", 0.0))
            misses.add_metric([level], counters.get(f"result_cache{suffix}_misses", 0.0))
        yield hits
        yield misses
        yield CounterMetricFamily(
            "qfleet_result_cache_stored_bytes",
            "Bytes written to the result cache (each entry expires after QFLEET_RESULT_CACHE_TTL_S).",
            value=counters.get("result_cache_stored_bytes", 0.0),
        )
        failed = CounterMetricFamily(
            "qfleet_tasks_failed",
            "Tasks failed for good (after their retries), by backend and reason: the exception's type, "
            "or 'abandoned' when their worker was lost too often.",
            labels=["backend", "reason"],
        )
        by_reason: dict[tuple[str, str], int] = defaultdict(int)
        for (backend, _tenant, reason), count in store.tasks_failed().items():
            by_reason[(backend, reason)] += count
        for (backend, reason), count in sorted(by_reason.items()):
            failed.add_metric([backend, reason], count)
        yield failed
        circuits = CounterMetricFamily(
            "qfleet_circuit_evaluations",
            "Circuit evaluations (parameter sets run), by backend and tenant.",
            labels=["backend", "tenant"],
        )
        for (backend, tenant), count in sorted(store.circuits_by().items()):
            circuits.add_metric([backend, tenant], count)
        yield circuits
        depth = GaugeMetricFamily(
            "qfleet_queue_depth", "Tasks waiting, by backend and priority lane.", labels=["backend", "priority"]
        )
        for backend in self.jobs.backends:
            for lane, count in self.jobs.queue_depth(backend).items():
                depth.add_metric([backend, lane], count)
        yield depth
        tasks = HistogramMetricFamily(
            "qfleet_task_duration_seconds", "Compute time of a task in its worker, by backend.", labels=["backend"]
        )
        for backend, hist in sorted(store.task_seconds_by_backend().items()):
            tasks.add_metric([backend], _buckets(hist), sum_value=hist.get("sum", 0.0))
        yield tasks
        requests = CounterMetricFamily(
            "qfleet_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            labels=["method", "route", "status"],
        )
        latency = HistogramMetricFamily(
            "qfleet_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by method, route template and status code.",
            labels=["method", "route", "status"],
        )
        for labels, hist in sorted(store.http_stats().items()):
            requests.add_metric(list(labels), hist.get("count", 0.0))
            latency.add_metric(list(labels), _buckets(hist), sum_value=hist.get("sum", 0.0))
        yield requests
        yield latency
        yield GaugeMetricFamily("qfleet_workers", "Workers registered in Redis.", value=self.jobs.worker_count())
        yield GaugeMetricFamily("qfleet_backends_paused", "Backends paused by an admin.", value=len(store.paused()))


@router.get("/metrics", summary="Prometheus metrics (admin key)", response_class=Response)
async def metrics(request: Request, jobs: JobsDep, admin: AdminDep) -> Response:
    recorder: HttpMetrics | None = getattr(request.app.state, "http_metrics", None)
    if recorder is not None:
        await run_in_threadpool(recorder.flush, jobs.store)
    registry = CollectorRegistry()
    registry.register(RedisCollector(jobs))  # type: ignore[arg-type]
    return Response(await run_in_threadpool(generate_latest, registry), media_type=CONTENT_TYPE_LATEST)


def route_of(scope: Scope) -> str:
    """The route template that answered (``/v1/jobs/{job_id}``), so label values stay few."""
    return str(getattr(scope.get("route"), "path", None) or "unmatched")


class HttpMetrics:
    """ASGI middleware: counts each HTTP request and its latency by method, route template and
    status, in memory; the sums go to Redis at most once a second (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._pending: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()
        self._flushing = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            self.observe(scope["method"], route_of(scope), status, time.perf_counter() - start)
            app = scope.get("app")
            if app is not None:
                app.state.http_metrics = self
                jobs = getattr(app.state, "jobs", None)
                if jobs is not None and time.monotonic() - self._last_flush >= FLUSH_EVERY_S and not self._flushing:
                    self._flushing = True
                    try:
                        await run_in_threadpool(self.flush, jobs.store)
                    except Exception:  # Redis away: the counts stay pending until it is back
                        pass
                    finally:
                        self._flushing = False

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        base = f"{method}|{route}|{status}"
        with self._lock:
            self._pending[f"{base}|{histogram_bucket(seconds)}"] += 1
            self._pending[f"{base}|count"] += 1
            self._pending[f"{base}|sum"] += seconds

    def flush(self, store: Store) -> None:
        with self._lock:
            pending, self._pending = dict(self._pending), defaultdict(float)
            self._last_flush = time.monotonic()
        try:
            store.add_http_stats(pending)
        except Exception:
            with self._lock:  # put them back for the next try
                for field, value in pending.items():
                    self._pending[field] += value
            raise


def install(app: FastAPI) -> None:
    """Count every HTTP request the app answers."""
    app.add_middleware(HttpMetrics)

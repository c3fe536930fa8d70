"""``/metrics`` for Prometheus, read from Redis at scrape time so that every API and worker
process counts, whichever one is scraped."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from .deps import AdminDep, JobsDep
from .jobs import JobService
from .store import TASK_SECONDS_BUCKETS

router = APIRouter(tags=["metrics"])


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
        hist = store.task_seconds()
        cumulative, buckets = 0.0, []
        for bound in (*map(repr, TASK_SECONDS_BUCKETS), "+Inf"):
            cumulative += hist.get(bound, 0.0)
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(
            "qfleet_task_duration_seconds",
            "Compute time of a task in its worker.",
            buckets=buckets,
            sum_value=hist.get("sum", 0.0),
        )
        yield GaugeMetricFamily("qfleet_workers", "Workers registered in Redis.", value=self.jobs.worker_count())
        yield GaugeMetricFamily("qfleet_backends_paused", "Backends paused by an admin.", value=len(store.paused()))


@router.get("/metrics", summary="Prometheus metrics (admin key)", response_class=Response)
def metrics(jobs: JobsDep, admin: AdminDep) -> Response:
    registry = CollectorRegistry()
    registry.register(RedisCollector(jobs))  # type: ignore[arg-type]
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

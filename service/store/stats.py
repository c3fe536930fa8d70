"""Statistics in Redis: counters, the task-time histogram, recent tasks, usage, audit, failures, metrics."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from . import scripts
from .base import StoreBase
from .keys import COST_TTL_S


@dataclass(frozen=True)
class TaskStats:
    backend: str = ""
    tenant: str = ""
    seconds: float = 0.0
    wait: float = 0.0
    circuits: int = 0


class Statistics(StoreBase):
    def counters(self) -> dict[str, float]:
        return {k.decode(): float(v) for k, v in self.redis.hgetall(self.keys.counters).items()}  # type: ignore[union-attr]

    def circuits_by(self) -> dict[tuple[str, str], int]:
        raw = self.redis.hgetall(self.keys.circuits)
        out = {}
        for field, value in raw.items():  # type: ignore[union-attr]
            backend, _, tenant = field.decode().partition("|")  # type: ignore[union-attr]
            out[(backend, tenant)] = int(value)
        return out

    def task_seconds(self) -> dict[str, float]:
        return {k.decode(): float(v) for k, v in self.redis.hgetall(self.keys.task_seconds).items()}  # type: ignore[union-attr]

    def recent_tasks(self, limit: int = 5000) -> list[dict[str, Any]]:
        return [json.loads(r) for r in self.redis.lrange(self.keys.recent_tasks, 0, limit - 1)]  # type: ignore[union-attr]

    def measured_costs(self, tenant: str, backend: str, cost_keys: list[str]) -> list[float | None]:
        """CPU seconds a row of each work took in the tenant's earlier tasks (None: not run yet)."""
        if not cost_keys:
            return []
        raw = self.redis.hmget(self.keys.costs(tenant, backend), cost_keys)
        return [None if v is None else float(v) for v in raw]  # type: ignore[union-attr]

    def queue_cost_writes(self, pipe: Any, tenant: str, backend: str, costs: dict[str, float]) -> None:
        """In the caller's pipeline: what a row of each work just took; each keeps its least
        figure, and the hash lives a day."""
        args: list[Any] = [x for k, v in costs.items() for x in (k, repr(v))]
        # EVAL, not the registered script: a pipeline would first ask whether it is loaded
        pipe.eval(scripts.LOWER_COSTS, 1, self.keys.costs(tenant, backend), *args, COST_TTL_S)

    def usage(self, tenant: str) -> dict[str, float]:
        return {k.decode(): float(v) for k, v in self.redis.hgetall(self.keys.usage(tenant)).items()}  # type: ignore[union-attr]

    def tenants(self) -> list[str]:
        return sorted({rec.tenant for rec in self.api_keys().values()})

    def recent_jobs(self, limit: int = 500) -> list[str]:
        return [j.decode() for j in self.redis.zrevrange(self.keys.all_jobs, 0, limit - 1)]  # type: ignore[union-attr]

    def audit(self, actor: str, action: str, target: str, **details: Any) -> None:
        entry = json.dumps({"t": time.time(), "actor": actor, "action": action, "target": target, **details})
        pipe = self.redis.pipeline()
        pipe.lpush(self.keys.audit, entry)
        pipe.ltrim(self.keys.audit, 0, 999)
        pipe.execute()

    def audit_log(self, limit: int = 50) -> list[dict[str, Any]]:
        return [json.loads(r) for r in self.redis.lrange(self.keys.audit, 0, limit - 1)]  # type: ignore[union-attr]

    def record_failure(
        self, job_id: str, task: int, backend: str, tenant: str, reason: str, message: str, traceback: str = ""
    ) -> None:
        """A task failed for good: kept with its traceback for the dashboard, counted for /metrics."""
        entry = json.dumps(
            {
                "t": time.time(),
                "job": job_id,
                "task": task,
                "backend": backend,
                "tenant": tenant,
                "reason": reason,
                "message": message,
                "traceback": traceback,
            }
        )
        k = self.keys
        pipe = self.redis.pipeline()
        pipe.lpush(k.failures, entry)
        pipe.ltrim(k.failures, 0, 499)
        pipe.hset(k.job_failures(job_id), str(task), entry)
        pipe.expire(k.job_failures(job_id), self.ttl_s)
        pipe.hincrby(k.tasks_failed, f"{backend}|{tenant}|{reason}", 1)
        pipe.execute()

    def failures(self, limit: int = 500) -> list[dict[str, Any]]:
        return [json.loads(r) for r in self.redis.lrange(self.keys.failures, 0, limit - 1)]  # type: ignore[union-attr]

    def job_failures(self, job_id: str) -> list[dict[str, Any]]:
        raw = self.redis.hgetall(self.keys.job_failures(job_id))
        return sorted((json.loads(v) for v in raw.values()), key=lambda f: f["task"])  # type: ignore[union-attr]

    def tasks_failed(self) -> dict[tuple[str, str, str], int]:
        """(backend, tenant, reason) -> tasks failed for good."""
        out = {}
        for field, value in self.redis.hgetall(self.keys.tasks_failed).items():  # type: ignore[union-attr]
            backend, tenant, reason = field.decode().split("|", 2)  # type: ignore[union-attr]
            out[(backend, tenant, reason)] = int(value)
        return out

    def task_seconds_by_backend(self) -> dict[str, dict[str, float]]:
        """backend -> {le bound or "sum"/"count": value}."""
        out: dict[str, dict[str, float]] = {}
        for field, value in self.redis.hgetall(self.keys.task_seconds_by_backend).items():  # type: ignore[union-attr]
            backend, _, name = field.decode().rpartition("|")  # type: ignore[union-attr]
            out.setdefault(backend, {})[name] = float(value)
        return out

    def add_http_stats(self, deltas: dict[str, float]) -> None:
        """Add one API process's request counts and latency sums (fields as in Keys.http_requests)."""
        if not deltas:
            return
        pipe = self.redis.pipeline(transaction=False)
        for field, value in deltas.items():
            if field.endswith("|sum"):
                pipe.hincrbyfloat(self.keys.http_requests, field, value)
            else:
                pipe.hincrby(self.keys.http_requests, field, int(value))
        pipe.execute()

    def http_stats(self) -> dict[tuple[str, str, str], dict[str, float]]:
        """(method, route, status) -> {le bound or "sum"/"count": value}."""
        out: dict[tuple[str, str, str], dict[str, float]] = {}
        for field, value in self.redis.hgetall(self.keys.http_requests).items():  # type: ignore[union-attr]
            method, route, status, name = field.decode().split("|")  # type: ignore[union-attr]
            out.setdefault((method, route, status), {})[name] = float(value)
        return out

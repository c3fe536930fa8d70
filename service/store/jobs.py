"""Jobs in Redis: records, payload blobs, result slices, and the task lifecycle workers drive."""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from . import scripts
from .base import StoreBase
from .cache import CacheWrite
from .keys import (
    EVENT_RESULT_BYTES,
    histogram_bucket,
    usage_hour,
)
from .stats import TaskStats

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    # numpy (which the task contract needs) must not load when the store is imported: a worker
    # sizes numpy's BLAS threads from the environment it sets only after its imports
    from ..tasks import JobSpec


class JobRecords(StoreBase):
    def create_job(
        self,
        job_id: str,
        tenant: str,
        backend: str,
        spec: JobSpec,
        data: dict[str, bytes],
        tasks_total: int,
        queue: str = "",
        shots: int = 0,
        pipe: Any = None,
        tags: dict[str, str] | None = None,
    ) -> dict[str, str]:
        """Write a new job; within ``pipe`` (executed by the caller, with the job's tasks) if given.
        Returns its record's fields as a read gives them (``created_at`` among them), less its spec."""
        now = time.time()
        k = self.keys
        own = pipe is None
        pipe = self.redis.pipeline(transaction=True) if own else pipe
        pipe.hset(k.job_data(job_id), mapping=data)  # type: ignore[arg-type]
        pipe.expire(k.job_data(job_id), self.ttl_s)
        record = {
            "tenant": tenant,
            "backend": backend,
            "status": "queued",
            "created_at": repr(now),
            "tasks_total": str(tasks_total),
            "queue": queue,
            "tags": json.dumps(tags or {}, separators=(",", ":")),
        }
        pipe.hset(k.job(job_id), mapping={**record, "spec": spec.to_json()})
        pipe.expire(k.job(job_id), self.ttl_s)
        pipe.zadd(k.tenant_jobs(tenant), {job_id: now})
        pipe.expire(k.tenant_jobs(tenant), self.ttl_s)
        pipe.sadd(k.tenant_inflight(tenant), job_id)
        pipe.zadd(k.all_jobs, {job_id: now})
        pipe.hincrby(k.counters, "jobs_submitted", 1)
        hour = usage_hour(now)
        pipe.hincrby(k.usage(tenant), f"{hour}|jobs", 1)
        pipe.hincrby(k.usage(tenant), f"{hour}|shots", int(shots))
        pipe.expire(k.usage(tenant), 8 * 86400)
        if own:
            pipe.execute()
        return record

    def job(self, job_id: str) -> dict[str, str] | None:
        raw = self.redis.hgetall(self.keys.job(job_id))
        if not raw:
            return None
        return {k.decode(): v.decode() for k, v in raw.items()}  # type: ignore[union-attr]

    def job_field(self, job_id: str, name: str) -> str | None:
        value = self.redis.hget(self.keys.job(job_id), name)
        return None if value is None else value.decode()  # type: ignore[union-attr]

    def job_fields(self, job_id: str, names: list[str]) -> list[str | None]:
        values = self.redis.hmget(self.keys.job(job_id), names)
        return [None if v is None else v.decode() for v in values]  # type: ignore[union-attr]

    def begin_task(
        self, job_id: str, names: list[str], spec: bool = True, data: bool = False
    ) -> tuple[list[str | None], bool, str | None, dict[str, bytes] | None]:
        """What a worker does before a task, in one round trip: read the job's named fields,
        whether its backend is paused, (if asked) its spec as JSON and, for a job of one task,
        its whole payload (``data``: that task needs all of it); and mark a queued job running,
        unless its backend is paused."""
        keys, args = self._begin_call(job_id, names, spec, data)
        return self.begun(self._begin(keys=keys, args=args))

    def queue_begin(self, pipe: Any, job_id: str, names: list[str], spec: bool = True, data: bool = False) -> None:
        """:meth:`begin_task` as one command of the caller's pipeline; :meth:`begun` reads its reply."""
        keys, args = self._begin_call(job_id, names, spec, data)
        # EVAL, not the registered script: a pipeline would first ask whether it is loaded
        pipe.eval(scripts.BEGIN_TASK, len(keys), *keys, *args)

    def _begin_call(self, job_id: str, names: list[str], spec: bool, data: bool) -> tuple[list[str], list[Any]]:
        keys = [self.keys.job(job_id), self.keys.paused, self.keys.job_data(job_id)]
        return keys, [repr(time.time()), int(spec), int(data), *names]

    def begun(self, reply: Any) -> tuple[list[str | None], bool, str | None, dict[str, bytes] | None]:
        """The begin script's reply as :meth:`begin_task` returns it."""
        fields, paused, raw, payload = reply
        return (
            [None if v is None else v.decode() for v in fields],
            bool(paused),
            raw.decode() if raw else None,
            {k.decode(): v for k, v in self.hash_reply(payload).items()} if payload else None,
        )

    def spec(self, job_id: str) -> JobSpec | None:
        from ..tasks import JobSpec

        raw = self.job_field(job_id, "spec")
        return None if raw is None else JobSpec.from_json(raw)

    def tasks_done(self, job_id: str) -> int:
        return int(self.redis.scard(self.keys.job_done(job_id)))

    def done_tasks(self, job_id: str) -> set[int]:
        return {int(t) for t in self.redis.smembers(self.keys.job_done(job_id))}  # type: ignore[union-attr]

    def job_rows(self, job_ids: list[str], fields: list[str]) -> list[tuple[str, dict[str, str | None], int]]:
        """(id, the named fields, tasks done) of each job that still exists, in one round trip."""
        pipe = self.redis.pipeline()
        for job_id in job_ids:
            pipe.hmget(self.keys.job(job_id), fields)
            pipe.scard(self.keys.job_done(job_id))
        replies = pipe.execute()
        rows = []
        for job_id, values, done in zip(job_ids, replies[0::2], replies[1::2]):
            if values[0] is not None:
                rows.append((job_id, dict(zip(fields, (None if v is None else v.decode() for v in values))), int(done)))
        return rows

    def tenant_job_ids(
        self, tenant: str, count: int, after: tuple[float, str] | None = None, since: float | None = None
    ) -> list[tuple[str, float]]:
        """Up to ``count`` (id, created) of a tenant's jobs, newest first: those that come after the
        position ``after`` (created, id) in that order, created at or after ``since``. Jobs created
        in the same instant come in descending id order, as Redis ranks equal scores."""
        key = self.keys.tenant_jobs(tenant)
        self.redis.zremrangebyscore(key, "-inf", time.time() - self.ttl_s)  # their records have expired
        high = "+inf" if after is None else repr(after[0])
        low = "-inf" if since is None else repr(since)
        found: list[tuple[str, float]] = []
        offset = 0
        while len(found) < count:
            batch: list[tuple[bytes, float]] = self.redis.zrevrangebyscore(  # type: ignore[assignment]
                key, high, low, start=offset, num=count, withscores=True
            )
            if not batch:
                break
            offset += len(batch)
            for member, score in batch:
                job_id = member.decode()
                if after is not None and score == after[0] and job_id >= after[1]:
                    continue  # at or before the position: on an earlier page
                found.append((job_id, float(score)))
        return found[:count]

    def data(self, job_id: str, fields: list[str]) -> list[bytes | None]:
        return self.redis.hmget(self.keys.job_data(job_id), fields)  # type: ignore[return-value]

    def results(self, job_id: str) -> dict[int, bytes]:
        raw = self.redis.hgetall(self.keys.job_results(job_id))
        return {int(k): v for k, v in raw.items()}  # type: ignore[misc]

    def mark_started(self, job_id: str) -> None:
        self._started(keys=[self.keys.job(job_id)], args=[repr(time.time())])

    def complete_task(
        self,
        job_id: str,
        task: int,
        result: bytes,
        stats: TaskStats | None = None,
        meta: dict[str, Any] | None = None,
        cache: CacheWrite | None = None,
        whole: bool = False,
        lease: str | None = None,
        costs: dict[str, float] | None = None,
    ) -> int:
        """Store a task's result; -1 dropped (job final), 0 duplicate, 1 counted, 2 job done.

        In the same round trip, first its metadata (``meta``) and its chunks for the result
        cache (``cache``): a job submitted once this one is done finds them. ``stats`` feed
        /metrics, the dashboard's charts and tenant usage, once per distinct task. ``whole``:
        this result is its job's whole result (one task, no metadata); if it is small
        (EVENT_RESULT_BYTES), the job's done event carries it. ``lease``: the task's lease,
        dropped in the same round trip, after the result. ``costs``: CPU seconds a row of each
        learned-price work took (``planner.cost_key``), kept for the tenant's next jobs.
        """
        k = self.keys
        s = stats or TaskStats()
        now = time.time()
        record = json.dumps(
            {
                "t": round(now, 3),
                "job": job_id,
                "task": task,
                "backend": s.backend,
                "tenant": s.tenant,
                "seconds": round(s.seconds, 6),
                "wait": round(s.wait, 6),
                "circuits": s.circuits,
            }
        )
        pipe = self.redis.pipeline(transaction=False)
        if cache is not None:
            self.queue_cache_writes(pipe, cache)
        if meta:
            pipe.hset(k.job_meta(job_id), str(task), json.dumps(meta))
            pipe.expire(k.job_meta(job_id), self.ttl_s)
        if costs:
            self.queue_cost_writes(pipe, s.tenant, s.backend, costs)
        keys = [
            k.job(job_id),
            k.job_done(job_id),
            k.job_results(job_id),
            k.counters,
            k.circuits,
            k.task_seconds,
            k.recent_tasks,
            k.usage(s.tenant),
            k.task_seconds_by_backend,
        ]
        args: list[Any] = [
            task,
            result,
            self.ttl_s,
            repr(now),
            k.events,
            job_id,
            s.circuits,
            f"{s.backend}|{s.tenant}",
            histogram_bucket(s.seconds),
            repr(s.seconds),
            record,
            usage_hour(now),
            s.backend,
            "1" if whole and not meta and len(result) <= EVENT_RESULT_BYTES else "0",
        ]
        # EVAL, not the registered script: a pipeline would first ask whether it is loaded
        pipe.eval(scripts.COMPLETE_TASK, len(keys), *keys, *args)
        if lease is not None:
            pipe.zrem(k.leases, lease)
        replies = pipe.execute(raise_on_error=False)
        outcome = replies[-2 if lease is not None else -1]
        if isinstance(outcome, Exception):
            raise outcome
        for reply in replies:  # the cache, metadata, costs and lease at best: the result is what counts
            if isinstance(reply, Exception) and reply is not outcome:
                log.warning("task %s of job %s: a cache, metadata, cost or lease write failed: %s", task, job_id, reply)
        return int(outcome)

    def task_meta(self, job_id: str) -> dict[int, dict[str, Any]]:
        raw = self.redis.hgetall(self.keys.job_meta(job_id))
        return {int(k): json.loads(v) for k, v in raw.items()}  # type: ignore[union-attr]

    def set_paused(self, backend: str, paused: bool) -> None:
        (self.redis.sadd if paused else self.redis.srem)(self.keys.paused, backend)

    def paused(self) -> set[str]:
        return {b.decode() for b in self.redis.smembers(self.keys.paused)}  # type: ignore[union-attr]

    def is_paused(self, backend: str) -> bool:
        return bool(self.redis.sismember(self.keys.paused, backend))

    def reopen(self, job_id: str) -> bool:
        """A failed job back to running, its retry counts cleared; False if it was not failed."""
        return bool(self._reopen(keys=[self.keys.job(job_id), self.keys.job_attempts(job_id)]))

    def finish(self, job_id: str, status: str, code: str = "", message: str = "") -> bool:
        error = json.dumps({"code": code, "message": message}) if code else ""
        return bool(
            self._finish(
                keys=[self.keys.job(job_id), self.keys.counters],
                args=[status, repr(time.time()), error, self.keys.events, job_id],
            )
        )

"""Every Redis key, channel, queue name and TTL of qfleet lives here, and nothing else
formats them. Payload blobs are raw bytes under our own keys; RQ only ever carries ids.

Per job (``{p}`` is the deployment's key prefix):

- ``{p}:job:{id}``        hash: tenant, backend, status, timestamps, tasks_total, spec, error
- ``{p}:job:{id}:data``   hash: per PUB ``c{i}`` circuit QPY, ``p{i}`` float64 parameter rows,
                          ``o{i}`` observables JSON, ``x{i}`` int64 (observable, row) pairs
- ``{p}:job:{id}:done``   set of finished task indices (completion counts distinct tasks)
- ``{p}:job:{id}:res``    hash: task index -> result slice bytes
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from redis import Redis

from .tasks import JobSpec

EVENTS_CHANNEL = "events"
JOB_TTL_S = 24 * 3600
IDEMPOTENCY_TTL_S = 24 * 3600
LANES = ("high", "normal", "low")

# Token bucket per tenant: returns 0 when a request may go, else seconds until it may.
_RATE = """
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return tostring(wait)
"""

# Marks a task done once, and the job done when the last distinct task lands. A result
# for a job that is already cancelled or failed is dropped: late results never count.
_COMPLETE_TASK = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'cancelled' or status == 'failed' or not status then return -1 end
-- a late duplicate (a worker stopped past its lease) never rewrites a slice already counted
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
local added = redis.call('SADD', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[3])
if added == 0 then return 0 end
-- statistics, counted once per distinct task: KEYS[4] counters, KEYS[5] circuits by
-- backend|tenant, KEYS[6] task-seconds histogram, KEYS[7] recent tasks, KEYS[8] tenant usage
redis.call('HINCRBY', KEYS[4], 'tasks_done', 1)
redis.call('HINCRBY', KEYS[5], ARGV[8], ARGV[7])
redis.call('HINCRBY', KEYS[6], ARGV[9], 1)
redis.call('HINCRBY', KEYS[6], 'count', 1)
redis.call('HINCRBYFLOAT', KEYS[6], 'sum', ARGV[10])
redis.call('LPUSH', KEYS[7], ARGV[11])
redis.call('LTRIM', KEYS[7], 0, 4999)
redis.call('HINCRBY', KEYS[8], ARGV[12] .. '|circuits', ARGV[7])
redis.call('HINCRBYFLOAT', KEYS[8], ARGV[12] .. '|seconds', ARGV[10])
redis.call('EXPIRE', KEYS[8], 8 * 86400)
local n = redis.call('SCARD', KEYS[2])
if n >= tonumber(redis.call('HGET', KEYS[1], 'tasks_total')) and status ~= 'done' then
  redis.call('HSET', KEYS[1], 'status', 'done', 'finished_at', ARGV[4])
  redis.call('HINCRBY', KEYS[4], 'jobs_done', 1)
  redis.call('PUBLISH', ARGV[5], ARGV[6] .. ' done')
  return 2
end
redis.call('PUBLISH', ARGV[5], ARGV[6] .. ' progress')
return 1
"""

# Takes the first task of the first non-empty queue and leases it in the same step, so a
# worker killed at any instant leaves each task either queued or leased, never neither.
# KEYS: leases, then n queues, then their n bells; ARGV: lease deadline, holder, n.
_TAKE = """
local n = tonumber(ARGV[3])
for i = 1, n do
  local id = redis.call('LPOP', KEYS[1 + i])
  if id then
    redis.call('LPOP', KEYS[1 + n + i])
    redis.call('ZADD', KEYS[1], ARGV[1], id .. '|' .. ARGV[2])
    return {KEYS[1 + i], id}
  end
end
for i = 1, n do redis.call('DEL', KEYS[1 + n + i]) end
return false
"""

# A failed job whose failed tasks an admin re-queues runs again; its done tasks stay done.
_REOPEN = """
if redis.call('HGET', KEYS[1], 'status') ~= 'failed' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'running')
redis.call('HDEL', KEYS[1], 'error', 'finished_at')
redis.call('DEL', KEYS[2])
return 1
"""

# A counting semaphore with expiring holders: at most ARGV[1] at once.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[3])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2])
  return 1
end
return 0
"""

_MARK_STARTED = """
if redis.call('HGET', KEYS[1], 'status') == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1])
  return 1
end
return 0
"""

# Moves a job that is not yet final to a final status; returns 1 if it did.
_FINISH = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'done' or status == 'failed' or status == 'cancelled' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finished_at', ARGV[2], 'error', ARGV[3])
redis.call('HINCRBY', KEYS[2], 'jobs_' .. ARGV[1], 1)
redis.call('PUBLISH', ARGV[4], ARGV[5] .. ' ' .. ARGV[1])
return 1
"""


TASK_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def histogram_bucket(seconds: float) -> str:
    """The upper bound (Prometheus ``le``) of the histogram bucket a duration falls in."""
    for bound in TASK_SECONDS_BUCKETS:
        if seconds <= bound:
            return repr(bound)
    return "+Inf"


def usage_hour(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H", time.gmtime(timestamp))


@dataclass(frozen=True)
class TaskStats:
    backend: str = ""
    tenant: str = ""
    seconds: float = 0.0
    wait: float = 0.0
    circuits: int = 0


@dataclass(frozen=True)
class ApiKey:
    tenant: str
    role: str
    prefix: str
    created_at: float


class Keys:
    """Key names. The only place that formats them."""

    def __init__(self, prefix: str) -> None:
        self.p = prefix

    def job(self, job_id: str) -> str:
        return f"{self.p}:job:{job_id}"

    def job_data(self, job_id: str) -> str:
        return f"{self.p}:job:{job_id}:data"

    def job_done(self, job_id: str) -> str:
        return f"{self.p}:job:{job_id}:done"

    def job_results(self, job_id: str) -> str:
        return f"{self.p}:job:{job_id}:res"

    def tenant_jobs(self, tenant: str) -> str:
        return f"{self.p}:tenant:{tenant}:jobs"

    @property
    def api_keys(self) -> str:
        return f"{self.p}:apikeys"

    @property
    def events(self) -> str:
        return f"{self.p}:{EVENTS_CHANNEL}"

    def queue(self, backend: str, lane: str = "normal") -> str:
        """RQ queue name of a backend's priority lane (RQ adds its own ``rq:queue:`` prefix)."""
        return f"{self.p}.{backend}.{lane}"

    @property
    def all_jobs(self) -> str:
        return f"{self.p}:jobs"

    @property
    def counters(self) -> str:
        return f"{self.p}:counters"

    @property
    def circuits(self) -> str:
        return f"{self.p}:circuits"

    @property
    def task_seconds(self) -> str:
        return f"{self.p}:task_seconds"

    @property
    def recent_tasks(self) -> str:
        return f"{self.p}:recent_tasks"

    @property
    def audit(self) -> str:
        return f"{self.p}:audit"

    @property
    def paused(self) -> str:
        return f"{self.p}:paused"

    def usage(self, tenant: str) -> str:
        return f"{self.p}:usage:{tenant}"

    def job_meta(self, job_id: str) -> str:
        return f"{self.p}:job:{job_id}:meta"

    def device_slots(self, device: str) -> str:
        return f"{self.p}:device:{device}:slots"

    def job_attempts(self, job_id: str) -> str:
        return f"{self.p}:job:{job_id}:attempts"

    @property
    def leases(self) -> str:
        """Sorted set of taken tasks ``{rq job id}|{worker}``, scored by the time their lease runs out."""
        return f"{self.p}:leases"

    def bell(self, queue_name: str) -> str:
        """A list of tokens, one per task put on a queue: idle workers block on it, not on the queue."""
        return f"{self.p}:bell:{queue_name}"

    def tenant_inflight(self, tenant: str) -> str:
        return f"{self.p}:tenant:{tenant}:inflight"

    def tenant_limits(self, tenant: str) -> str:
        return f"{self.p}:tenant:{tenant}:limits"

    def tenant_rate(self, tenant: str) -> str:
        return f"{self.p}:tenant:{tenant}:rate"

    def idempotency(self, tenant: str, key: str) -> str:
        return f"{self.p}:idem:{tenant}:{hashlib.sha256(key.encode()).hexdigest()[:32]}"

    def rq_job_id(self, job_id: str, task: int) -> str:
        return f"{job_id}_t{task}"

    @staticmethod
    def task_of(rq_job_id: str) -> tuple[str, int]:
        """(job id, task) of an RQ job id made by :meth:`rq_job_id`, with or without a re-queue suffix."""
        job_id, _, rest = rq_job_id.rpartition("_t")
        return job_id, int(rest.split("_", 1)[0])

    def rq_job_prefix(self, job_id: str) -> str:
        """What every RQ job id of this job's tasks starts with, whatever suffix it was queued with."""
        return f"{job_id}_t"

    def backend_of_queue(self, queue_name: str) -> str:
        """The backend whose lane ``queue_name`` is (the inverse of :meth:`queue`)."""
        return queue_name[len(self.p) + 1 :].rsplit(".", 1)[0]

    def session(self, digest: str) -> str:
        """A dashboard session, by the SHA-256 of its id (the id itself lives only in the cookie)."""
        return f"{self.p}:session:{digest}"

    @property
    def failures(self) -> str:
        """List of the latest task failures (JSON, newest first), with tracebacks."""
        return f"{self.p}:failures"

    def job_failures(self, job_id: str) -> str:
        return f"{self.p}:job:{job_id}:failures"

    @property
    def tasks_failed(self) -> str:
        """Hash ``backend|tenant|reason`` -> tasks failed for good (after their retries)."""
        return f"{self.p}:tasks_failed"

    @property
    def task_seconds_by_backend(self) -> str:
        """Hash ``backend|le`` (and ``backend|sum``, ``backend|count``) -> task-time histogram."""
        return f"{self.p}:task_seconds_by_backend"

    @property
    def http_requests(self) -> str:
        """Hash ``method|route|status|le`` (and ``|sum``, ``|count``) -> request-latency histogram."""
        return f"{self.p}:http_requests"


def connect(settings: Any) -> Redis:
    """The Redis client of this deployment: the URL's server, or the master Sentinel names."""
    if settings.redis_sentinels:
        from redis.sentinel import Sentinel

        nodes = [(h, int(p)) for h, _, p in (n.strip().rpartition(":") for n in settings.redis_sentinels.split(","))]
        return Sentinel(nodes, socket_timeout=5).master_for(  # type: ignore[no-any-return]
            settings.redis_sentinel_master, socket_timeout=30, **_master_auth(settings.redis_url)
        )
    return Redis.from_url(settings.redis_url, health_check_interval=10)


def connect_async(settings: Any) -> Any:
    """The asyncio twin of :func:`connect`, for the API's event subscription."""
    from redis.asyncio import Redis as AsyncRedis

    if settings.redis_sentinels:
        from redis.asyncio.sentinel import Sentinel as AsyncSentinel

        nodes = [(h, int(p)) for h, _, p in (n.strip().rpartition(":") for n in settings.redis_sentinels.split(","))]
        return AsyncSentinel(nodes, socket_timeout=5).master_for(
            settings.redis_sentinel_master, **_master_auth(settings.redis_url)
        )
    return AsyncRedis.from_url(settings.redis_url)


def _master_auth(url: str) -> dict[str, Any]:
    """Under Sentinel the master's user and password come from QFLEET_REDIS_URL (its host is ignored)."""
    parts = urlsplit(url)
    auth = {"username": unquote(parts.username or ""), "password": unquote(parts.password or "")}
    return {k: v for k, v in auth.items() if v}


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Store:
    """Job records, payload blobs, results and API keys in Redis (binary-safe connection)."""

    def __init__(self, redis: Redis, prefix: str = "qfleet", ttl_s: int = JOB_TTL_S) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self.ttl_s = ttl_s
        self._complete = redis.register_script(_COMPLETE_TASK)
        self._started = redis.register_script(_MARK_STARTED)
        self._finish = redis.register_script(_FINISH)
        self._rate = redis.register_script(_RATE)
        self._reopen = redis.register_script(_REOPEN)
        self._acquire = redis.register_script(_ACQUIRE)
        self._take = redis.register_script(_TAKE)

    # -- jobs -----------------------------------------------------------------
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
    ) -> float:
        """Write a new job; within ``pipe`` (executed by the caller, with the job's tasks) if given."""
        now = time.time()
        k = self.keys
        own = pipe is None
        pipe = self.redis.pipeline(transaction=True) if own else pipe
        pipe.hset(k.job_data(job_id), mapping=data)  # type: ignore[arg-type]
        pipe.expire(k.job_data(job_id), self.ttl_s)
        pipe.hset(
            k.job(job_id),
            mapping={
                "tenant": tenant,
                "backend": backend,
                "status": "queued",
                "created_at": repr(now),
                "tasks_total": tasks_total,
                "queue": queue,
                "spec": spec.to_json(),
            },
        )
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
        return now

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

    def spec(self, job_id: str) -> JobSpec | None:
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

    def ping(self) -> bool:
        return bool(self.redis.ping())

    def transaction(self) -> Any:
        """A MULTI/EXEC pipeline, for writes that must land together (a job and its tasks)."""
        return self.redis.pipeline(transaction=True)

    def memory(self) -> tuple[int, int]:
        """(bytes used, maxmemory; 0 when uncapped) of the Redis server."""
        info = self.redis.info("memory")
        return int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))

    def data(self, job_id: str, fields: list[str]) -> list[bytes | None]:
        return self.redis.hmget(self.keys.job_data(job_id), fields)  # type: ignore[return-value]

    def results(self, job_id: str) -> dict[int, bytes]:
        raw = self.redis.hgetall(self.keys.job_results(job_id))
        return {int(k): v for k, v in raw.items()}  # type: ignore[misc]

    # -- task lifecycle (workers) -----------------------------------------------
    def mark_started(self, job_id: str) -> None:
        self._started(keys=[self.keys.job(job_id)], args=[repr(time.time())])

    def complete_task(self, job_id: str, task: int, result: bytes, stats: TaskStats | None = None) -> int:
        """Store a task's result; -1 dropped (job final), 0 duplicate, 1 counted, 2 job done.

        ``stats`` feed /metrics, the dashboard's charts and tenant usage, once per distinct task.
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
        return int(
            self._complete(
                keys=[
                    k.job(job_id),
                    k.job_done(job_id),
                    k.job_results(job_id),
                    k.counters,
                    k.circuits,
                    k.task_seconds,
                    k.recent_tasks,
                    k.usage(s.tenant),
                ],
                args=[
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
                ],
            )
        )

    def set_task_meta(self, job_id: str, task: int, meta: dict[str, Any]) -> None:
        key = self.keys.job_meta(job_id)
        pipe = self.redis.pipeline()
        pipe.hset(key, str(task), json.dumps(meta))
        pipe.expire(key, self.ttl_s)
        pipe.execute()

    def task_meta(self, job_id: str) -> dict[int, dict[str, Any]]:
        raw = self.redis.hgetall(self.keys.job_meta(job_id))
        return {int(k): json.loads(v) for k, v in raw.items()}  # type: ignore[union-attr]

    def device_slot(self, device: str, limit: int, hold_s: float = 600.0) -> Any:
        """A context manager: wait for one of ``limit`` slots of a device (a QPU runs one batch at a time)."""
        store = self

        class Slot:
            def __enter__(self) -> None:
                self.holder = uuid.uuid4().hex
                while True:
                    now = time.time()
                    if store._acquire(
                        keys=[store.keys.device_slots(device)], args=[limit, self.holder, now, now + hold_s]
                    ):
                        return
                    time.sleep(0.02)

            def __exit__(self, *exc: object) -> None:
                store.redis.zrem(store.keys.device_slots(device), self.holder)

        return Slot()

    # -- statistics ---------------------------------------------------------------
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

    # -- leases: finding tasks whose worker died ---------------------------------
    # A lease is taken by the same script that pops the task (take_task), renewed by the worker
    # while it holds the task, and dropped when the task ends. One that lapses means the worker
    # died or stalled with the task: the API's reaper puts the task back.
    def take_task(
        self, queue_keys: list[str], queue_names: list[str], holder: str, seconds: float
    ) -> tuple[str, str, str] | None:
        """Pop the first task of the first non-empty queue and lease it atomically.

        Returns (queue key, RQ job id, lease), or None when every queue is empty."""
        bells = [self.keys.bell(q) for q in queue_names]
        got = self._take(
            keys=[self.keys.leases, *queue_keys, *bells], args=[time.time() + seconds, holder, len(queue_keys)]
        )
        if not got:
            return None
        queue_key, rq_id = (v.decode() if isinstance(v, bytes) else v for v in got)
        return queue_key, rq_id, f"{rq_id}|{holder}"

    def wait_bell(self, queue_names: list[str], timeout: float) -> bool:
        """Block until a task is put on one of these queues (or ``timeout`` passes)."""
        return self.redis.blpop([self.keys.bell(q) for q in queue_names], timeout) is not None

    def ring(self, pipe: Any, queue_name: str, tasks: int) -> None:
        """One bell token per task enqueued, in the enqueueing pipeline."""
        if tasks:
            pipe.rpush(self.keys.bell(queue_name), *([1] * tasks))

    def take_lease(self, job_id: str, task: int, seconds: float, holder: str = "direct") -> str:
        """Lease a task run outside :meth:`take_task` (in-process runs); returns the lease."""
        lease = f"{self.keys.rq_job_id(job_id, task)}|{holder}"
        self.redis.zadd(self.keys.leases, {lease: time.time() + seconds})
        return lease

    def renew_lease(self, lease: str, seconds: float) -> bool:
        """Push a held lease's deadline on; False if it is gone (lapsed and taken by the reaper)."""
        return bool(self.redis.zadd(self.keys.leases, {lease: time.time() + seconds}, xx=True, ch=True))

    def drop_lease(self, lease: str) -> None:
        self.redis.zrem(self.keys.leases, lease)

    def expired_leases(self, now: float | None = None) -> list[str]:
        members = self.redis.zrangebyscore(self.keys.leases, 0, now if now is not None else time.time())
        return [m.decode() for m in members]  # type: ignore[union-attr]

    def leases(self) -> dict[str, float]:
        """Every lease held now, with its deadline."""
        pairs: Any = self.redis.zrange(self.keys.leases, 0, -1, withscores=True)
        return {m.decode(): float(score) for m, score in pairs}

    def lease_task(self, lease: str) -> tuple[str, int]:
        """(job id, task) a lease is for."""
        return self.keys.task_of(lease.rpartition("|")[0])

    def claim_expired(self, lease: str) -> bool:
        """True for exactly one caller: the one whose ZREM removed the lapsed lease."""
        return bool(self.redis.zrem(self.keys.leases, lease))

    def task_done(self, job_id: str, task: int) -> bool:
        return bool(self.redis.sismember(self.keys.job_done(job_id), str(task)))

    def bump_attempts(self, job_id: str, task: int) -> int:
        key = self.keys.job_attempts(job_id)
        pipe = self.redis.pipeline()
        pipe.hincrby(key, str(task), 1)
        pipe.expire(key, self.ttl_s)
        return int(pipe.execute()[0])

    def attempts(self, job_id: str) -> dict[int, int]:
        raw = self.redis.hgetall(self.keys.job_attempts(job_id))
        return {int(k): int(v) for k, v in raw.items()}  # type: ignore[union-attr]

    # -- tenants: in-flight work, rate, limits, idempotent submission ----------------
    def inflight(self, tenant: str) -> tuple[int, int]:
        """(jobs, tasks) of this tenant not yet final; final jobs are pruned as they are seen."""
        key = self.keys.tenant_inflight(tenant)
        job_ids = [j.decode() for j in self.redis.smembers(key)]  # type: ignore[union-attr]
        if not job_ids:
            return 0, 0
        pipe = self.redis.pipeline()
        for job_id in job_ids:
            pipe.hmget(self.keys.job(job_id), ["status", "tasks_total"])
            pipe.scard(self.keys.job_done(job_id))
        replies = pipe.execute()
        jobs = tasks = 0
        finished = []
        for job_id, (status, total), done in zip(job_ids, replies[0::2], replies[1::2]):
            if status is None or status.decode() in ("done", "failed", "cancelled"):
                finished.append(job_id)
                continue
            jobs += 1
            tasks += int(total) - int(done)
        if finished:
            self.redis.srem(key, *finished)
        return jobs, tasks

    def rate_wait(self, tenant: str, per_second: float, burst: int) -> float:
        return float(self._rate(keys=[self.keys.tenant_rate(tenant)], args=[per_second, burst, repr(time.time())]))

    def tenant_limits(self, tenant: str) -> dict[str, Any]:
        raw = self.redis.get(self.keys.tenant_limits(tenant))
        return {} if raw is None else json.loads(raw)  # type: ignore[arg-type]

    def set_tenant_limits(self, tenant: str, limits: dict[str, Any]) -> None:
        self.redis.set(self.keys.tenant_limits(tenant), json.dumps(limits))

    def claim_idempotency(self, tenant: str, key: str, job_id: str) -> str | None:
        """Bind ``key`` to ``job_id``; returns the job id it was already bound to, if any."""
        name = self.keys.idempotency(tenant, key)
        if self.redis.set(name, job_id, nx=True, ex=IDEMPOTENCY_TTL_S):
            return None
        existing = self.redis.get(name)
        if existing is None or self.job(existing.decode()) is None:  # type: ignore[union-attr]
            self.redis.set(name, job_id, ex=IDEMPOTENCY_TTL_S)  # bound to a job never created
            return None
        return existing.decode()  # type: ignore[union-attr]

    # -- API keys ---------------------------------------------------------------
    def add_api_key(self, key: str, tenant: str, role: str) -> ApiKey:
        record = ApiKey(tenant=tenant, role=role, prefix=key[:10], created_at=time.time())
        self.redis.hset(self.keys.api_keys, hash_api_key(key), json.dumps(record.__dict__))
        return record

    def api_key(self, key: str) -> ApiKey | None:
        raw = self.redis.hget(self.keys.api_keys, hash_api_key(key))
        return None if raw is None else ApiKey(**json.loads(raw))

    def api_keys(self) -> dict[str, ApiKey]:
        raw = self.redis.hgetall(self.keys.api_keys)
        return {h.decode(): ApiKey(**json.loads(v)) for h, v in raw.items()}  # type: ignore[union-attr]

    def revoke_api_key(self, key_hash_or_prefix: str) -> int:
        gone = [h for h, rec in self.api_keys().items() if h == key_hash_or_prefix or rec.prefix == key_hash_or_prefix]
        return int(self.redis.hdel(self.keys.api_keys, *gone)) if gone else 0

    # -- dashboard, failures, metrics (appended; see Keys for the names) -----------
    def api_key_by_hash(self, digest: str) -> ApiKey | None:
        raw = self.redis.hget(self.keys.api_keys, digest)
        return None if raw is None else ApiKey(**json.loads(raw))

    def create_session(self, session_id: str, record: dict[str, Any], ttl_s: int) -> None:
        self.redis.set(self.keys.session(hash_api_key(session_id)), json.dumps(record), ex=ttl_s)

    def session(self, session_id: str) -> dict[str, Any] | None:
        raw = self.redis.get(self.keys.session(hash_api_key(session_id)))
        return None if raw is None else json.loads(raw)  # type: ignore[arg-type]

    def drop_session(self, session_id: str) -> None:
        self.redis.delete(self.keys.session(hash_api_key(session_id)))

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

    def observe_task_seconds(self, backend: str, seconds: float) -> None:
        key = self.keys.task_seconds_by_backend
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(key, f"{backend}|{histogram_bucket(seconds)}", 1)
        pipe.hincrby(key, f"{backend}|count", 1)
        pipe.hincrbyfloat(key, f"{backend}|sum", seconds)
        pipe.execute()

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

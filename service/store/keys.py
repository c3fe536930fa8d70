"""Every Redis key, channel, queue name and TTL of qfleet, and the connection: the only
place that formats a key name. Payload blobs are raw bytes under our own keys; RQ only ever
carries ids.

Per job (``{p}`` is the deployment's key prefix):

- ``{p}:job:{id}``        hash: tenant, backend, status, timestamps, tasks_total, spec, error, tags (JSON)
- ``{p}:job:{id}:data``   hash: per PUB ``c{i}`` circuit QPY, ``p{i}`` float64 parameter rows,
                          ``o{i}`` observables JSON, ``x{i}`` int64 (observable, row) pairs;
                          ``layout`` JSON, when the client stacked PUBs
- ``{p}:tenant:{t}:jobs`` sorted set: the tenant's job ids by creation time (listing, newest first)
- ``{p}:job:{id}:done``   set of finished task indices (completion counts distinct tasks)
- ``{p}:job:{id}:res``    hash: task index -> result slice bytes

Across jobs, expiring after the result-cache TTL (see ``service/store/cache.py``):

- ``{p}:cache:{tenant}:{digest}``      one computed chunk of results
- ``{p}:cache:{tenant}:job:{digest}``  hash: a whole job's result slices ``r{task}``, task metadata ``m{task}``

Per tenant and device backend, expiring a day after the last write:

- ``{p}:cost:{tenant}:{backend}``      hash: ``planner.cost_key`` -> CPU seconds a row took (learned prices)
"""

from __future__ import annotations

import hashlib
import time
from typing import Any
from urllib.parse import unquote, urlsplit

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

EVENTS_CHANNEL = "events"
EVENT_RESULT_BYTES = 16 * 1024  # a one-task job's result up to this size comes with its done event
JOB_TTL_S = 24 * 3600
IDEMPOTENCY_TTL_S = 24 * 3600
COST_TTL_S = 24 * 3600
LANES = ("high", "normal", "low")

TASK_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def histogram_bucket(seconds: float) -> str:
    """The upper bound (Prometheus ``le``) of the histogram bucket a duration falls in."""
    for bound in TASK_SECONDS_BUCKETS:
        if seconds <= bound:
            return repr(bound)
    return "+Inf"


def usage_hour(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H", time.gmtime(timestamp))


class Keys:
    """Key names. The only place that formats them."""

    def __init__(self, prefix: str) -> None:
        self.p = prefix

    def job(self, job_id: str) -> str:
        return f"{self.job_prefix}{job_id}"

    @property
    def job_prefix(self) -> str:
        """A job record's key less the job's id (for scripts that find jobs by id)."""
        return f"{self.p}:job:"

    # a job's done set: its record's key and this (job_done)
    DONE_SUFFIX = ":done"

    def job_data(self, job_id: str) -> str:
        return f"{self.p}:job:{job_id}:data"

    def job_done(self, job_id: str) -> str:
        return f"{self.job(job_id)}{self.DONE_SUFFIX}"

    def job_results(self, job_id: str) -> str:
        return f"{self.p}:job:{job_id}:res"

    def result_cache(self, tenant: str, digest: str) -> str:
        """One chunk of results, by the SHA-256 of what it was computed from (the tenant included)."""
        return f"{self.p}:cache:{tenant}:{digest}"

    def job_cache(self, tenant: str, digest: str) -> str:
        """A whole job's results, by the SHA-256 of the job (``qfleet_server.result_cache.job_digest``)."""
        return f"{self.p}:cache:{tenant}:job:{digest}"

    def costs(self, tenant: str, backend: str) -> str:
        """Hash: CPU seconds a row of a tenant's device work took, by ``planner.cost_key``."""
        return f"{self.p}:cost:{tenant}:{backend}"

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

    def device_line(self, device: str) -> str:
        """Sorted set: workers waiting for a device slot, by ticket (served in that order)."""
        return f"{self.p}:device:{device}:line"

    def device_seen(self, device: str) -> str:
        """Sorted set: when each waiter for a device last asked (one that stops asking leaves the line)."""
        return f"{self.p}:device:{device}:seen"

    def device_tickets(self, device: str) -> str:
        return f"{self.p}:device:{device}:tickets"

    def job_attempts(self, job_id: str) -> str:
        return f"{self.p}:job:{job_id}:attempts"

    @property
    def leases(self) -> str:
        """Sorted set of taken tasks ``{rq job id}|{worker}``, scored by the time their lease runs out."""
        return f"{self.p}:leases"

    def bell(self, queue_name: str) -> str:
        """A list of tokens, one per task put on a queue: idle workers block on it, not on the queue."""
        return f"{self.p}:bell:{queue_name}"

    def fair_tenants(self, queue_name: str) -> str:
        """Sorted set of the tenants with tasks waiting on a lane queue, scored by the seconds of
        estimated work each has been served (its virtual time): the lowest is served next."""
        return f"{self.p}:fair:{queue_name}:tenants"

    def fair_state(self, queue_name: str) -> str:
        """Hash: tenant -> its virtual time when it last left the lane, and ``*clock`` -> the lane's
        virtual time (a tenant that comes back starts no earlier than it)."""
        return f"{self.p}:fair:{queue_name}:state"

    def fair_cost(self, queue_name: str) -> str:
        """Hash: RQ job id -> estimated seconds, for each task queued through a tenant's sub-queue.
        An id on the RQ queue list without an entry here was put there by RQ itself (a retry)."""
        return f"{self.p}:fair:{queue_name}:cost"

    def fair_tasks(self, queue_name: str, tenant: str) -> str:
        """List: a tenant's queued RQ job ids on a lane, oldest first."""
        return self.fair_tasks_prefix(queue_name) + tenant

    def fair_tasks_prefix(self, queue_name: str) -> str:
        """What :meth:`fair_tasks` puts before the tenant (the take script appends the tenant it picks)."""
        return f"{self.p}:fair:{queue_name}:tasks:"

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


REDIS_OUTAGES: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)
"""What a Redis client raises while its server is away (restarting, loading, unreachable)."""


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

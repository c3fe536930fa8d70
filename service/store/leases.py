"""Leases: which worker holds which task, taken in the step that takes the task off its queue."""

from __future__ import annotations

import time
import uuid
from typing import Any

from . import scripts
from .base import StoreBase

# The least a task is charged: every task costs a worker a round trip, however small its circuit.
MIN_TASK_S = 0.001


class Leases(StoreBase):
    # -- leases: finding tasks whose worker died ---------------------------------
    # A lease is taken by the same script that pops the task (take_task), renewed by the worker
    # while it holds the task, and dropped when the task ends. One that lapses means the worker
    # died or stalled with the task: the API's reaper puts the task back.
    def take_task(
        self, queue_keys: list[str], queue_names: list[str], holder: str, seconds: float, job_prefix: str = ""
    ) -> tuple[str, str, str, dict[bytes, bytes]] | None:
        """Take a task of the first non-empty queue and lease it atomically: within a queue, the
        next task of the tenant served the fewest estimated seconds so far (see scripts.TAKE).

        Returns (queue key, RQ job id, lease, the RQ job's hash under ``job_prefix``, RQ's key
        prefix for jobs: empty if it is gone or no prefix is given), or None when every queue is empty."""
        keys: list[str] = [self.keys.leases]
        for key, name in zip(queue_keys, queue_names):
            keys += [key, self.keys.bell(name), self.keys.fair_tenants(name)]
            keys += [self.keys.fair_state(name), self.keys.fair_cost(name)]
        prefixes = [self.keys.fair_tasks_prefix(name) for name in queue_names]
        got = self._take(keys=keys, args=[time.time() + seconds, holder, len(queue_keys), *prefixes, job_prefix])
        if not got:
            return None
        queue_key, rq_id = (v.decode() if isinstance(v, bytes) else v for v in got[:2])
        return queue_key, rq_id, f"{rq_id}|{holder}", self.hash_reply(got[2])

    def fair_put(self, pipe: Any, queue_name: str, tenant: str, tasks: list[tuple[str, float]]) -> None:
        """In the enqueueing pipeline: RQ job ids just put on a lane's queue list join their
        tenant's sub-queue there, each with its estimated seconds (what the tenant is charged)."""
        if not tasks:
            return
        keys = [self.keys.fair_tenants(queue_name), self.keys.fair_state(queue_name)]
        keys += [self.keys.fair_cost(queue_name), self.keys.fair_tasks(queue_name, tenant)]
        args: list[Any] = [tenant]
        for rq_id, task_s in tasks:
            args += [rq_id, repr(max(float(task_s), MIN_TASK_S))]
        # EVAL, not the registered script: a pipeline would first ask whether it is loaded (a round trip)
        pipe.eval(scripts.FAIR_PUT, len(keys), *keys, *args)

    def fair_forget(self, queue_name: str, rq_ids: list[str]) -> None:
        """Tasks taken off a queue list (a cancelled job's): their sub-queue entries are skipped."""
        if rq_ids:
            self.redis.hdel(self.keys.fair_cost(queue_name), *rq_ids)

    def fair_shares(self, queue_name: str) -> dict[str, float]:
        """The tenants waiting on a lane, with the seconds of estimated work each has been served."""
        pairs: Any = self.redis.zrange(self.keys.fair_tenants(queue_name), 0, -1, withscores=True)
        return {m.decode(): float(score) for m, score in pairs}

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

    def claim_expired(self, lease: str, seconds: float) -> str | None:
        """The reaper's own lease on a lapsed lease's task, for exactly one caller (None for the
        others). The caller drops it once the task is queued again; if it never does, it lapses."""
        mine = f"{lease.rpartition('|')[0]}|reaper"
        got = self._claim(keys=[self.keys.leases], args=[lease, time.time() + seconds, mine])
        return mine if got else None

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

    def device_slot(self, device: str, limit: int, hold_s: float = 600.0, poll_s: float = 0.02) -> Any:
        """A context manager: wait for one of ``limit`` slots of a device (a QPU runs one batch at a
        time). Waiters are served in arrival order, so a long task that takes the slot for each
        chunk of its work gives the device to every worker that asked meanwhile (time slicing)."""
        store = self
        keys = [store.keys.device_slots(device), store.keys.device_line(device)]
        keys += [store.keys.device_seen(device), store.keys.device_tickets(device)]

        class Slot:
            def __enter__(self) -> None:
                self.holder = uuid.uuid4().hex
                while True:
                    now = time.time()
                    stale = now - max(2.0, 50 * poll_s)
                    if store._acquire(keys=keys, args=[limit, self.holder, now, now + hold_s, stale]):
                        return
                    time.sleep(poll_s)

            def __exit__(self, *exc: object) -> None:
                pipe = store.redis.pipeline()
                for key in keys[:3]:  # the slot, or the place in line of a wait cut short
                    pipe.zrem(key, self.holder)
                pipe.execute()

        return Slot()

"""Tenants in Redis: API keys (hashes only), limits, submission rate, in-flight work, idempotent submission."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from .base import StoreBase
from .keys import (
    IDEMPOTENCY_TTL_S,
    hash_api_key,
)


@dataclass(frozen=True)
class ApiKey:
    tenant: str
    role: str
    prefix: str
    created_at: float


@dataclass(frozen=True)
class Reads:
    """What :meth:`Tenants.admit` found for an admitted submission: in-flight jobs and tasks, the
    final ids among them, and whether the idempotency key is now this job's."""

    jobs: int
    tasks: int
    finished: list[str]
    claimed: bool


class Tenants(StoreBase):
    def admit(
        self, tenant: str, per_second: float, burst: int, job_id: str = "", idempotency_key: str | None = None
    ) -> tuple[float, Reads | None]:
        """What a submission asks first, in one round trip: the rate limiter's wait for one more
        submission (0: go ahead) and, if it may go ahead, the tenant's work in flight and a claim
        of ``idempotency_key`` for ``job_id`` (None when it must wait). A key already bound needs
        :meth:`claim_idempotency`'s second look; a refused submission leaves its claim bound to
        a job never created, which a retry takes over."""
        k = self.keys
        keys = [k.tenant_rate(tenant), k.tenant_inflight(tenant)]
        if idempotency_key:
            keys.append(k.idempotency(tenant, idempotency_key))
        args: list[Any] = [per_second, burst, repr(time.time()), k.job_prefix, k.DONE_SUFFIX, job_id, IDEMPOTENCY_TTL_S]
        reply = self._admit(keys=keys, args=args)
        if len(reply) == 1:
            return float(reply[0]), None
        _, jobs, tasks, gone, claimed = reply
        finished = [j.decode() if isinstance(j, bytes) else j for j in gone]
        return 0.0, Reads(jobs=int(jobs), tasks=int(tasks), finished=finished, claimed=bool(claimed))

    def cached_job_entry(self, tenant: str, cache_key: str) -> dict[bytes, bytes]:
        """The whole-job cache entry under ``cache_key`` ({} if none)."""
        return self.redis.hgetall(self.keys.job_cache(tenant, cache_key))  # type: ignore[return-value]

    def prune_inflight(self, pipe: Any, tenant: str, finished: list[str]) -> None:
        """Drop final jobs from the tenant's in-flight set, within the caller's pipeline."""
        if finished:
            pipe.srem(self.keys.tenant_inflight(tenant), *finished)

    def inflight(self, tenant: str, job_ids: list[str] | None = None, prune: bool = True) -> tuple[int, int, list[str]]:
        """(jobs, tasks, final job ids) of this tenant's in-flight set (or of ``job_ids``); the
        final ones are pruned here, or by the caller (:meth:`prune_inflight`) without ``prune``.
        A submission reads the same with :meth:`admit`."""
        key = self.keys.tenant_inflight(tenant)
        if job_ids is None:
            job_ids = [j.decode() for j in self.redis.smembers(key)]  # type: ignore[union-attr]
        if not job_ids:
            return 0, 0, []
        # one script over every job: many jobs in flight cost one reply, not two per job
        jobs, tasks, gone = self._inflight(args=[self.keys.job_prefix, self.keys.DONE_SUFFIX, *job_ids])
        finished = [j.decode() if isinstance(j, bytes) else j for j in gone]
        if finished and prune:
            self.redis.srem(key, *finished)
        return int(jobs), int(tasks), finished

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

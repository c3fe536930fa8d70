"""The result cache across jobs, in two levels, each entry for a TTL:

- chunks of results (one engine call each) under a key of their content, made by the workers
  (``worker/cache.py``): identical work inside any later job is not computed again;
- whole jobs' results, keyed by the API (``qfleet_server.result_cache.job_digest``): a job whose
  results are all there is created done, and never queued.

Every key covers the tenant, so one tenant never reads another's results."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from .base import StoreBase

CACHE_COUNTERS = ("result_cache_hits", "result_cache_misses", "result_cache_stored_bytes")


@dataclass(frozen=True)
class CacheWrite:
    """What a task leaves in the chunk cache: its computed chunks by digest, and its hits and misses."""

    tenant: str
    chunks: dict[str, bytes]
    hits: int
    misses: int
    ttl_s: int
    max_share: float


def whole(entry: dict[bytes, bytes], tasks: int) -> dict[bytes, bytes] | None:
    """A whole-job cache entry if it holds all ``tasks`` result slices, else None."""
    return entry if entry and sum(1 for f in entry if f.startswith(b"r")) == tasks else None


class ResultCache(StoreBase):
    _cache_memory: tuple[float, int, int] = (0.0, 0, 0)

    def cached_chunks(self, tenant: str, digests: list[str]) -> list[bytes | None]:
        """The stored chunks of these digests (None where absent or expired), in one round trip."""
        if not digests:
            return []
        return self.redis.mget([self.keys.result_cache(tenant, d) for d in digests])  # type: ignore[return-value]

    def queue_cache_writes(self, pipe: Any, write: CacheWrite) -> int:
        """Into ``pipe``: count a task's hits and misses, and store its computed chunks for the
        TTL; returns the bytes stored. Nothing is stored while Redis is past ``max_share`` of its
        maxmemory: the cache never takes the room admission keeps for jobs (it refuses them past
        ``storage_headroom``), and what it holds expires by its TTL."""
        chunks = write.chunks
        size = sum(len(v) for v in chunks.values())
        if not (chunks and write.ttl_s > 0 and self._cache_room(size, write.max_share)):
            chunks, size = {}, 0
        for digest, value in chunks.items():
            pipe.set(self.keys.result_cache(write.tenant, digest), value, ex=write.ttl_s)
        for name, count in zip(CACHE_COUNTERS, (write.hits, write.misses, size)):
            if count:
                pipe.hincrby(self.keys.counters, name, count)
        return size

    def count_job_cache_miss(self, pipe: Any) -> None:
        """In the submission's transaction: a cacheable job the cache did not hold."""
        pipe.hincrby(self.keys.counters, "result_cache_job_misses", 1)

    def mark_cacheable(self, job_id: str, digest: str, pipe: Any) -> None:
        """Note a new job's cache key: its results are kept under it when first read."""
        pipe.hset(self.keys.job(job_id), "cache_key", digest)

    def serve_cached_job(self, job_id: str, entry: dict[bytes, bytes], pipe: Any) -> None:
        """A job just created in ``pipe`` becomes done at once, with a cached entry's results."""
        k, now = self.keys, repr(time.time())
        results = {f[1:]: v for f, v in entry.items() if f.startswith(b"r")}
        meta = {f[1:]: v for f, v in entry.items() if f.startswith(b"m")}
        pipe.hset(k.job_results(job_id), mapping=results)
        pipe.sadd(k.job_done(job_id), *results)
        keys = [k.job_results(job_id), k.job_done(job_id)]
        if meta:
            pipe.hset(k.job_meta(job_id), mapping=meta)
            keys.append(k.job_meta(job_id))
        for key in keys:
            pipe.expire(key, self.ttl_s)
        pipe.hset(k.job(job_id), mapping={"status": "done", "started_at": now, "finished_at": now})
        pipe.hincrby(k.counters, "jobs_done", 1)
        pipe.hincrby(k.counters, "result_cache_job_hits", 1)
        pipe.publish(k.events, f"{job_id} done")

    def cache_job(
        self,
        job_id: str,
        tenant: str,
        digest: str,
        results: dict[int, bytes],
        meta: dict[int, dict[str, Any]],
        ttl_s: int,
        max_share: float,
    ) -> bool:
        """Keep a done job's results (and task metadata) under its key, once: the job forgets its key."""
        size = sum(len(v) for v in results.values())
        pipe = self.redis.pipeline(transaction=False)
        pipe.hdel(self.keys.job(job_id), "cache_key")
        stored = ttl_s > 0 and bool(results) and self._cache_room(size, max_share)
        if stored:
            key = self.keys.job_cache(tenant, digest)
            mapping: dict[str, bytes | str] = {f"r{t}": v for t, v in results.items()}
            mapping.update({f"m{t}": json.dumps(m) for t, m in meta.items()})
            pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
            pipe.expire(key, ttl_s)
            pipe.hincrby(self.keys.counters, "result_cache_stored_bytes", size)
        pipe.execute()
        return stored

    def _cache_room(self, size: int, max_share: float) -> bool:
        now = time.monotonic()
        at, used, cap = self._cache_memory
        if now - at > 1.0:  # INFO at most once a second per process
            used, cap = self.memory()
            self._cache_memory = (now, used, cap)
        return not cap or used + size <= max_share * cap

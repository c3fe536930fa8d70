"""The result cache across jobs: computed chunks of results under a key of their content, for
a TTL, so identical work in a later job is not computed again. The key (made by the worker,
``worker/cache.py``) covers the tenant, so one tenant never reads another's results."""

from __future__ import annotations

import time

from .base import StoreBase

CACHE_COUNTERS = ("result_cache_hits", "result_cache_misses", "result_cache_stored_bytes")


class ResultCache(StoreBase):
    _cache_memory: tuple[float, int, int] = (0.0, 0, 0)

    def cached_chunks(self, tenant: str, digests: list[str]) -> list[bytes | None]:
        """The stored chunks of these digests (None where absent or expired), in one round trip."""
        if not digests:
            return []
        return self.redis.mget([self.keys.result_cache(tenant, d) for d in digests])  # type: ignore[return-value]

    def record_cache(
        self, tenant: str, chunks: dict[str, bytes], hits: int, misses: int, ttl_s: int, max_share: float
    ) -> int:
        """Count a task's hits and misses, and store its computed chunks for ``ttl_s``; returns the
        bytes stored. Nothing is stored while Redis is past ``max_share`` of its maxmemory: the cache
        never takes the room admission keeps for jobs (it refuses them past ``storage_headroom``),
        and what it holds expires by its TTL."""
        size = sum(len(v) for v in chunks.values())
        if not (chunks and ttl_s > 0 and self._cache_room(size, max_share)):
            chunks, size = {}, 0
        pipe = self.redis.pipeline(transaction=False)
        for digest, value in chunks.items():
            pipe.set(self.keys.result_cache(tenant, digest), value, ex=ttl_s)
        for name, count in zip(CACHE_COUNTERS, (hits, misses, size)):
            if count:
                pipe.hincrby(self.keys.counters, name, count)
        if len(pipe):
            pipe.execute()
        return size

    def _cache_room(self, size: int, max_share: float) -> bool:
        now = time.monotonic()
        at, used, cap = self._cache_memory
        if now - at > 1.0:  # INFO at most once a second per process
            used, cap = self.memory()
            self._cache_memory = (now, used, cap)
        return not cap or used + size <= max_share * cap

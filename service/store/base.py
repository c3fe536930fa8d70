"""What every part of the store shares: the connection, the key names and the registered scripts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redis import Redis

from . import scripts
from .keys import JOB_TTL_S, Keys

if TYPE_CHECKING:
    from .cache import CacheWrite


class StoreBase:
    """The connection (binary-safe), the key names and the scripts; the parts of :class:`Store` add methods."""

    def __init__(self, redis: Redis, prefix: str = "qfleet", ttl_s: int = JOB_TTL_S) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self.ttl_s = ttl_s
        self._started = redis.register_script(scripts.MARK_STARTED)
        self._finish = redis.register_script(scripts.FINISH)
        self._rate = redis.register_script(scripts.RATE)
        self._reopen = redis.register_script(scripts.REOPEN)
        self._acquire = redis.register_script(scripts.ACQUIRE)
        self._take = redis.register_script(scripts.TAKE)
        self._claim = redis.register_script(scripts.CLAIM)
        self._begin = redis.register_script(scripts.BEGIN_TASK)
        self._admit = redis.register_script(scripts.ADMIT)
        self._inflight = redis.register_script(scripts.INFLIGHT)

    if TYPE_CHECKING:  # what one part calls of another (Store joins them all)

        def job(self, job_id: str) -> dict[str, str] | None: ...

        def api_keys(self) -> dict[str, Any]: ...

        def queue_cache_writes(self, pipe: Any, write: CacheWrite) -> int: ...

        def queue_cost_writes(self, pipe: Any, tenant: str, backend: str, costs: dict[str, float]) -> None: ...

    @staticmethod
    def hash_reply(flat: Any) -> dict[bytes, bytes]:
        """A hash that a Lua script returned as HGETALL gives it there: a flat list of fields and values."""
        return {flat[i]: flat[i + 1] for i in range(0, len(flat or ()), 2)}

    def ping(self) -> bool:
        return bool(self.redis.ping())

    def transaction(self) -> Any:
        """A MULTI/EXEC pipeline, for writes that must land together (a job and its tasks)."""
        return self.redis.pipeline(transaction=True)

    def memory(self) -> tuple[int, int]:
        """(bytes used, maxmemory; 0 when uncapped) of the Redis server."""
        info = self.redis.info("memory")
        return int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))

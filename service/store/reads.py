"""The API's hot reads on its event loop (redis.asyncio): an API key, a job's status fields,
and a done job's result parts. A small job's two requests then cost no thread hop for these
reads (a hop costs as much as a Redis round trip, more on a loaded host)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .keys import Keys, hash_api_key
from .tenants import ApiKey

if TYPE_CHECKING:
    from ..tasks import JobSpec


@dataclass
class ResultParts:
    """What a done job's answer is built from, read in one round trip."""

    record: dict[str, str]
    spec: str | None
    results: dict[int, bytes]
    meta: dict[int, dict[str, Any]]
    layout: str | None = None  # how the client stacked its PUBs, when it did (JSON)
    parsed: JobSpec | None = None  # the spec itself, where the caller holds it (then ``spec`` is not read)


@dataclass
class DoneNews:
    """What a one-task job's done event carries (scripts.COMPLETE_TASK): when the job started and
    finished, and its result."""

    started_at: str
    finished_at: str
    result: bytes


def job_event(data: bytes) -> tuple[str, str, DoneNews | None]:
    """(job id, news: done, progress, failed or cancelled, and what a done event carries of the
    job, if it carries it) of a message on the events channel."""
    head, sep, result = data.partition(b"\n")
    job_id, _, rest = head.decode().partition(" ")
    what, _, times = rest.partition(" ")
    if not sep or what != "done":
        return job_id, what, None
    started, _, finished = times.partition(" ")
    return job_id, what, DoneNews(started, finished, result)


class AsyncReads:
    def __init__(self, redis: Any, prefix: str = "qfleet") -> None:
        self.redis = redis  # a redis.asyncio client
        self.keys = Keys(prefix)

    async def close(self) -> None:
        await self.redis.aclose()

    async def api_key(self, key: str) -> ApiKey | None:
        raw = await self.redis.hget(self.keys.api_keys, hash_api_key(key))
        return None if raw is None else ApiKey(**json.loads(raw))

    async def job_fields(self, job_id: str, names: list[str]) -> dict[str, str]:
        """The named fields of a job's record that are set (none: no such job)."""
        values = await self.redis.hmget(self.keys.job(job_id), names)
        return {k: v.decode() for k, v in zip(names, values) if v is not None}

    async def tasks_done(self, job_id: str) -> int:
        return int(await self.redis.scard(self.keys.job_done(job_id)))

    async def result_parts(self, job_id: str, names: list[str]) -> ResultParts:
        """The record's named fields, spec, result slices and task metadata, in one round trip."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(k.job(job_id), names)
            pipe.hget(k.job(job_id), "spec")
            pipe.hgetall(k.job_results(job_id))
            pipe.hgetall(k.job_meta(job_id))
            pipe.hget(k.job_data(job_id), "layout")
            values, spec, results, meta, layout = await pipe.execute()
        return ResultParts(
            record={n: v.decode() for n, v in zip(names, values) if v is not None},
            spec=None if spec is None else spec.decode(),
            results={int(t): v for t, v in results.items()},
            meta={int(t): json.loads(v) for t, v in meta.items()},
            layout=None if layout is None else layout.decode(),
        )

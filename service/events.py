"""Job events for long-polls: one Redis subscription per API process, fanned out to
waiting requests, so a waiter wakes within a millisecond of its job finishing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any

from .store import connect_async
from .store.reads import DoneNews, job_event

log = logging.getLogger("qfleet.api")


class JobEvent(asyncio.Event):
    """Set when its job has news; ``last`` says which (``done``, ``progress``, ``failed``,
    ``cancelled``), or is empty when every waiter was woken after a reconnect. ``done``: what a
    one-task job's done event carries of it (its result), if it does."""

    last = ""
    done: DoneNews | None = None


class JobEvents:
    def __init__(self, settings: Any, channel: str) -> None:
        self.settings = settings
        self.channel = channel
        self._waiters: dict[str, set[JobEvent]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen())
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._ready.wait(), 5)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _listen(self) -> None:
        while True:
            redis = connect_async(self.settings)
            try:
                async with redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    self._ready.set()
                    self._wake_all()  # anything missed while reconnecting is re-checked by waiters
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        job_id, what, done = job_event(message["data"])
                        for event in self._waiters.get(job_id, ()):
                            event.last, event.done = what, done
                            event.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis went away: wake waiters, retry soon
                log.warning("event subscription lost (%s); reconnecting", exc)
                self._wake_all()
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await redis.aclose()

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.last, event.done = "", None
                event.set()

    @contextlib.contextmanager
    def watch(self, job_id: str):  # type: ignore[no-untyped-def]
        """Register before checking the job, so an event between check and wait is not lost."""
        event = JobEvent()
        self._waiters[job_id].add(event)
        try:
            yield event
        finally:
            self._waiters[job_id].discard(event)
            if not self._waiters[job_id]:
                del self._waiters[job_id]

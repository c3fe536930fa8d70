"""ASGI guards that act before a route sees a request: the body-size limit, a deadline for
the body to arrive, and a cap on the requests one client address holds open."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Mapping

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import PayloadTooLarge, RateLimited, ServiceError


class Refused(HTTPException):
    """A guard's refusal raised from inside ``receive()``. An HTTPException, because FastAPI turns
    any other exception raised while it reads a body into a bare 400; the app renders it with
    the error body of ``error``."""

    def __init__(self, status: int, error: ServiceError, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status, detail=error.message, headers=headers)
        self.error = error


async def _refuse(send: Send, status: int, error: ServiceError, headers: Mapping[str, str] | None = None) -> None:
    response = JSONResponse(status_code=status, content=error.body(), headers=headers)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


class BodyLimit:
    """Refuses a body over ``limit`` bytes with 413 before it is read in full."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(send, int(length))
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise Refused(413, PayloadTooLarge(self._message(seen), limit=self.limit))
            return message

        try:
            await self.app(scope, limited, send)
        except Refused:
            await self._refuse(send, seen)

    def _message(self, size: int) -> str:
        return f"request body of {size} bytes is over the {self.limit}-byte limit; split the job into smaller ones"

    async def _refuse(self, send: Send, size: int) -> None:
        await _refuse(send, 413, PayloadTooLarge(self._message(size), limit=self.limit))


class ClientGuard:
    """A request body must arrive within ``body_timeout_s`` (a trickling client gets 408 and its
    connection back), and one client address holds at most ``max_requests`` requests open
    (more get 429): slow or many connections from one place cannot starve everyone else."""

    def __init__(self, app: ASGIApp, body_timeout_s: float, max_requests: int) -> None:
        self.app = app
        self.body_timeout_s = body_timeout_s
        self.max_requests = max_requests
        self.open: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("?", 0))[0]
        if self.open[client] >= self.max_requests:
            error = RateLimited(
                f"{self.open[client]} requests already open from {client}; wait for some to finish",
                code="too_many_requests_open",
                retry_after=1.0,
            )
            await _refuse(send, 429, error, {"Retry-After": "1"})
            return
        self.open[client] += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout_s
        body_done = False
        started = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:  # after the body, receive() waits for a disconnect: no deadline then
                return await receive()
            remaining = deadline - loop.time()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(remaining, 0.001))
            except asyncio.TimeoutError:
                error = ServiceError(
                    f"the request body did not arrive within {self.body_timeout_s:g} s", code="body_timeout"
                )
                raise Refused(408, error, {"Connection": "close"}) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, timed_receive, tracked_send)
        except Refused as exc:  # raised where no exception handler saw it
            if not started:
                await _refuse(send, exc.status_code, exc.error, exc.headers)
        finally:
            self.open[client] -= 1
            if self.open[client] <= 0:
                del self.open[client]


class TenantTurns:
    """At most ``limit`` submissions of one tenant worked on at once in this API process (each
    holds one of the API's worker threads). More wait for a turn, holding no thread, up to
    ``wait_s``; then they are refused with 429. A burst from many clients of one tenant (a
    training job's data-parallel processes) queues here instead of bouncing off a Retry-After."""

    def __init__(self, limit: int, wait_s: float) -> None:
        self.limit = limit
        self.wait_s = wait_s
        self.busy: Counter[str] = Counter()
        self._freed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def turn(self, tenant: str) -> AsyncIterator[None]:
        if self.busy[tenant] >= self.limit:
            try:
                async with self._freed:
                    await asyncio.wait_for(self._freed.wait_for(lambda: self.busy[tenant] < self.limit), self.wait_s)
                    self.busy[tenant] += 1  # still under the lock: no other waiter takes this turn
            except asyncio.TimeoutError:
                raise RateLimited(
                    f"{self.busy[tenant]} submissions of this tenant are already being processed (limit "
                    f"{self.limit}) and none finished within {self.wait_s:g} s; send the next when one is answered",
                    code="too_many_concurrent_submissions",
                    retry_after=0.2,
                ) from None
        else:
            self.busy[tenant] += 1
        try:
            yield
        finally:
            self.busy[tenant] -= 1
            if self.busy[tenant] <= 0:
                del self.busy[tenant]
            async with self._freed:
                self._freed.notify_all()

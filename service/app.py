"""The FastAPI application. Build it with :func:`create_app`; nothing is built at import."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__, dashboard, metrics
from .errors import PayloadTooLarge, RateLimited, ServiceError
from .events import JobEvents
from .jobs import JobService
from .routes import admin, backends, health, jobs
from .settings import Settings
from .store import Store, connect

log = logging.getLogger("qfleet.api")


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
                raise PayloadTooLarge(self._message(seen), limit=self.limit)
            return message

        try:
            await self.app(scope, limited, send)
        except PayloadTooLarge:
            await self._refuse(send, seen)

    def _message(self, size: int) -> str:
        return f"request body of {size} bytes is over the {self.limit}-byte limit; split the job into smaller ones"

    async def _refuse(self, send: Send, size: int) -> None:
        body = PayloadTooLarge(self._message(size), limit=self.limit).body()
        response = JSONResponse(status_code=413, content=body)
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


async def _reap_forever(jobs: JobService, every_s: float) -> None:
    """Re-queue tasks whose worker died; cheap when there is nothing to do (one ZRANGEBYSCORE)."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await run_in_threadpool(jobs.reap)
        except Exception as exc:  # Redis away: try again next round
            log.warning("reaper: %s", exc)


def _operation_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def create_app(settings: Settings) -> FastAPI:
    """Build the API for these settings.

    >>> app = create_app(Settings(redis_url="redis://127.0.0.1:6379/0"))
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = connect(settings)
        store = Store(redis, settings.key_prefix, settings.result_ttl_s)
        if settings.admin_key:
            store.add_api_key(settings.admin_key, tenant="admin", role="admin")
        app.state.settings = settings
        app.state.jobs = JobService(settings, store)
        app.state.events = JobEvents(settings, store.keys.events)
        await app.state.events.start()
        reaper = asyncio.create_task(_reap_forever(app.state.jobs, settings.lease_s / 5))
        try:
            yield
        finally:
            reaper.cancel()
            await app.state.events.stop()
            redis.close()

    app = FastAPI(
        title="qfleet",
        version=__version__,
        description="Batches of parameterized quantum circuits in, expectation values (and "
        "gradients) out, at the pace of a training loop. Authenticate with "
        "`Authorization: Bearer <API key>`. Every error answer has the body "
        '`{"error": {"code", "message", "details"}}`.',
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))} if isinstance(exc, RateLimited) else None
        return JSONResponse(status_code=exc.status, content=exc.body(), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        first = problems[0] if problems else {"loc": [], "msg": "invalid"}
        where = ".".join(first["loc"][1:]) or "body"
        message = f"{where}: {first['msg']}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
        body: dict[str, Any] = {
            "error": {"code": "invalid_request", "message": message, "details": {"errors": problems}}
        }
        return JSONResponse(status_code=422, content=body)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            status_code=500, content=ServiceError("internal error; the request was not processed").body()
        )

    app.include_router(jobs.router)
    app.include_router(backends.router)
    app.include_router(admin.router)
    app.include_router(metrics.router)
    dashboard.install(app)
    app.include_router(health.router)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    metrics.install(app)  # outermost: counts every answer, refusals included
    return app

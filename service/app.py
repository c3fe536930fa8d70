"""The FastAPI application. Build it with :func:`create_app`; nothing is built at import."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from qfleet.wire import ARRAY_ENCODING, BROADCASTING, PARAMETER_ORDER, PAULI_ORDER, JobOptions
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__, dashboard, metrics
from .apidocs import DocsPolicy
from .deps import get_admin, get_tenant
from .errors import ERROR_DESCRIPTIONS, RateLimited, ServiceError, Unavailable
from .events import JobEvents
from .guards import BodyLimit, ClientGuard, Refused, TenantTurns
from .jobs import JobService
from .routes import admin, backends, health, jobs
from .settings import Settings
from .store import Store, connect, connect_async
from .store.reads import AsyncReads

log = logging.getLogger("qfleet.api")
# Error codes of the HTTP errors the framework raises itself (unknown path, wrong method, unreadable body).
_HTTP_CODES = {400: "invalid_body", 404: "not_found", 405: "method_not_allowed", 408: "body_timeout"}


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


DESCRIPTION = f"""Batches of parameterized quantum circuits in, expectation values (and gradients) out,
at the pace of a training loop.

**Authentication.** Every route but `/healthz` needs `Authorization: Bearer <API key>`
(the *Authorize* button here). `qfleet up` prints a dev key; an admin creates keys with
`qfleet keys create TENANT` or `POST /v1/admin/keys`.

**Flow.** `POST /v1/jobs` with a list of PUBs answers at once with the job's id; then
`GET /v1/jobs/{{id}}/result?wait=20` holds the request until the job is final (200 with the
results) or `wait` passes (202 with the job's status: ask again). `GET /v1/jobs/{{id}}/events`
streams progress as server-sent events.

**A PUB** is Qiskit EstimatorV2's (circuit, observables, parameter_values, precision).
- Arrays: {ARRAY_ENCODING}
- Observables: {PAULI_ORDER}
- Parameters: {PARAMETER_ORDER}
- Broadcasting: {BROADCASTING}

**Errors.** Every error answer has the body `{{"error": {{"code", "message", "details"}}}}`:
`code` is stable and machine-readable, `message` says what to fix.
"""


def _api_routes(routes: Any) -> Iterator[APIRoute]:
    """Every APIRoute, also those inside included routers (newer FastAPI keeps them nested)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (router := getattr(route, "original_router", None)) is not None:
            yield from _api_routes(router.routes)


def _dependency_calls(route: APIRoute) -> set[Any]:
    calls, todo = set(), [route.dependant]
    while todo:
        dependant = todo.pop()
        calls.add(dependant.call)
        todo.extend(dependant.dependencies)
    return calls


def _true_to_the_wire(app: FastAPI, schema: dict[str, Any]) -> dict[str, Any]:
    """Make the generated document say what the service does: the bearer scheme on every route
    that reads the API key, and the one error body for every error status it can answer with
    (FastAPI would declare its own validation-error body for 422, which this app never sends)."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearerAuth"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key, sent as `Authorization: Bearer qf_...`.",
    }
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    error_body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for route in _api_routes(app.routes):
        operations = schema["paths"].get(route.path_format, {})
        calls = _dependency_calls(route)
        for method in route.methods or ():
            operation = operations.get(method.lower())
            if operation is None:  # not in the schema (the dashboard's HTML routes)
                continue
            statuses = {429, 500}  # ClientGuard: too many requests open from one address
            if get_tenant in calls:
                operation["security"] = [{"bearerAuth": []}]
                statuses.add(401)
            if get_admin in calls:
                statuses.add(403)
            if "requestBody" in operation:
                statuses |= {400, 408, 413, 422}
            responses = operation["responses"]
            if "422" in responses or route.dependant.query_params:
                statuses.add(422)
            for status in sorted(statuses):
                responses[str(status)] = {"description": ERROR_DESCRIPTIONS[status], "content": error_body}
    return schema


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
        reads = AsyncReads(connect_async(settings), settings.key_prefix)
        app.state.jobs = JobService(settings, store, reads)
        app.state.submitting = TenantTurns(settings.max_concurrent_submissions, settings.submission_wait_s)
        app.state.events = JobEvents(settings, store.keys.events)
        await app.state.events.start()
        # Start the parser children; answer requests after at most a few seconds even if their
        # qiskit import takes longer (a restarted API must come back fast; they go on warming).
        warming = asyncio.ensure_future(run_in_threadpool(app.state.jobs.parsers.warm))
        await asyncio.wait([warming], timeout=5.0)
        reaper = asyncio.create_task(_reap_forever(app.state.jobs, settings.lease_s / 5))
        try:
            yield
        finally:
            reaper.cancel()
            await app.state.events.stop()
            try:
                await reads.close()
            except Exception as exc:  # e.g. its connections belong to an event loop that has ended
                log.warning("closing the event loop's Redis reads: %s", exc)
            redis.close()

    # Swagger UI (/docs) and ReDoc (/redoc) load their scripts from this app, not a CDN.
    app = FastAPIOffline(
        title="qfleet",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        static_url="/docs-assets",
        swagger_ui_parameters={"persistAuthorization": True},
    )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _true_to_the_wire(app, FastAPI.openapi(app))
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]

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
        code = "invalid_request"
        unknown = [p for p in problems if p["type"] == "extra_forbidden" and "options" in p["loc"]]
        if unknown:
            code = "option_not_supported"
            names = ", ".join(repr(p["loc"][-1]) for p in unknown)
            message = f"unknown option {names}; the options are {', '.join(JobOptions.model_fields)}"
        body: dict[str, Any] = {"error": {"code": code, "message": message, "details": {"errors": problems}}}
        return JSONResponse(status_code=422, content=body)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc, Refused):
            return JSONResponse(status_code=exc.status_code, content=exc.error.body(), headers=exc.headers)
        code = _HTTP_CODES.get(exc.status_code, "invalid_request" if exc.status_code < 500 else "internal_error")
        body = {"error": {"code": code, "message": str(exc.detail), "details": {}}}
        return JSONResponse(status_code=exc.status_code, content=body, headers=exc.headers)

    @app.exception_handler(RedisConnectionError)
    @app.exception_handler(RedisTimeoutError)
    async def redis_away(request: Request, exc: Exception) -> JSONResponse:
        # Redis restarting or unreachable: not the request's fault, and retried by clients (a
        # submission with its Idempotency-Key finds the job if the write did land).
        log.warning("Redis unreachable on %s %s: %s", request.method, request.url.path, exc)
        error = Unavailable(
            "the job store is unreachable for the moment; retry", code="store_unavailable", retry_after=1.0
        )
        return JSONResponse(status_code=503, content=error.body(), headers={"Retry-After": "1"})

    @app.exception_handler(ResponseError)
    async def redis_refused(request: Request, exc: ResponseError) -> JSONResponse:
        if str(exc).startswith("OOM"):  # Redis at maxmemory with noeviction: nothing was written
            log.warning("Redis is full: %s %s refused", request.method, request.url.path)
            error = Unavailable("the job store is full; retry later", code="storage_full", retry_after=5.0)
            return JSONResponse(status_code=503, content=error.body(), headers={"Retry-After": "5"})
        return await internal_error(request, exc)

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
    app.add_middleware(DocsPolicy)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(
        ClientGuard, body_timeout_s=settings.body_timeout_s, max_requests=settings.max_requests_per_client
    )
    metrics.install(app)  # outermost: counts every answer, refusals included
    return app

"""``/v1/jobs``: submit, read, wait for and cancel jobs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from qfleet.wire import QPY_VERSION_HEADER, TERMINAL_STATUSES, JobInfo, JobList, JobRequest, JobResultBody
from starlette.background import BackgroundTask

from ..deps import JobsDep, TenantDep
from ..errors import Conflict, error_responses
from ..guards import TenantTurns
from ..parsing import qpy_version_read

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

MAX_WAIT_S = 60.0
INLINE_RESULT_BYTES = 64 * 1024  # results up to this size are assembled on the event loop


@router.post(
    "", status_code=201, response_model=JobInfo, responses=error_responses(400, 429, 503), summary="Submit a job"
)
async def submit_job(
    body: JobRequest,
    request: Request,
    response: Response,
    jobs: JobsDep,
    tenant: TenantDep,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=200, description="Retrying a submission with the same key returns the same job."),
    ] = None,
) -> JobInfo:
    """Validate, price and shard a list of PUBs, and queue the tasks. Answers at once
    with the job's id; wait for its result with ``GET /v1/jobs/{id}/result?wait=``."""
    response.headers[QPY_VERSION_HEADER] = str(qpy_version_read())  # clients write it from now on
    # One tenant holds at most a few of the API's worker threads at once, however many it sends.
    turns: TenantTurns = request.app.state.submitting
    async with turns.turn(tenant.name):
        return await run_in_threadpool(jobs.submit, body, tenant.name, idempotency_key)


@router.get("", response_model=JobList, responses=error_responses(400), summary="List jobs")
def list_jobs(
    jobs: JobsDep,
    tenant: TenantDep,
    status: Annotated[
        str | None, Query(description="Only jobs in this status: queued, running, done, failed or cancelled.")
    ] = None,
    backend: Annotated[str | None, Query(description="Only jobs on this backend.")] = None,
    tag: Annotated[
        list[str] | None,
        Query(
            description="Only jobs with this tag, as key:value (e.g. run:exp7); repeat it for several (all must match)."
        ),
    ] = None,
    since: Annotated[
        float | None, Query(allow_inf_nan=False, description="Only jobs created at or after this time, Unix seconds.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Jobs per page at most.")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` of the previous page; omit for the first.")
    ] = None,
) -> JobList:
    """This API key's tenant's jobs, newest first, one page at a time: follow ``next_cursor``
    until it is null. Jobs are kept for a day after submission."""
    return jobs.list_jobs(
        tenant.name, status=status, backend=backend, tags=tag, since=since, limit=limit, cursor=cursor
    )


@router.get("/{job_id}", response_model=JobInfo, responses=error_responses(404), summary="Job status and progress")
def get_job(job_id: str, jobs: JobsDep, tenant: TenantDep) -> JobInfo:
    return jobs.info(job_id, tenant.name)


@router.get(
    "/{job_id}/result",
    response_model=JobResultBody,
    responses={
        **error_responses(404, 409),
        202: {"model": JobInfo, "description": "Not finished within `wait`: the job's status; ask again."},
    },
    summary="Job result (long-poll)",
)
async def get_result(
    job_id: str,
    request: Request,
    jobs: JobsDep,
    tenant: TenantDep,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_WAIT_S,
            description="Seconds to hold the request until the job is final (with `partial` and `after`: until "
            "more than `after` tasks are done).",
        ),
    ] = 0.0,
    partial: Annotated[
        bool,
        Query(
            description="Answer 200 with the results of the tasks finished so far: arrays of the full shape "
            "with NaN where values are not ready, per PUB a `mask` (1 where ready), and `progress`. At once, "
            "unless `after` is given."
        ),
    ] = False,
    after: Annotated[
        int | None,
        Query(
            ge=0,
            description="With `partial`: hold the request (up to `wait` seconds) until more than this many tasks "
            "are done or the job is final; pass the `progress.tasks_done` of the last partial result to stream them.",
        ),
    ] = None,
) -> Any:
    """The job's evs, stds (and gradients), one entry per PUB in request order, once it is
    done. With ``wait``, the request is held until the job is final or ``wait`` seconds
    pass; an unfinished job then answers 202 with its status. With ``partial=true``, the
    slices finished so far (a training loop reads them while the rest computes); with
    ``after`` too, as soon as a task beyond those finishes."""
    events = request.app.state.events
    deadline = time.monotonic() + (wait if not partial or after is not None else 0.0)
    with events.watch(job_id) as event:
        done_likely = False
        while True:
            event.clear()  # before the check: an event that lands during it is kept
            # read on the event loop (no thread hop); after a done event, the result too in one round trip
            status, record, parts = await jobs.poll(job_id, tenant.name, done_likely)
            if status in TERMINAL_STATUSES:
                break
            if partial and after is not None and await run_in_threadpool(jobs.store.tasks_done, job_id) > after:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(event.wait(), timeout=min(remaining, 5.0))
            except asyncio.TimeoutError:
                pass  # re-check now and then: an event can be missed while Redis reconnects
            done_likely = event.is_set() and event.last == "done"
    if partial and status not in ("failed", "cancelled"):
        body = await run_in_threadpool(lambda: jobs.result(job_id, record, partial=True).model_dump_json())
        return Response(content=body, media_type="application/json")
    if status == "done":
        # serialized here, once: returning the model makes FastAPI validate it all again (a
        # second per thousand PUBs); response_model still documents it. A small result is
        # built on the loop (a thread hop would cost more than the work); a large one in a thread.
        build = lambda: jobs.result(job_id, record, parts).model_dump_json()  # noqa: E731
        small = parts is not None and sum(map(len, parts.results.values())) <= INLINE_RESULT_BYTES
        body = build() if small else await run_in_threadpool(build)
        # a first read keeps a cacheable job's whole result for identical jobs, once the answer is sent
        keep = BackgroundTask(jobs.keep_cached, job_id, record) if record.get("cache_key") else None
        return Response(content=body, media_type="application/json", background=keep)
    info = await jobs.info_async(job_id, tenant.name, record)
    if status in ("failed", "cancelled"):
        error = info.error
        raise Conflict(
            f"job {job_id} {status}" + (f": {error.message}" if error else ""),
            code=f"job_{status}",
            job=info.model_dump(mode="json"),
        )
    return JSONResponse(status_code=202, content=info.model_dump(mode="json"))


@router.get(
    "/{job_id}/events",
    responses={
        **error_responses(404),
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "Events named after the job's status, each with the job's status (JobInfo) as JSON "
            "data, then one final event; `: keep-alive` comments every 15 s.",
        },
    },
    summary="Stream job progress (SSE)",
)
async def job_events(job_id: str, request: Request, jobs: JobsDep, tenant: TenantDep) -> StreamingResponse:
    """Server-sent events: an event named after the job's status (``queued``, ``running``,
    then ``done``, ``failed`` or ``cancelled``) whose data is the job's status JSON, sent
    each time a task finishes. The stream ends after the final event."""
    info = await run_in_threadpool(jobs.info, job_id, tenant.name)  # 404 before the stream starts
    events = request.app.state.events

    async def stream() -> AsyncIterator[str]:
        nonlocal info
        last = None
        with events.watch(job_id) as event:
            while True:
                event.clear()
                info = await run_in_threadpool(jobs.info, job_id, tenant.name)
                body = info.model_dump_json()
                if body != last:
                    last = body
                    yield f"event: {info.status}\ndata: {body}\n\n"
                if info.status in TERMINAL_STATUSES or await request.is_disconnected():
                    return
                try:
                    await asyncio.wait_for(event.wait(), timeout=15.0)
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.delete("/{job_id}", response_model=JobInfo, responses=error_responses(404), summary="Cancel a job")
def cancel_job(job_id: str, jobs: JobsDep, tenant: TenantDep) -> JobInfo:
    """Cancel a job that is not final: its queued tasks are dropped and late results are
    discarded. Cancelling a final job changes nothing and returns its status."""
    return jobs.cancel(job_id, tenant.name)

"""``/v1/jobs``: submit, read, wait for and cancel jobs."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from qfleet.wire import (
    QPY_VERSION_HEADER,
    TERMINAL_STATUSES,
    JobInfo,
    JobList,
    JobRequest,
    JobResultBody,
    SubmittedJob,
)
from starlette.background import BackgroundTask

from ..deps import JobsDep, TenantDep
from ..errors import Conflict, error_responses
from ..events import JobEvent
from ..guards import TenantTurns
from ..jobs import JobService, Written, new_job_id
from ..parsing import qpy_version_read
from ..store.reads import ResultParts

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

MAX_WAIT_S = 60.0
MAX_SUBMIT_WAIT_S = 10.0  # a submission holds its answer at most this long
INLINE_RESULT_BYTES = 64 * 1024  # results up to this size are assembled on the event loop


@router.post(
    "",
    status_code=201,
    response_model=SubmittedJob,
    responses=error_responses(400, 429, 503),
    summary="Submit a job",
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
    prefer: Annotated[
        str | None,
        Header(
            max_length=200,
            description="`wait=N` (RFC 7240): for a job the service expects to finish within N seconds (at most "
            f"{MAX_SUBMIT_WAIT_S:g}), hold the answer until it is final or N seconds pass; a done job's answer then "
            "carries its `result`, saving the second request. `Preference-Applied` says when it was honoured.",
        ),
    ] = None,
) -> Any:
    """Validate, price and shard a list of PUBs, and queue the tasks. Answers at once with
    the job's id (wait for its result with ``GET /v1/jobs/{id}/result?wait=``), or, with
    ``Prefer: wait=N`` and a job priced within N seconds, once it is done, result included."""
    response.headers[QPY_VERSION_HEADER] = str(qpy_version_read())  # clients write it from now on
    # One tenant holds at most a few of the API's worker threads at once, however many it sends.
    turns: TenantTurns = request.app.state.submitting
    wait = prefer_wait(prefer)
    job_id = new_job_id()
    # watched from before it is written: its first events cannot be missed, and need no first read
    with request.app.state.events.watch(job_id) if wait is not None else contextlib.nullcontext() as event:
        async with turns.turn(tenant.name):
            info, seconds, written = await run_in_threadpool(jobs.submit, body, tenant.name, idempotency_key, job_id)
        if wait is None or (seconds > wait and info.status != "done"):
            return info  # too big to wait for here: the client long-polls the result
        watching = event if info.id == job_id and info.status == "queued" else None  # not an earlier job
        status, record, parts = await _until_final(
            request, jobs, info.id, tenant.name, time.monotonic() + wait, watching=watching, written=written
        )
    headers = {QPY_VERSION_HEADER: response.headers[QPY_VERSION_HEADER], "Preference-Applied": f"wait={wait:g}"}
    if status != "done":
        info = await jobs.info_async(info.id, tenant.name, record)
        return JSONResponse(status_code=201, content=info.model_dump(mode="json"), headers=headers)
    info = jobs.info(info.id, tenant.name, record)
    result, keep = await _result_body(jobs, info.id, record, parts)
    # the result is spliced in as serialized once (see get_result); SubmittedJob documents the shape
    content = '{"result":' + result + "," + info.model_dump_json()[1:]
    return Response(content=content, status_code=201, media_type="application/json", headers=headers, background=keep)


def prefer_wait(prefer: str | None) -> float | None:
    """Seconds from a ``Prefer`` header's ``wait`` preference (RFC 7240), capped; None if absent or unreadable."""
    if not prefer:
        return None
    for item in prefer.split(","):
        name, _, value = item.split(";")[0].strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                seconds = float(value.strip().strip('"'))
            except ValueError:
                return None
            return min(seconds, MAX_SUBMIT_WAIT_S) if math.isfinite(seconds) and seconds > 0 else None
    return None


async def _until_final(
    request: Request,
    jobs: JobService,
    job_id: str,
    tenant: str,
    deadline: float,
    after: int | None = None,
    watching: JobEvent | None = None,
    written: Written | None = None,
) -> tuple[str, dict[str, str], ResultParts | None]:
    """Hold until the job is final (or, with ``after``, has more than that many tasks done) or
    the deadline passes: (status, record, and for a done job its result's parts). ``watching``:
    the event of a job watched since before it was written (queued then), so the first read
    waits for its first event; ``written``: what its submission wrote, so a done event that
    carries the job's result is the whole answer (nothing is read back)."""
    events = request.app.state.events
    with contextlib.nullcontext(watching) if watching is not None else events.watch(job_id) as event:
        done_likely = False
        quiet = watching is not None
        while True:
            if not quiet:
                event.clear()  # before the check: an event that lands during it is kept
                # read on the event loop (no thread hop); after a done event, the result too in one round trip
                status, record, parts = await jobs.poll(job_id, tenant, done_likely)
                if status in TERMINAL_STATUSES:
                    break
                if after is not None and await run_in_threadpool(jobs.store.tasks_done, job_id) > after:
                    break
            remaining = deadline - time.monotonic()
            if remaining <= 0 and not quiet:
                break
            quiet = False
            if remaining > 0:
                try:
                    await asyncio.wait_for(event.wait(), timeout=min(remaining, 5.0))
                except asyncio.TimeoutError:
                    pass  # re-check now and then: an event can be missed while Redis reconnects
            done_likely = event.is_set() and event.last == "done"
            answer = written.done(event.done) if done_likely and written and event.done else None
            if answer is not None:
                return "done", *answer
    return status, record, parts


async def _result_body(
    jobs: JobService, job_id: str, record: dict[str, str], parts: ResultParts | None
) -> tuple[str, BackgroundTask | None]:
    """A done job's result as JSON, serialized here, once: returning the model makes FastAPI
    validate it all again (a second per thousand PUBs). A small result is built on the loop (a
    thread hop would cost more than the work); a large one in a thread. Also the task that keeps
    a cacheable job's whole result for identical jobs, to run once the answer is sent."""
    build = lambda: jobs.result(job_id, record, parts).model_dump_json()  # noqa: E731
    small = parts is not None and sum(map(len, parts.results.values())) <= INLINE_RESULT_BYTES
    body = build() if small else await run_in_threadpool(build)
    keep = BackgroundTask(jobs.keep_cached, job_id, record) if record.get("cache_key") else None
    return body, keep


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
    deadline = time.monotonic() + (wait if not partial or after is not None else 0.0)
    status, record, parts = await _until_final(request, jobs, job_id, tenant.name, deadline, after if partial else None)
    if partial and status not in ("failed", "cancelled"):
        body = await run_in_threadpool(lambda: jobs.result(job_id, record, partial=True).model_dump_json())
        return Response(content=body, media_type="application/json")
    if status == "done":
        body, keep = await _result_body(jobs, job_id, record, parts)
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

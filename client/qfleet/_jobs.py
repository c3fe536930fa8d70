"""``Job`` and ``AsyncJob``: twins over :class:`_BaseJob`, which holds every decision.

One wait loop (``_follow``) with one deadline serves ``result``, the progress bar and
``stream``: it long-polls ``GET /v1/jobs/{id}/result?wait=``, whose 202 answers carry the
job's progress. While someone watches (a progress bar, a stream) each poll is held at most
``PROGRESS_POLL_S``, otherwise up to ``LONG_POLL_S``; a finished job answers at once either way.
``stream(results=True)`` long-polls ``?partial=true&after=K`` instead, which the service answers
as soon as a task beyond the K seen finishes.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, overload

from ._base import parse
from .errors import APIError, JobCancelledError, JobFailedError, JobTimeoutError, QfleetError
from .results import JobResult, ungroup
from .wire import JobInfo, JobResultBody

if TYPE_CHECKING:
    from .client import AsyncClient, Client

LONG_POLL_S = 20.0  # one long-poll asks the service to hold the request at most this long
PROGRESS_POLL_S = 1.0  # how often a progress bar or a stream hears of progress


def _show_progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


@contextmanager
def _progress_bar(job_id: str, progress: bool | None) -> Iterator[Callable[[JobInfo], None] | None]:
    """A tqdm bar of tasks done, as a callback fed by the wait loop; None when not shown."""
    if not _show_progress(progress):
        yield None
        return
    try:
        from tqdm import tqdm
    except ImportError:
        raise ImportError("progress bars need tqdm: pip install 'qfleet[progress]'") from None
    with tqdm(total=0, desc=job_id, unit="task", leave=False) as bar:

        def update(info: JobInfo) -> None:
            bar.total = info.progress.tasks_total
            bar.n = info.progress.tasks_done
            bar.refresh()

        yield update


def _cancelled_by_ctrl_c() -> bool:
    """Under ``asyncio.run``, Ctrl-C reaches a coroutine as CancelledError: asyncio's runner
    cancels the main task and counts the SIGINT (privately; if that changes, this says no)."""
    handler = signal.getsignal(signal.SIGINT)
    runner = getattr(getattr(handler, "func", None), "__self__", None)
    return bool(getattr(runner, "_interrupt_count", 0))


class _BaseJob:
    """What the twins share: the job id and every pure decision of the wait loop."""

    __slots__ = ("id", "cancel_on_error", "_inside", "layout", "_ready")

    def __init__(self, job_id: str, cancel_on_error: bool = False, ready: JobResultBody | None = None) -> None:
        self.id = job_id
        self._ready = ready  # the result, when the submission's answer carried it (``Prefer: wait``)
        self.cancel_on_error = cancel_on_error
        self._inside = False  # inside a ``with job:`` block
        self.layout: list[tuple[int, int | None]] | None = None  # PUBs sent stacked (client.estimate)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"

    @staticmethod
    def _deadline(timeout: float | None) -> float | None:
        return None if timeout is None else time.monotonic() + timeout

    @staticmethod
    def _next_wait(deadline: float | None, watching: bool) -> float:
        cap = PROGRESS_POLL_S if watching else LONG_POLL_S
        return cap if deadline is None else max(0.0, min(cap, deadline - time.monotonic()))

    def _check_deadline(self, deadline: float | None, timeout: float | None) -> None:
        if deadline is not None and time.monotonic() >= deadline:
            raise JobTimeoutError(self.id, timeout or 0.0)

    @staticmethod
    def _raise_for_final(info: JobInfo) -> None:
        if info.status == "failed":
            err = info.error
            raise JobFailedError(info.id, err.code if err else "failed", err.message if err else "")
        if info.status == "cancelled":
            raise JobCancelledError(info.id)

    def _interpret(self, body: Any) -> JobResultBody | JobInfo:
        """A long-poll's answer: the result (200), or the job's status (202) for another round."""
        if isinstance(body, dict) and "results" in body:
            return parse(JobResultBody, body)
        info = parse(JobInfo, body)
        self._raise_for_final(info)
        return info

    def _unstacked(self, body: JobResultBody) -> JobResult:
        """One result per PUB the caller sent: the layout is this handle's, or, for a handle made by
        ``client.job(id)``, the one the submitting client stored with the job."""
        result = JobResult.from_wire(body)
        layout = self.layout if self.layout is not None else result.metadata.get("layout")
        return ungroup(result, None if layout is None else [(int(w), row) for w, row in layout])

    def _partial_of(self, body: Any) -> JobResult:
        return self._unstacked(parse(JobResultBody, body))

    @staticmethod
    def _advance(partial: JobResult, seen: int) -> tuple[bool, int]:
        """(whether to yield it, tasks seen) for a partial result read during a stream: one that adds
        slices is yielded, unless it already holds everything (the final result then comes as 'done')."""
        done = partial.progress.tasks_done if partial.progress else 0
        return done > seen and not partial.complete, max(seen, done)

    def _raise_from_conflict(self, exc: APIError) -> None:
        """The result endpoint answers 409 for a failed or cancelled job: raise the job's error."""
        if exc.code in ("job_failed", "job_cancelled") and "job" in exc.details:
            self._raise_for_final(parse(JobInfo, exc.details["job"]))

    def _interrupt_line(self, url: str) -> str:
        if self.cancel_on_error and self._inside:
            return f"qfleet: interrupted; cancelling job {self.id}"
        return (
            f"qfleet: interrupted; job {self.id} keeps running on the service. Cancel it with "
            f"client.job({self.id!r}).cancel() or DELETE {url}/v1/jobs/{self.id}"
        )

    @contextmanager
    def _noting_interrupt(self, url: str) -> Iterator[None]:
        """Ctrl-C while waiting: say which job is left running and how to cancel it, then re-raise."""
        try:
            yield
        except KeyboardInterrupt:
            print(self._interrupt_line(url), file=sys.stderr, flush=True)
            raise
        except asyncio.CancelledError:
            if _cancelled_by_ctrl_c():
                print(self._interrupt_line(url), file=sys.stderr, flush=True)
            raise

    def _should_cancel(self, exc_type: type[BaseException] | None) -> bool:
        self._inside = False
        return exc_type is not None and self.cancel_on_error


class Job(_BaseJob):
    """A handle on a submitted job: an id and the client that made it.

    As a context manager it cancels the job when the block raises (Ctrl-C included),
    if made with ``cancel_on_error=True``:

    >>> with client.estimate(pubs, cancel_on_error=True) as job:
    ...     result = job.result(timeout=60)
    """

    __slots__ = ("client",)

    def __init__(
        self, client: Client, job_id: str, cancel_on_error: bool = False, ready: JobResultBody | None = None
    ) -> None:
        super().__init__(job_id, cancel_on_error, ready)
        self.client = client

    def __enter__(self) -> Job:
        self._inside = True
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if self._should_cancel(exc_type):
            try:
                self.cancel()
            except QfleetError:
                pass  # the original error matters more; the job may be final already

    def status(self) -> JobInfo:
        """Status and progress (tasks done out of tasks total)."""
        return parse(JobInfo, self.client._job_status(self.id))

    def cancel(self) -> JobInfo:
        """Cancel the job (a final job stays as it is); returns its status."""
        return parse(JobInfo, self.client._job_cancel(self.id))

    def _follow(
        self, deadline: float | None, timeout: float | None, watching: bool
    ) -> Iterator[JobInfo | JobResultBody]:
        """The wait loop: the job's status after each poll, then its result; raises its failure."""
        while True:
            try:
                body = self.client._job_result(self.id, self._next_wait(deadline, watching))
            except APIError as exc:
                self._raise_from_conflict(exc)
                raise
            item = self._interpret(body)
            yield item
            if isinstance(item, JobResultBody):
                return
            self._check_deadline(deadline, timeout)

    def result(self, timeout: float | None = None, progress: bool | None = None) -> JobResult:
        """Wait for the job and return its results; re-raise its failure.

        ``timeout`` bounds the whole wait (:class:`~qfleet.JobTimeoutError` after it; the job
        keeps running). ``progress=True`` shows a progress bar of tasks done (tqdm); by
        default it shows when stderr is a terminal.

        >>> result = job.result(timeout=60)
        >>> result[0].evs.shape
        """
        if self._ready is not None:
            return self._unstacked(self._ready)
        deadline = self._deadline(timeout)
        with self._noting_interrupt(self.client.url), _progress_bar(self.id, progress) as show:
            body = None
            for item in self._follow(deadline, timeout, watching=show is not None):
                if isinstance(item, JobResultBody):
                    body = item  # the loop's last item: it ends here
                elif show is not None:
                    show(item)
        assert body is not None, "the wait loop ends with a result or an error"
        return self._unstacked(body)

    def partial(self) -> JobResult:
        """The results of the tasks finished so far, at once: every array has its full shape,
        NaN where not yet computed, and each PUB's ``mask`` (bool, True where final) says which
        values are ready. Raises the job's failure as :meth:`result` does.

        >>> part = job.partial()
        >>> ready = part[0].evs[part[0].mask]
        """
        try:
            body = self.client._job_partial(self.id)
        except APIError as exc:
            self._raise_from_conflict(exc)
            raise
        return self._partial_of(body)

    @overload
    def stream(self, timeout: float | None = None, *, results: Literal[False] = False) -> Iterator[JobInfo]: ...

    @overload
    def stream(self, timeout: float | None = None, *, results: Literal[True]) -> Iterator[JobResult]: ...

    def stream(self, timeout: float | None = None, *, results: bool = False) -> Iterator[JobInfo] | Iterator[JobResult]:
        """Yield the job's status each time it changes, ending with its final status.

        With ``results=True``, yield a partial result (see :meth:`partial`) as soon as tasks finish
        (the service holds each request until one does), ending with the complete result (status
        ``"done"``, masks all True); the job's failure is raised.

        >>> for info in job.stream(timeout=600):
        ...     print(info.status, info.progress.tasks_done, "/", info.progress.tasks_total)
        >>> for part in job.stream(results=True):
        ...     train_on(part[0].evs[part[0].mask])
        """
        return self._stream_results(timeout) if results else self._stream_status(timeout)

    def _stream_status(self, timeout: float | None) -> Iterator[JobInfo]:
        deadline = self._deadline(timeout)
        last = None
        with self._noting_interrupt(self.client.url):
            try:
                for item in self._follow(deadline, timeout, watching=True):
                    info = item if isinstance(item, JobInfo) else self.status()
                    if info != last:
                        last = info
                        yield info
            except (JobFailedError, JobCancelledError):
                yield self.status()

    def _stream_results(self, timeout: float | None) -> Iterator[JobResult]:
        deadline = self._deadline(timeout)
        seen = 0
        with self._noting_interrupt(self.client.url):
            while True:
                try:  # held by the service until a task beyond ``seen`` finishes (or the job is final)
                    body = self.client._job_partial(self.id, seen, self._next_wait(deadline, False))
                except APIError as exc:
                    self._raise_from_conflict(exc)
                    raise
                part = self._partial_of(body)
                if part.status == "done":
                    yield part
                    return
                fresh, seen = self._advance(part, seen)
                if fresh:
                    yield part
                self._check_deadline(deadline, timeout)


class AsyncJob(_BaseJob):
    """The async twin of :class:`Job`; ``progress`` is off by default (async code runs many jobs at once)."""

    __slots__ = ("client",)

    def __init__(
        self, client: AsyncClient, job_id: str, cancel_on_error: bool = False, ready: JobResultBody | None = None
    ) -> None:
        super().__init__(job_id, cancel_on_error, ready)
        self.client = client

    async def __aenter__(self) -> AsyncJob:
        self._inside = True
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if self._should_cancel(exc_type):
            try:
                await self.cancel()
            except QfleetError:
                pass

    async def status(self) -> JobInfo:
        return parse(JobInfo, await self.client._job_status(self.id))

    async def cancel(self) -> JobInfo:
        return parse(JobInfo, await self.client._job_cancel(self.id))

    async def _follow(
        self, deadline: float | None, timeout: float | None, watching: bool
    ) -> AsyncIterator[JobInfo | JobResultBody]:
        while True:
            try:
                body = await self.client._job_result(self.id, self._next_wait(deadline, watching))
            except APIError as exc:
                self._raise_from_conflict(exc)
                raise
            item = self._interpret(body)
            yield item
            if isinstance(item, JobResultBody):
                return
            self._check_deadline(deadline, timeout)

    async def result(self, timeout: float | None = None, progress: bool | None = False) -> JobResult:
        """Wait for the job and return its results; see :meth:`Job.result`."""
        if self._ready is not None:
            return self._unstacked(self._ready)
        deadline = self._deadline(timeout)
        with self._noting_interrupt(self.client.url), _progress_bar(self.id, progress) as show:
            body = None
            async for item in self._follow(deadline, timeout, watching=show is not None):
                if isinstance(item, JobResultBody):
                    body = item  # the loop's last item: it ends here
                elif show is not None:
                    show(item)
        assert body is not None, "the wait loop ends with a result or an error"
        return self._unstacked(body)

    async def partial(self) -> JobResult:
        """The results of the tasks finished so far; see :meth:`Job.partial`."""
        try:
            body = await self.client._job_partial(self.id)
        except APIError as exc:
            self._raise_from_conflict(exc)
            raise
        return self._partial_of(body)

    @overload
    def stream(self, timeout: float | None = None, *, results: Literal[False] = False) -> AsyncIterator[JobInfo]: ...

    @overload
    def stream(self, timeout: float | None = None, *, results: Literal[True]) -> AsyncIterator[JobResult]: ...

    def stream(
        self, timeout: float | None = None, *, results: bool = False
    ) -> AsyncIterator[JobInfo] | AsyncIterator[JobResult]:
        """Yield the job's status each time it changes, ending with its final status; with
        ``results=True``, partial results as tasks finish, then the complete one. See :meth:`Job.stream`."""
        return self._stream_results(timeout) if results else self._stream_status(timeout)

    async def _stream_status(self, timeout: float | None) -> AsyncIterator[JobInfo]:
        deadline = self._deadline(timeout)
        last = None
        with self._noting_interrupt(self.client.url):
            try:
                async for item in self._follow(deadline, timeout, watching=True):
                    info = item if isinstance(item, JobInfo) else await self.status()
                    if info != last:
                        last = info
                        yield info
            except (JobFailedError, JobCancelledError):
                yield await self.status()

    async def _stream_results(self, timeout: float | None) -> AsyncIterator[JobResult]:
        deadline = self._deadline(timeout)
        seen = 0
        with self._noting_interrupt(self.client.url):
            while True:
                try:
                    body = await self.client._job_partial(self.id, seen, self._next_wait(deadline, False))
                except APIError as exc:
                    self._raise_from_conflict(exc)
                    raise
                part = self._partial_of(body)
                if part.status == "done":
                    yield part
                    return
                fresh, seen = self._advance(part, seen)
                if fresh:
                    yield part
                self._check_deadline(deadline, timeout)

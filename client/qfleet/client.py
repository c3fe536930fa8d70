"""``Client`` and ``AsyncClient``: twins over :class:`~qfleet._base.BaseClient`."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import httpx

from ._base import DEFAULT_TIMEOUT, BaseClient
from .errors import APIError, JobCancelledError, JobFailedError, JobTimeoutError, RateLimitedError, ServerError
from .results import JobResult
from .wire import BackendInfo, JobInfo
from .wire import JobResult as WireJobResult

# One long-poll asks the service to hold the request at most this long.
LONG_POLL_S = 20.0
RETRIES = 8  # ~10 s of backoff: enough for an API or Redis restart


def sse_feed(line: str, buffer: list[str]) -> str | None:
    """Feed one text/event-stream line; returns an event's data when the event ends."""
    if line.startswith("data:"):
        buffer.append(line[5:].lstrip())
    elif not line and buffer:
        data = "\n".join(buffer)
        buffer.clear()
        return data
    return None


def show_progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


def progress_bar(job_id: str) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        raise ImportError("progress bars need tqdm: pip install 'qfleet[progress]'") from None
    return tqdm(total=0, desc=job_id, unit="task", leave=False)


def _raise_for_final(info: JobInfo) -> None:
    if info.status == "failed":
        err = info.error
        raise JobFailedError(info.id, err.code if err else "failed", err.message if err else "")
    if info.status == "cancelled":
        raise JobCancelledError(info.id)


def _final_from_conflict(exc: APIError) -> None:
    """The result endpoint answers 409 for a failed or cancelled job: raise the job's error."""
    if exc.code in ("job_failed", "job_cancelled") and "job" in exc.details:
        _raise_for_final(JobInfo.model_validate(exc.details["job"]))


def _may_retry(method: str, idempotent: bool, exc: Exception) -> bool:
    """GET and DELETE are idempotent; a POST is when it carries an Idempotency-Key."""
    return method != "POST" or idempotent or isinstance(exc, RateLimitedError)


def _retry_delay(exc: Exception, attempt: int) -> float:
    if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
        return float(exc.retry_after)
    return float(min(0.1 * 2.0**attempt, 2.0))


class Job:
    """A handle on a submitted job: just an id and the client that made it."""

    def __init__(self, client: Client, job_id: str) -> None:
        self.client = client
        self.id = job_id

    def __repr__(self) -> str:
        return f"<Job {self.id}>"

    def status(self) -> JobInfo:
        """Status and progress (tasks done out of tasks total)."""
        return JobInfo.model_validate(self.client._get(f"/v1/jobs/{self.id}"))

    def cancel(self) -> JobInfo:
        return JobInfo.model_validate(self.client._request("DELETE", f"/v1/jobs/{self.id}"))

    def stream(self, timeout: float | None = None) -> Iterator[JobInfo]:
        """Yield the job's status each time a task finishes, until it is final (SSE)."""
        with self.client._http.stream(
            "GET", f"/v1/jobs/{self.id}/events", timeout=httpx.Timeout(timeout or LONG_POLL_S + 30.0, connect=5.0)
        ) as response:
            if response.is_error:
                response.read()
                self.client._check(response)
            buffer: list[str] = []
            for line in response.iter_lines():
                if (data := sse_feed(line, buffer)) is not None:
                    yield JobInfo.model_validate_json(data)

    def result(self, timeout: float | None = None, progress: bool | None = None) -> JobResult:
        """Wait for the job and return its results; re-raise its failure.

        ``progress=True`` shows a progress bar of tasks done (tqdm); by default it shows
        when stderr is a terminal.

        >>> result = job.result(timeout=60)
        >>> result[0].evs.shape
        """
        if show_progress(progress):
            with progress_bar(self.id) as bar:
                for info in self.stream(timeout):
                    bar.total = info.progress.tasks_total
                    bar.n = info.progress.tasks_done
                    bar.refresh()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = LONG_POLL_S if deadline is None else max(0.0, min(LONG_POLL_S, deadline - time.monotonic()))
            try:
                body = self.client._get(f"/v1/jobs/{self.id}/result", params={"wait": f"{wait:.3f}"})
            except APIError as exc:
                _final_from_conflict(exc)
                raise
            if "results" in body:
                return JobResult.from_wire(WireJobResult.model_validate(body))
            info = JobInfo.model_validate(body)
            _raise_for_final(info)
            if deadline is not None and time.monotonic() >= deadline:
                raise JobTimeoutError(self.id, timeout or 0.0)


class Client(BaseClient):
    """Synchronous client.

    >>> from qfleet import Client
    >>> client = Client("http://127.0.0.1:8000", api_key="qf_...")
    >>> job = client.estimate([(circuit, "ZZ", [[0.1, 0.2]])], backend="aer")
    >>> job.result(timeout=60)[0].evs
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(url, api_key)
        self._http = httpx.Client(base_url=self.url, headers=self._headers, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, idempotent: bool = False, **kw: Any) -> Any:
        for attempt in range(RETRIES + 1):
            try:
                return self._check(
                    self._http.request(method, path, timeout=kw.pop("timeout", None) or self._http.timeout, **kw)
                )
            except (RateLimitedError, ServerError, httpx.TransportError) as exc:
                if attempt == RETRIES or not _may_retry(method, idempotent, exc):
                    raise
                time.sleep(_retry_delay(exc, attempt))
        raise AssertionError("unreachable")

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        timeout = None
        if params and "wait" in params:
            timeout = httpx.Timeout(float(params["wait"]) + 30.0, connect=5.0)
        return self._request("GET", path, params=params, timeout=timeout)

    def estimate(
        self,
        pubs: Iterable[Any],
        *,
        backend: str = "aer",
        precision: float | None = None,
        shots: int | None = None,
        seed: int | None = None,
        gradient: str | None = None,
        priority: str = "normal",
        noise: bool | None = None,
    ) -> Job:
        """Submit PUBs ``(circuit, observables[, parameter_values[, precision]])``; returns a :class:`Job`.

        Retried submissions carry one Idempotency-Key, so a retry never makes a second job.
        """
        body = self._job_request(pubs, backend, precision, shots, seed, gradient, priority, noise)
        info = JobInfo.model_validate(
            self._request("POST", "/v1/jobs", idempotent=True, json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        )
        return Job(self, info.id)

    def sample(
        self,
        pubs: Iterable[Any],
        *,
        backend: str = "aer",
        shots: int | None = None,
        seed: int | None = None,
        priority: str = "normal",
        noise: bool | None = None,
    ) -> Job:
        """Submit sampler PUBs ``circuit`` or ``(circuit[, parameter_values[, shots]])``; the
        results hold, per PUB, ``registers``: name -> (bits as Qiskit's BitArray lays them out,
        number of bits). ``qfleet.qiskit.Sampler`` turns them into ``BitArray``.

        >>> job = client.sample([(circuit, [[0.1], [0.2]], 1000)], seed=7)
        >>> bits, num_bits = job.result(timeout=60)[0].registers["meas"]
        """
        body = self._job_request(pubs, backend, None, shots, seed, None, priority, noise, primitive="sampler")
        info = JobInfo.model_validate(
            self._request("POST", "/v1/jobs", idempotent=True, json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        )
        return Job(self, info.id)

    def job(self, job_id: str) -> Job:
        return Job(self, job_id)

    def backends(self) -> list[BackendInfo]:
        return [BackendInfo.model_validate(b) for b in self._get("/v1/backends")]

    def backend(self, name: str) -> BackendInfo:
        return BackendInfo.model_validate(self._get(f"/v1/backends/{name}"))


class AsyncJob:
    """The async twin of :class:`Job`."""

    def __init__(self, client: AsyncClient, job_id: str) -> None:
        self.client = client
        self.id = job_id

    def __repr__(self) -> str:
        return f"<AsyncJob {self.id}>"

    async def status(self) -> JobInfo:
        return JobInfo.model_validate(await self.client._get(f"/v1/jobs/{self.id}"))

    async def cancel(self) -> JobInfo:
        return JobInfo.model_validate(await self.client._request("DELETE", f"/v1/jobs/{self.id}"))

    async def stream(self, timeout: float | None = None) -> AsyncIterator[JobInfo]:
        """Yield the job's status each time a task finishes, until it is final (SSE)."""
        async with self.client._http.stream(
            "GET", f"/v1/jobs/{self.id}/events", timeout=httpx.Timeout(timeout or LONG_POLL_S + 30.0, connect=5.0)
        ) as response:
            if response.is_error:
                await response.aread()
                self.client._check(response)
            buffer: list[str] = []
            async for line in response.aiter_lines():
                if (data := sse_feed(line, buffer)) is not None:
                    yield JobInfo.model_validate_json(data)

    async def result(self, timeout: float | None = None) -> JobResult:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = LONG_POLL_S if deadline is None else max(0.0, min(LONG_POLL_S, deadline - time.monotonic()))
            try:
                body = await self.client._get(f"/v1/jobs/{self.id}/result", params={"wait": f"{wait:.3f}"})
            except APIError as exc:
                _final_from_conflict(exc)
                raise
            if "results" in body:
                return JobResult.from_wire(WireJobResult.model_validate(body))
            info = JobInfo.model_validate(body)
            _raise_for_final(info)
            if deadline is not None and time.monotonic() >= deadline:
                raise JobTimeoutError(self.id, timeout or 0.0)


class AsyncClient(BaseClient):
    """Asynchronous client with the same methods as :class:`Client`."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(url, api_key)
        self._http = httpx.AsyncClient(base_url=self.url, headers=self._headers, timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, idempotent: bool = False, **kw: Any) -> Any:
        for attempt in range(RETRIES + 1):
            try:
                response = await self._http.request(
                    method, path, timeout=kw.pop("timeout", None) or self._http.timeout, **kw
                )
                return self._check(response)
            except (RateLimitedError, ServerError, httpx.TransportError) as exc:
                if attempt == RETRIES or not _may_retry(method, idempotent, exc):
                    raise
                await asyncio.sleep(_retry_delay(exc, attempt))
        raise AssertionError("unreachable")

    async def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        timeout = None
        if params and "wait" in params:
            timeout = httpx.Timeout(float(params["wait"]) + 30.0, connect=5.0)
        return await self._request("GET", path, params=params, timeout=timeout)

    async def estimate(
        self,
        pubs: Iterable[Any],
        *,
        backend: str = "aer",
        precision: float | None = None,
        shots: int | None = None,
        seed: int | None = None,
        gradient: str | None = None,
        priority: str = "normal",
        noise: bool | None = None,
    ) -> AsyncJob:
        body = self._job_request(pubs, backend, precision, shots, seed, gradient, priority, noise)
        info = JobInfo.model_validate(
            await self._request(
                "POST", "/v1/jobs", idempotent=True, json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
            )
        )
        return AsyncJob(self, info.id)

    async def sample(
        self,
        pubs: Iterable[Any],
        *,
        backend: str = "aer",
        shots: int | None = None,
        seed: int | None = None,
        priority: str = "normal",
        noise: bool | None = None,
    ) -> AsyncJob:
        """The async twin of :meth:`Client.sample`."""
        body = self._job_request(pubs, backend, None, shots, seed, None, priority, noise, primitive="sampler")
        info = JobInfo.model_validate(
            await self._request(
                "POST", "/v1/jobs", idempotent=True, json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
            )
        )
        return AsyncJob(self, info.id)

    def job(self, job_id: str) -> AsyncJob:
        return AsyncJob(self, job_id)

    async def backends(self) -> list[BackendInfo]:
        return [BackendInfo.model_validate(b) for b in await self._get("/v1/backends")]

    async def backend(self, name: str) -> BackendInfo:
        return BackendInfo.model_validate(await self._get(f"/v1/backends/{name}"))

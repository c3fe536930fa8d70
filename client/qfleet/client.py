"""``Client`` and ``AsyncClient``: twins over :class:`~qfleet._base.BaseClient` that add only I/O."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import httpx

from ._base import (
    DEFAULT_RETRY_S,
    DEFAULT_SUBMIT_WAIT_S,
    DEFAULT_TIMEOUT,
    RETRYABLE,
    BaseClient,
    TagFilter,
    group_pubs,
    parse,
    submitted,
)
from ._jobs import AsyncJob, Job
from .wire import BackendInfo, JobInfo, JobList

__all__ = ["AsyncClient", "AsyncJob", "Client", "Job"]


class Client(BaseClient):
    """Synchronous client.

    ``retry_s`` is how long transport errors and 5xx answers are retried once the service
    has answered (an API or Redis restart is ridden out); a service never reached gets about
    a second, then :class:`~qfleet.TransportError`.

    ``submit_wait`` (seconds, default 0.25; 0 turns it off): a submission asks the service to
    answer once the job is done if it expects that within this time, so a small job's result
    comes back with the submission and ``result()`` makes no second request. A bigger job is
    answered at once; a submission blocks at most this long.

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
        retry_s: float = DEFAULT_RETRY_S,
        transport: httpx.BaseTransport | None = None,
        submit_wait: float = DEFAULT_SUBMIT_WAIT_S,
    ) -> None:
        super().__init__(url, api_key, retry_s, submit_wait)
        self._http = httpx.Client(base_url=self.url, headers=self._headers, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(
        self, method: str, path: str, *, idempotent: bool = False, timeout: httpx.Timeout | None = None, **kw: Any
    ) -> Any:
        started = time.monotonic()
        for attempt in itertools.count():
            try:
                response = self._http.request(method, path, timeout=timeout or self._http.timeout, **kw)
                return self._check(response)
            except RETRYABLE as exc:
                delay = self._retry_delay(method, idempotent, exc, attempt, time.monotonic() - started)
                if delay is None:
                    self._give_up(exc)
                time.sleep(delay)
        raise AssertionError("unreachable")

    # The narrow protocol the job handles use.
    def _job_status(self, job_id: str) -> Any:
        return self._request("GET", f"/v1/jobs/{job_id}")

    def _job_result(self, job_id: str, wait: float) -> Any:
        return self._request(
            "GET", f"/v1/jobs/{job_id}/result", params={"wait": f"{wait:.3f}"}, timeout=self._wait_timeout(wait)
        )

    def _job_cancel(self, job_id: str) -> Any:
        return self._request("DELETE", f"/v1/jobs/{job_id}")

    def _job_partial(self, job_id: str, after: int | None = None, wait: float = 0.0) -> Any:
        return self._request(
            "GET",
            f"/v1/jobs/{job_id}/result",
            params=self._partial_params(after, wait),
            timeout=self._wait_timeout(wait),
        )

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
        cache: bool = True,
        cancel_on_error: bool = False,
        tags: dict[str, str] | None = None,
    ) -> Job:
        """Submit PUBs ``(circuit, observables[, parameter_values[, precision]])``; returns a :class:`Job`.

        Options (checked before sending: :class:`~qfleet.InvalidRequestError` names the allowed values):

        - ``backend``: a name from :meth:`backends` (``"aer"``, ``"lightning"``, ``"wukong72"``, ...).
        - ``precision``: target standard error for PUBs without their own; 0 or None is exact
          where the backend allows.
        - ``shots`` (>= 1) and ``seed`` (>= 0): shot-based estimates, reproducible with a seed.
        - ``gradient``: ``"parameter-shift"``, ``"adjoint"`` (exact simulation) or ``"auto"``; the
          result then has ``.gradient`` of shape ``evs.shape + (P,)``.
        - ``priority``: ``"high"``, ``"normal"`` or ``"low"`` (the queue lane).
        - ``noise``: device models only; False turns the noise model off.
        - ``cache``: False computes everything again instead of reusing this tenant's identical
          earlier work (exact results, or shot-based ones with the same seed) within the
          service's cache TTL.
        - ``cancel_on_error``: ``with client.estimate(...) as job:`` cancels the job if the block
          raises (Ctrl-C included).
        - ``tags``: labels of your own, e.g. ``{"run": "exp7", "step": "12"}`` (at most 16; keys of
          letters, digits and ``_.-``), shown in the job's status and on the dashboard;
          :meth:`jobs` finds jobs by them.

        Retried submissions carry one Idempotency-Key, so a retry never makes a second job.
        """
        pubs, layout = _stacked(pubs, precision, shots, seed)
        body = self._job_request(
            pubs,
            backend,
            precision,
            shots,
            seed,
            gradient,
            priority,
            noise,
            cache=cache,
            tags=tags,
            layout=layout,
            qpy_version=self._qpy_version,
        )
        info = submitted(self._request("POST", "/v1/jobs", idempotent=True, json=body, **self._submit_args()))
        job = Job(self, info.id, cancel_on_error, info.result)
        job.layout = layout
        return job

    def sample(
        self,
        pubs: Iterable[Any],
        *,
        backend: str = "aer",
        shots: int | None = None,
        seed: int | None = None,
        priority: str = "normal",
        noise: bool | None = None,
        cache: bool = True,
        cancel_on_error: bool = False,
        tags: dict[str, str] | None = None,
    ) -> Job:
        """Submit sampler PUBs ``circuit`` or ``(circuit[, parameter_values[, shots]])``; the
        results hold, per PUB, ``registers``: name -> (bits as Qiskit's BitArray lays them out,
        number of bits). ``qfleet.qiskit.Sampler`` turns them into ``BitArray``.

        >>> job = client.sample([(circuit, [[0.1], [0.2]], 1000)], seed=7)
        >>> bits, num_bits = job.result(timeout=60)[0].registers["meas"]
        """
        body = self._job_request(
            pubs,
            backend,
            None,
            shots,
            seed,
            None,
            priority,
            noise,
            primitive="sampler",
            cache=cache,
            tags=tags,
            qpy_version=self._qpy_version,
        )
        info = submitted(self._request("POST", "/v1/jobs", idempotent=True, json=body, **self._submit_args()))
        return Job(self, info.id, cancel_on_error, info.result)

    def job(self, job_id: str, cancel_on_error: bool = False) -> Job:
        """A handle on a job submitted earlier, by this process or another: ``.result()``,
        ``.partial()``, ``.stream()`` and ``.cancel()`` work as on the one ``estimate`` returned.
        No request is made here; a job that is unknown, expired or another tenant's raises
        :class:`~qfleet.NotFoundError` at the first call.

        >>> job = client.job("j-6f1c2a9d0b3e4f5a")
        >>> job.result(timeout=60)[0].evs
        """
        return Job(self, job_id, cancel_on_error)

    def jobs(
        self,
        *,
        status: str | None = None,
        backend: str | None = None,
        tag: TagFilter = None,
        since: float | None = None,
        page_size: int = 50,
    ) -> Iterator[JobInfo]:
        """This tenant's jobs, newest first, as they match every filter given; pages are fetched
        as the iteration reaches them.

        ``tag``: ``"run:exp7"``, a list of such, or a dict (every one must match); ``since``:
        Unix seconds. Jobs are kept for a day.

        >>> for info in client.jobs(tag={"run": "exp7"}, status="done"):
        ...     print(info.id, info.tags["step"], client.job(info.id).result()[0].evs.mean())
        """
        cursor = None
        while True:
            page = self.jobs_page(status=status, backend=backend, tag=tag, since=since, limit=page_size, cursor=cursor)
            yield from page.jobs
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def jobs_page(
        self,
        *,
        status: str | None = None,
        backend: str | None = None,
        tag: TagFilter = None,
        since: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobList:
        """One page of :meth:`jobs`: pass its ``next_cursor`` as ``cursor`` for the next."""
        params = self._list_params(status, backend, tag, since, limit, cursor)
        return parse(JobList, self._request("GET", "/v1/jobs", params=params))

    def backends(self) -> list[BackendInfo]:
        return [parse(BackendInfo, b) for b in self._request("GET", "/v1/backends")]

    def backend(self, name: str) -> BackendInfo:
        return parse(BackendInfo, self._request("GET", f"/v1/backends/{name}"))


class AsyncClient(BaseClient):
    """Asynchronous client with the same methods as :class:`Client`."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry_s: float = DEFAULT_RETRY_S,
        transport: httpx.AsyncBaseTransport | None = None,
        submit_wait: float = DEFAULT_SUBMIT_WAIT_S,
    ) -> None:
        super().__init__(url, api_key, retry_s, submit_wait)
        self._http = httpx.AsyncClient(base_url=self.url, headers=self._headers, timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(
        self, method: str, path: str, *, idempotent: bool = False, timeout: httpx.Timeout | None = None, **kw: Any
    ) -> Any:
        started = time.monotonic()
        for attempt in itertools.count():
            try:
                response = await self._http.request(method, path, timeout=timeout or self._http.timeout, **kw)
                return self._check(response)
            except RETRYABLE as exc:
                delay = self._retry_delay(method, idempotent, exc, attempt, time.monotonic() - started)
                if delay is None:
                    self._give_up(exc)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _job_status(self, job_id: str) -> Any:
        return await self._request("GET", f"/v1/jobs/{job_id}")

    async def _job_result(self, job_id: str, wait: float) -> Any:
        return await self._request(
            "GET", f"/v1/jobs/{job_id}/result", params={"wait": f"{wait:.3f}"}, timeout=self._wait_timeout(wait)
        )

    async def _job_cancel(self, job_id: str) -> Any:
        return await self._request("DELETE", f"/v1/jobs/{job_id}")

    async def _job_partial(self, job_id: str, after: int | None = None, wait: float = 0.0) -> Any:
        return await self._request(
            "GET",
            f"/v1/jobs/{job_id}/result",
            params=self._partial_params(after, wait),
            timeout=self._wait_timeout(wait),
        )

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
        cache: bool = True,
        cancel_on_error: bool = False,
        tags: dict[str, str] | None = None,
    ) -> AsyncJob:
        """Submit PUBs; returns an :class:`AsyncJob`. See :meth:`Client.estimate`."""
        pubs, layout = _stacked(pubs, precision, shots, seed)
        body = self._job_request(
            pubs,
            backend,
            precision,
            shots,
            seed,
            gradient,
            priority,
            noise,
            cache=cache,
            tags=tags,
            layout=layout,
            qpy_version=self._qpy_version,
        )
        info = submitted(await self._request("POST", "/v1/jobs", idempotent=True, json=body, **self._submit_args()))
        job = AsyncJob(self, info.id, cancel_on_error, info.result)
        job.layout = layout
        return job

    async def sample(
        self,
        pubs: Iterable[Any],
        *,
        backend: str = "aer",
        shots: int | None = None,
        seed: int | None = None,
        priority: str = "normal",
        noise: bool | None = None,
        cache: bool = True,
        cancel_on_error: bool = False,
        tags: dict[str, str] | None = None,
    ) -> AsyncJob:
        """Submit sampler PUBs; returns an :class:`AsyncJob`. See :meth:`Client.sample`."""
        body = self._job_request(
            pubs,
            backend,
            None,
            shots,
            seed,
            None,
            priority,
            noise,
            primitive="sampler",
            cache=cache,
            tags=tags,
            qpy_version=self._qpy_version,
        )
        info = submitted(await self._request("POST", "/v1/jobs", idempotent=True, json=body, **self._submit_args()))
        return AsyncJob(self, info.id, cancel_on_error, info.result)

    def job(self, job_id: str, cancel_on_error: bool = False) -> AsyncJob:
        """A handle on a job submitted earlier; see :meth:`Client.job`."""
        return AsyncJob(self, job_id, cancel_on_error)

    async def jobs(
        self,
        *,
        status: str | None = None,
        backend: str | None = None,
        tag: TagFilter = None,
        since: float | None = None,
        page_size: int = 50,
    ) -> AsyncIterator[JobInfo]:
        """This tenant's jobs, newest first (``async for``); see :meth:`Client.jobs`."""
        cursor = None
        while True:
            page = await self.jobs_page(
                status=status, backend=backend, tag=tag, since=since, limit=page_size, cursor=cursor
            )
            for info in page.jobs:
                yield info
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def jobs_page(
        self,
        *,
        status: str | None = None,
        backend: str | None = None,
        tag: TagFilter = None,
        since: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobList:
        """One page of :meth:`jobs`; see :meth:`Client.jobs_page`."""
        params = self._list_params(status, backend, tag, since, limit, cursor)
        return parse(JobList, await self._request("GET", "/v1/jobs", params=params))

    async def backends(self) -> list[BackendInfo]:
        return [parse(BackendInfo, b) for b in await self._request("GET", "/v1/backends")]

    async def backend(self, name: str) -> BackendInfo:
        return parse(BackendInfo, await self._request("GET", f"/v1/backends/{name}"))


def _stacked(pubs: Iterable[Any], precision: float | None, shots: int | None, seed: int | None) -> tuple[Any, Any]:
    """Exact, unseeded jobs send PUBs that share a circuit, observables and values shape as one
    stacked PUB (see ``_base.group_pubs``); the job hands back one result per PUB sent. Shot-based
    or seeded jobs go as they are: there each PUB keeps seeds of its own."""
    pubs = list(pubs)
    if precision or shots or seed is not None:
        return pubs, None
    return group_pubs(pubs)

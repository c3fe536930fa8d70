"""The small-job rows' peers: what a service built on RQ and served over HTTP cannot go below.

- :func:`rq_peer`: RQ's own no-op job round trip (warm non-forking ``SimpleWorker``s on the
  service's Redis; enqueue → result), the queue qfleet is built on.
- :func:`http_peer`: an HTTP no-op round trip, the same body posted by the same client library
  (httpx, one kept-alive connection) to a bare FastAPI app on uvicorn with the API's server
  options, which reads it and answers ``{"ok": true}``: the web stack qfleet is built on.

A one-circuit job through qfleet costs at least the two together: a request in and its answer
out, and a task through RQ.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
from fastapi import FastAPI, Request

from qfleet_server.stack import free_port

# The bare app the HTTP peer serves: uvicorn loads it as qfleet_server.bench.peers:http_app.
http_app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@http_app.post("/noop")
async def _noop_route(request: Request) -> dict[str, bool]:
    await request.body()
    return {"ok": True}


def noop() -> None:
    """The RQ peer's job: nothing, so its round trip is the queue's own cost."""


@contextmanager
def rq_peer(redis_url: str, workers: int) -> Iterator[Callable[[], float]]:
    """``workers`` warm non-forking RQ SimpleWorkers on the same Redis; yields a function that
    enqueues one no-op job and waits for its result (enqueue → result), returning the seconds:
    the floor qfleet's small-job path is built on."""
    from redis import Redis
    from rq import Queue
    from rq.serializers import JSONSerializer

    args = [sys.executable, "-m", "rq.cli", "worker", "-u", redis_url, "-w", "rq.worker.SimpleWorker", "-S", "json"]
    procs = [
        subprocess.Popen(args + ["-q", "bench-noop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(workers)
    ]
    try:
        queue = Queue("bench-noop", connection=Redis.from_url(redis_url), serializer=JSONSerializer)

        def one() -> float:
            t0 = time.perf_counter()
            job = queue.enqueue("qfleet_server.bench.peers.noop")
            if job.latest_result(timeout=30) is None:
                raise RuntimeError("the RQ peer worker did not answer")
            return time.perf_counter() - t0

        for _ in range(10 * workers):  # the first ones warm the workers
            one()
        yield one
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


@contextmanager
def http_peer(body: bytes, headers: dict[str, str]) -> Iterator[Callable[[], float]]:
    """A bare FastAPI app on uvicorn (the API's server options, uvicorn's own HTTP protocol);
    yields a function that posts ``body`` with ``headers`` and reads the JSON answer, returning
    the seconds."""
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "qfleet_server.bench.peers:http_app", "--host", "127.0.0.1"]
    args += ["--port", str(port), "--log-level", "warning", "--no-access-log", "--ws", "none"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    client.post("/noop", content=body, headers=headers).raise_for_status()
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("the HTTP peer did not start") from None
                    time.sleep(0.1)

            def one() -> float:
                t0 = time.perf_counter()
                client.post("/noop", content=body, headers=headers).json()
                return time.perf_counter() - t0

            for _ in range(10):
                one()
            yield one
    finally:
        proc.terminate()
        proc.wait(10)


def rq_floor(redis_url: str, count: int, workers: int, clients: int) -> tuple[list[float], float]:
    """RQ's own no-op jobs, enqueued and waited for by ``clients`` threads, ``count`` jobs each,
    run by ``workers`` warm SimpleWorkers: (latencies, jobs per second)."""
    with rq_peer(redis_url, workers) as one:
        return concurrently(one, count, clients)


def concurrently(one: Callable[[], float], count: int, clients: int) -> tuple[list[float], float]:
    """``clients`` threads each calling ``one`` ``count`` times: (every latency, calls per second)."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        runs = list(pool.map(lambda _: [one() for _ in range(count)], range(clients)))
    wall = time.perf_counter() - t0
    return [x for run in runs for x in run], clients * count / wall

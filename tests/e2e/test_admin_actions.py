"""Dashboard actions over HTTP with an admin key: pause and resume a backend, re-queue a
failed job's tasks, drain a worker. Each is written to the audit log."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
from qfleet import Client
from redis import Redis

from bench.workloads import training_ansatz
from service.stack import Stack
from service.store import Store

pytestmark = pytest.mark.e2e


def admin(stack: Stack) -> httpx.Client:
    return httpx.Client(
        base_url=stack.url, headers={"Authorization": f"Bearer {stack.api_key}"}, follow_redirects=False
    )


def test_pause_and_resume_a_backend(stack: Stack, client: Client) -> None:
    circuit = training_ansatz(4)
    with admin(stack) as http:
        assert http.post("/admin/backends/lightning/pause").status_code == 303
        job = client.estimate([(circuit, "ZIII", np.zeros((4, circuit.num_parameters)))], backend="lightning")
        time.sleep(1.5)
        assert job.status().progress.tasks_done == 0  # held while paused
        assert http.post("/admin/backends/lightning/resume").status_code == 303
        assert job.result(timeout=30)[0].evs.shape == (4,)
        assert "pause backend" in http.get("/admin/backends").text


def test_requeue_the_failed_tasks_of_a_job(stack: Stack, client: Client) -> None:
    circuit = training_ansatz(14)
    store = Store(Redis.from_url(stack.redis_url or ""))
    job = client.estimate([(circuit, [["Z" + "I" * 13]] * 2, np.zeros((3000, circuit.num_parameters)))])
    store.finish(job.id, "failed", "test", "failed on purpose")  # its queued tasks are then skipped
    assert job.status().status == "failed"
    with admin(stack) as http:
        assert http.post(f"/admin/jobs/{job.id}/requeue").status_code == 303
    result = job.result(timeout=120)[0]
    assert result.evs.shape == (2, 3000) and np.allclose(result.evs, 1.0)  # all-zero angles: <Z> = 1


def test_drain_a_worker(stack: Stack) -> None:
    redis = Redis.from_url(stack.redis_url or "")
    name, proc = next((n, p) for n, p in stack.procs.items() if n.startswith("worker"))
    worker_name = proc.args[-1]  # type: ignore[index]
    with admin(stack) as http:
        assert http.post(f"/admin/workers/{worker_name}/drain").status_code == 303
    assert proc.wait(30) == 0  # finished and exited cleanly
    del stack.procs[name]
    stack.start_worker(100, 1)  # keep the shared stack at full strength for other tests
    stack.wait_ready(60)
    assert any(a["action"] == "drain worker" for a in Store(redis).audit_log(10))

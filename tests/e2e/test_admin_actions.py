"""Admin actions over HTTP with an admin key as Bearer (scripts and curl; no cookie, so no CSRF
token): pause and resume a backend, re-queue a failed job's tasks where that can help, drain a
worker, and the REST admin routes. Each is written to the audit log, with who, what, target,
when and through which door, and to the API's log."""

from __future__ import annotations

import io
import json
import logging
import time

import httpx
import numpy as np
import pytest
from qfleet import Client
from redis import Redis

from qfleet_server.audit import audit
from qfleet_server.bench.workloads import training_ansatz
from qfleet_server.logs import JsonFormatter
from qfleet_server.stack import Stack
from qfleet_server.store import Store

pytestmark = pytest.mark.e2e


def admin(stack: Stack) -> httpx.Client:
    return httpx.Client(
        base_url=stack.url, headers={"Authorization": f"Bearer {stack.api_key}"}, follow_redirects=False
    )


def store_of(stack: Stack) -> Store:
    return Store(Redis.from_url(stack.redis_url or ""))


def entries(stack: Stack, action: str) -> list[dict[str, object]]:
    return [a for a in store_of(stack).audit_log(100) if a["action"] == action]


def test_pause_and_resume_a_backend(stack: Stack, client: Client) -> None:
    circuit = training_ansatz(4)
    with admin(stack) as http:
        response = http.post("/admin/backends/lightning/pause")
        assert response.status_code == 303 and response.headers["location"] == "/admin/backends"
        job = client.estimate([(circuit, "ZIII", np.zeros((4, circuit.num_parameters)))], backend="lightning")
        time.sleep(1.5)
        assert job.status().progress.tasks_done == 0  # held while paused
        (lightning,) = [b for b in client.backends() if b.name == "lightning"]
        assert lightning.status == "paused"
        assert http.post("/admin/backends/lightning/resume").status_code == 303
        assert job.result(timeout=30)[0].evs.shape == (4,)
        assert "pause backend" in http.get("/admin/audit").text
    prefix = stack.api_key[:10]
    (last,) = entries(stack, "pause backend")[:1]
    assert last["actor"] == prefix and last["target"] == "lightning" and last["via"] == "dashboard"


def test_requeue_the_tasks_of_a_job_whose_worker_was_lost(stack: Stack, client: Client) -> None:
    circuit = training_ansatz(14)
    store = store_of(stack)
    job = client.estimate([(circuit, [["Z" + "I" * 13]] * 2, np.zeros((3000, circuit.num_parameters)))])
    # as the lease reaper does when a task lost its worker too often
    store.record_failure(job.id, 0, "aer", "dev", "abandoned", "task 0 lost its worker 3 times; giving up")
    assert store.finish(job.id, "failed", "task_abandoned", "task 0 lost its worker 3 times; giving up")
    assert job.status().status == "failed"
    with admin(stack) as http:
        assert http.post(f"/admin/jobs/{job.id}/requeue").status_code == 303
    result = job.result(timeout=120)[0]
    assert result.evs.shape == (2, 3000) and np.allclose(result.evs, 1.0)  # all-zero angles: <Z> = 1
    assert entries(stack, "requeue failed tasks")[0]["target"] == job.id


def test_no_requeue_where_the_failure_would_repeat(stack: Stack, client: Client) -> None:
    circuit = training_ansatz(4)
    store = store_of(stack)
    job = client.estimate([(circuit, "ZIII", np.zeros((2, circuit.num_parameters)))])
    job.result(timeout=30)
    wide = training_ansatz(14)
    job2 = client.estimate([(wide, "Z" + "I" * 13, np.zeros((3000, wide.num_parameters)))])  # still running below
    store.record_failure(job2.id, 0, "aer", "dev", "ValueError", "cannot reshape array")
    assert store.finish(job2.id, "failed", "task_failed", "task 0 failed: ValueError: cannot reshape array")
    with admin(stack) as http:
        page = http.get(f"/admin/jobs/{job2.id}").text
        assert 'id="requeue"' not in page and 'id="no-requeue"' in page
        refused = http.post(f"/admin/jobs/{job2.id}/requeue")
        assert refused.status_code == 409 and "transient" in refused.text
        assert http.post(f"/admin/jobs/{job.id}/requeue").status_code == 409  # done: nothing to re-queue
    assert job2.status().status == "failed"
    assert job2.status().error.code == "task_failed"


def test_drain_a_worker(stack: Stack) -> None:
    name, proc = next((n, p) for n, p in stack.procs.items() if n.startswith("worker"))
    worker_name = proc.args[-1]  # type: ignore[index]
    with admin(stack) as http:
        assert http.post("/admin/workers/no-such-worker/drain").status_code == 404
        assert http.post(f"/admin/workers/{worker_name}/drain").status_code == 303
    assert proc.wait(30) == 0  # finished and exited cleanly
    del stack.procs[name]
    stack.start_worker(100, 1)  # keep the shared stack at full strength for other tests
    stack.wait_ready(60)
    assert entries(stack, "drain worker")[0]["target"] == worker_name


def test_rest_admin_actions_are_audited(stack: Stack) -> None:
    prefix = stack.api_key[:10]
    with admin(stack) as http:
        created = http.post("/v1/admin/keys", json={"tenant": "audited", "role": "user"})
        assert created.status_code == 201
        new_prefix = created.json()["prefix"]
        limits = http.get("/v1/admin/tenants/audited/limits").json()
        assert http.put("/v1/admin/tenants/audited/limits", json={**limits, "max_shots": 1234}).status_code == 200
        assert http.delete(f"/v1/admin/keys/{new_prefix}").status_code == 204
        page = http.get("/admin/audit").text
    (made,) = entries(stack, "create key")[:1]
    assert made["actor"] == prefix and made["target"] == new_prefix and made["via"] == "rest"
    assert made["tenant"] == "audited" and made["role"] == "user"
    changed = entries(stack, "set limits")[0]
    assert changed["target"] == "audited" and changed["changed"] == {"max_shots": [limits["max_shots"], 1234]}
    assert entries(stack, "revoke key")[0]["target"] == new_prefix
    for action in ("create key", "set limits", "revoke key"):
        assert action in page
    assert stack.api_key not in json.dumps(store_of(stack).audit_log(100))  # prefixes only
    log = (stack.log_dir / "api.log").read_text()  # type: ignore[operator]
    assert "admin action: set limits audited" in log and f"actor={prefix}" in log


def test_audit_entries_are_json_log_lines(clean_redis: str) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("qfleet.audit")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        audit(Store(Redis.from_url(clean_redis)), "qf_abcdefg", "revoke key", "qf_1234567", "rest")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    line = json.loads(stream.getvalue().strip())
    assert line["actor"] == "qf_abcdefg" and line["action"] == "revoke key" and line["target"] == "qf_1234567"
    assert line["via"] == "rest" and line["ts"].endswith("Z")
    (stored,) = Store(Redis.from_url(clean_redis)).audit_log()
    assert stored["actor"] == "qf_abcdefg" and stored["via"] == "rest" and stored["t"] > 0

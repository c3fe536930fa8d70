"""/metrics parses with prometheus-client's own parser and moves when work is done, fails,
or is asked for over HTTP."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from qfleet import Client
from redis import Redis

from qfleet_server.bench.workloads import training_ansatz
from qfleet_server.stack import Stack
from qfleet_server.store import Store

pytestmark = pytest.mark.e2e
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(stack: Stack) -> Samples:
    response = httpx.get(f"{stack.url}/metrics", headers={"Authorization": f"Bearer {stack.api_key}"})
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_metrics_parse_and_move(stack: Stack, client: Client) -> None:
    before = scrape(stack)
    circuit = training_ansatz(4)
    client.estimate([(circuit, "ZIII", np.zeros((30, circuit.num_parameters)))]).result(timeout=60)
    after = scrape(stack)
    done = ("qfleet_jobs_total", (("event", "done"),))
    assert after[done] >= before.get(done, 0) + 1
    assert after[("qfleet_tasks_done_total", ())] > before.get(("qfleet_tasks_done_total", ()), 0)
    circuits = ("qfleet_circuit_evaluations_total", (("backend", "aer"), ("tenant", "dev")))
    assert after[circuits] >= before.get(circuits, 0) + 30
    count = ("qfleet_task_duration_seconds_count", (("backend", "aer"),))
    assert after[count] > before.get(count, 0)
    inf = ("qfleet_task_duration_seconds_bucket", (("backend", "aer"), ("le", "+Inf")))
    assert after[inf] == after[count]
    assert after[("qfleet_task_duration_seconds_sum", (("backend", "aer"),))] > 0
    assert ("qfleet_queue_depth", (("backend", "aer"), ("priority", "high"))) in after
    assert httpx.get(f"{stack.url}/metrics").status_code == 401  # needs a key


def test_failed_tasks_are_counted_by_backend_and_reason(stack: Stack, client: Client) -> None:
    store = Store(Redis.from_url(stack.redis_url or ""))
    key = ("qfleet_tasks_failed_total", (("backend", "lightning"), ("reason", "LookupError")))
    before = scrape(stack).get(key, 0)
    store.set_paused("lightning", True)  # the task must not run before its payload is gone
    try:
        circuit = training_ansatz(4)
        job = client.estimate([(circuit, "ZIII", np.zeros((2, circuit.num_parameters)))], backend="lightning")
        store.redis.delete(store.keys.job_data(job.id))
    finally:
        store.set_paused("lightning", False)
    deadline = time.monotonic() + 60
    while job.status().status != "failed":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert scrape(stack)[key] == before + 1  # once, after its retries, not once per try
    (failure,) = store.job_failures(job.id)
    assert failure["reason"] == "LookupError" and "Traceback" in failure["traceback"]


def test_http_requests_by_route_template_and_status(stack: Stack, client: Client) -> None:
    ok = ("qfleet_http_requests_total", (("method", "GET"), ("route", "/v1/backends"), ("status", "200")))
    missing = ("qfleet_http_requests_total", (("method", "GET"), ("route", "/v1/jobs/{job_id}"), ("status", "404")))
    before = scrape(stack)
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    for _ in range(3):
        assert httpx.get(f"{stack.url}/v1/backends", headers=headers).status_code == 200
    for i in range(2):
        assert httpx.get(f"{stack.url}/v1/jobs/j-nope{i}", headers=headers).status_code == 404
    assert httpx.get(f"{stack.url}/no/such/path/{time.time()}").status_code == 404
    after = scrape(stack)
    assert after[ok] == before.get(ok, 0) + 3
    assert after[missing] == before.get(missing, 0) + 2  # labelled by template, not by the id asked for
    assert not any("j-nope" in dict(labels).get("route", "") for _, labels in after)
    assert not any("/no/such" in dict(labels).get("route", "") for _, labels in after)
    latency = ("qfleet_http_request_duration_seconds_count", ok[1])
    assert after[latency] == after[ok]
    assert after[("qfleet_http_request_duration_seconds_sum", ok[1])] > 0

"""/metrics parses with prometheus-client's own parser and moves when work is done."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from qfleet import Client

from bench.workloads import training_ansatz
from service.stack import Stack

pytestmark = pytest.mark.e2e


def scrape(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
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
    assert after[("qfleet_task_duration_seconds_count", ())] > before.get(("qfleet_task_duration_seconds_count", ()), 0)
    assert ("qfleet_queue_depth", (("backend", "aer"), ("priority", "high"))) in after
    assert httpx.get(f"{stack.url}/metrics").status_code == 401  # needs a key

"""Submit-and-wait (``Prefer: wait=N``, RFC 7240) against a real stack: a small job's result comes
back with its submission, a big one is answered at once, and a preference the service cannot
read is ignored, never refused. The client then makes one request per small job."""

from __future__ import annotations

import asyncio
import base64

import httpx
import numpy as np
import pytest
from qfleet import AsyncClient, Client
from qfleet._base import encode_pub
from qiskit.quantum_info import SparsePauliOp, Statevector

from qfleet_server.routes.jobs import MAX_SUBMIT_WAIT_S, prefer_wait
from qfleet_server.stack import Stack
from tests.conftest import random_circuit, training_ansatz

pytestmark = pytest.mark.e2e


def exact(circuit, observable: str, values: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    op = SparsePauliOp(observable)
    return np.array([Statevector(circuit.assign_parameters(row)).expectation_value(op).real for row in values])


def rest_job(circuit, observable: str, values: np.ndarray) -> dict:  # type: ignore[no-untyped-def,type-arg]
    return {"pubs": [encode_pub((circuit, observable, values)).model_dump(mode="json", by_alias=True)]}


def decode(array: dict) -> np.ndarray:  # type: ignore[type-arg]
    return np.frombuffer(base64.b64decode(array["data"]), dtype=array["dtype"]).reshape(array["shape"])


def test_a_small_job_comes_back_done_with_its_result(stack: Stack) -> None:
    rng = np.random.default_rng()
    circuit = random_circuit(3, rng)
    values = rng.uniform(-np.pi, np.pi, (4, circuit.num_parameters))
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    with httpx.Client(base_url=stack.url, headers=headers, timeout=30) as http:
        answer = http.post("/v1/jobs", json=rest_job(circuit, "ZIZ", values), headers={"Prefer": "wait=10"})
        assert answer.status_code == 201, answer.text
        assert answer.headers["Preference-Applied"] == "wait=10"
        body = answer.json()
        assert body["status"] == "done" and body["progress"]["tasks_done"] == body["progress"]["tasks_total"]
        np.testing.assert_allclose(
            decode(body["result"]["results"][0]["evs"]), exact(circuit, "ZIZ", values), atol=1e-8
        )
        again = http.get(f"/v1/jobs/{body['id']}/result")  # the same result stays readable as before
        assert again.status_code == 200 and again.json() == body["result"]


def test_a_job_priced_above_the_wait_is_answered_at_once(stack: Stack) -> None:
    circuit = training_ansatz(16, layers=2)
    values = np.random.default_rng().uniform(0, 1, (512, circuit.num_parameters))
    headers = {"Authorization": f"Bearer {stack.api_key}", "Prefer": "wait=0.05"}
    with httpx.Client(base_url=stack.url, headers=headers, timeout=30) as http:
        answer = http.post("/v1/jobs", json=rest_job(circuit, "Z" * 16, values))
        assert answer.status_code == 201, answer.text
        body = answer.json()
        try:
            assert "Preference-Applied" not in answer.headers
            assert body["status"] in ("queued", "running") and body["result"] is None
        finally:
            http.delete(f"/v1/jobs/{body['id']}")


@pytest.mark.parametrize(
    "prefer", ["wait=abc", "wait=-1", "wait=0", "wait=nan", "wait=inf", "wait=1e400", "respond-async", "wait", ""]
)
def test_a_preference_it_cannot_read_is_ignored(stack: Stack, prefer: str) -> None:
    rng = np.random.default_rng()
    circuit = random_circuit(2, rng)
    values = rng.uniform(-np.pi, np.pi, (1, circuit.num_parameters))
    headers = {"Authorization": f"Bearer {stack.api_key}", "Prefer": prefer}
    answer = httpx.post(f"{stack.url}/v1/jobs", json=rest_job(circuit, "ZZ", values), headers=headers, timeout=30)
    assert answer.status_code == 201, answer.text
    assert "Preference-Applied" not in answer.headers and answer.json()["result"] is None


def test_prefer_wait_reads_rfc_7240_and_caps_the_wait() -> None:
    assert prefer_wait("wait=2") == 2.0
    assert prefer_wait('respond-async, wait="0.5"') == 0.5
    assert prefer_wait("handling=lenient; x=1, WAIT = 3") == 3.0
    assert prefer_wait("wait=100000") == MAX_SUBMIT_WAIT_S
    assert prefer_wait(None) is None and prefer_wait("wait=0") is None and prefer_wait("wait=1e999") is None


class Counting(httpx.HTTPTransport):
    """A real HTTP transport that counts the requests it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        return super().handle_request(request)


@pytest.mark.parametrize("submit_wait", [10.0, 0.0])  # 10 s: never missed on a loaded machine
def test_the_client_makes_one_request_per_small_job(stack: Stack, submit_wait: float) -> None:
    rng = np.random.default_rng()
    circuit = random_circuit(3, rng)
    values = rng.uniform(-np.pi, np.pi, (2, circuit.num_parameters))
    transport = Counting()
    with Client(stack.url, api_key=stack.api_key, transport=transport, submit_wait=submit_wait) as client:
        client.estimate([(circuit, "XYZ", values)]).result(timeout=60)  # the first request learns the QPY version
        transport.requests.clear()
        for _ in range(3):
            values = rng.uniform(-np.pi, np.pi, (2, circuit.num_parameters))
            result = client.estimate([(circuit, "XYZ", values)]).result(timeout=60)
            np.testing.assert_allclose(result[0].evs, exact(circuit, "XYZ", values), atol=1e-8)
    if submit_wait:
        assert transport.requests == ["POST /v1/jobs"] * 3
    else:  # without the preference: a submission, then a long-poll for the result
        assert transport.requests.count("POST /v1/jobs") == 3 and len(transport.requests) >= 6


class AsyncCounting(httpx.AsyncHTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        return await super().handle_async_request(request)


def test_the_async_client_gets_small_results_with_their_submissions(stack: Stack) -> None:
    rng = np.random.default_rng()
    circuit = random_circuit(3, rng)
    rows = [rng.uniform(-np.pi, np.pi, (1, circuit.num_parameters)) for _ in range(8)]
    transport = AsyncCounting()

    async def run() -> list[np.ndarray]:
        async with AsyncClient(stack.url, api_key=stack.api_key, transport=transport, submit_wait=10) as client:
            jobs = await asyncio.gather(*(client.estimate([(circuit, "ZZI", v)]) for v in rows))
            return [(await job.result(timeout=60))[0].evs for job in jobs]

    for evs, values in zip(asyncio.run(run()), rows):
        np.testing.assert_allclose(evs, exact(circuit, "ZZI", values), atol=1e-8)
    assert transport.requests == ["POST /v1/jobs"] * len(rows)  # every result came with its submission


def test_a_retry_and_an_identical_job_come_back_with_the_result_too(stack: Stack) -> None:
    rng = np.random.default_rng()
    circuit = random_circuit(3, rng)
    values = rng.uniform(-np.pi, np.pi, (3, circuit.num_parameters))
    job = rest_job(circuit, "XXZ", values)
    want = exact(circuit, "XXZ", values)
    headers = {"Authorization": f"Bearer {stack.api_key}", "Prefer": "wait=10"}
    with httpx.Client(base_url=stack.url, headers=headers, timeout=30) as http:
        first = http.post("/v1/jobs", json=job, headers={"Idempotency-Key": "same-key"}).json()
        retried = http.post("/v1/jobs", json=job, headers={"Idempotency-Key": "same-key"}).json()
        assert retried["id"] == first["id"] and retried["result"] == first["result"]
        identical = http.post("/v1/jobs", json=job).json()  # a new job (the result cache may answer it at once)
        assert identical["id"] != first["id"] and identical["status"] == "done"
        for body in (first, identical):
            np.testing.assert_allclose(decode(body["result"]["results"][0]["evs"]), want, atol=1e-8)

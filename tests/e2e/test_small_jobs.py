"""The small-job path end to end: after its first submission a client writes the QPY version
the service reads, and results stay those of Aer; many concurrent clients of one tenant wait
for their turns instead of being refused."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from qfleet import Client
from qfleet.wire import QPY_VERSION_HEADER
from qiskit import qpy, transpile
from qiskit_aer import AerSimulator
from qiskit_aer.primitives import EstimatorV2

from qfleet_server.stack import Stack
from tests.conftest import random_circuit

pytestmark = pytest.mark.e2e


def aer(circuit, observable, values):  # type: ignore[no-untyped-def]
    native = transpile(circuit, AerSimulator(), optimization_level=0)
    return EstimatorV2().run([(native, observable, values)]).result()[0].data.evs


def test_after_one_job_the_client_writes_the_services_qpy_version(stack: Stack) -> None:
    rng = np.random.default_rng()
    with Client(stack.url, api_key=stack.api_key) as client:
        assert client._qpy_version is None  # nothing said yet: the pinned version
        for _ in range(3):  # the first job goes at the pinned version, the next ones at the service's
            circuit = random_circuit(3, rng)
            values = rng.uniform(0, 2 * np.pi, (2, circuit.num_parameters))
            got = client.estimate([(circuit, "ZXY", values)]).result(timeout=60)[0].evs
            np.testing.assert_allclose(got, aer(circuit, "ZXY", values), atol=1e-8)
        assert client._qpy_version == qpy.QPY_VERSION  # this service runs the same qiskit
    import httpx

    body = {
        "backend": "aer",
        "pubs": [{"circuit": {"format": "qasm3", "data": "OPENQASM 3.0; qubit[1] q;"}, "observables": "Z"}],
    }
    answer = httpx.post(f"{stack.url}/v1/jobs", json=body, headers={"Authorization": f"Bearer {stack.api_key}"})
    assert answer.status_code == 201 and answer.headers[QPY_VERSION_HEADER] == str(qpy.QPY_VERSION)


def test_many_concurrent_submissions_of_one_tenant_wait_for_turns_not_429(stack: Stack) -> None:
    import httpx
    from qfleet._base import BaseClient

    rng = np.random.default_rng()
    circuit = random_circuit(2, rng)
    values = rng.uniform(0, 2 * np.pi, (24, circuit.num_parameters))
    bodies = [BaseClient._job_request([(circuit, "ZZ", x)], "aer", None, None, None, None) for x in values]

    async def post_all() -> list[httpx.Response]:  # raw HTTP: no client retries to hide a 429
        async with httpx.AsyncClient(base_url=stack.url, headers={"Authorization": f"Bearer {stack.api_key}"}) as http:
            return await asyncio.gather(*(http.post("/v1/jobs", json=b, timeout=60) for b in bodies))

    answers = asyncio.run(post_all())  # 24 at once against max_concurrent_submissions=4
    assert [a.status_code for a in answers] == [201] * 24, [a.text for a in answers if a.status_code != 201][:2]
    with Client(stack.url, api_key=stack.api_key) as client:
        got = [client.job(a.json()["id"]).result(timeout=60)[0].evs for a in answers]
    np.testing.assert_allclose(np.ravel(got), aer(circuit, "ZZ", values), atol=1e-8)

"""End to end: real redis-server, uvicorn and `qfleet worker` processes, the client over HTTP.
Every numeric check is against a direct Aer EstimatorV2 call on fresh random inputs."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from qfleet import AsyncClient, Client, InvalidRequestError, JobCancelledError, NotFoundError
from qiskit import qasm3, transpile
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp
from qiskit_aer import AerSimulator
from qiskit_aer.primitives import EstimatorV2

from qfleet_server.stack import Stack
from tests.conftest import random_circuit, training_ansatz

pytestmark = pytest.mark.e2e


def direct_aer(circuit, observables, values):  # type: ignore[no-untyped-def]
    native = transpile(circuit, AerSimulator(), optimization_level=0)
    return EstimatorV2().run([(native, observables, values)]).result()[0].data.evs


def paulis(n: int, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    flat = [
        SparsePauliOp(["".join(rng.choice(list("IXYZ"), n)) for _ in range(2)], rng.normal(size=2))
        for _ in range(int(np.prod(shape)))
    ]
    arr = np.empty(len(flat), dtype=object)
    arr[:] = flat
    return arr.reshape(shape)


@pytest.mark.parametrize(
    "obs_shape, par_shape",
    [((), ()), ((3, 1), (5,)), ((4,), (4,)), ((2, 1), (1, 3)), ((), (2, 3)), ((3,), ()), ((40,), (40,))],
)
def test_exact_evs_match_aer_with_broadcasting(client: Client, obs_shape, par_shape) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng()  # fresh inputs every run
    n = int(rng.integers(2, 6))
    circuit = random_circuit(n, rng)
    observables = paulis(n, obs_shape, rng) if obs_shape else paulis(n, (1,), rng)[0]
    values = rng.uniform(-np.pi, np.pi, (*par_shape, circuit.num_parameters))
    result = client.estimate([(circuit, observables, values)]).result(timeout=120)
    expected = direct_aer(circuit, observables, values)
    assert result[0].evs.shape == expected.shape == np.broadcast_shapes(obs_shape, par_shape)
    np.testing.assert_allclose(result[0].evs, expected, atol=1e-8)
    assert np.all(result[0].stds == 0)


def test_many_pubs_and_wide_circuits_keep_request_order(client: Client) -> None:
    rng = np.random.default_rng()
    pubs, expected = [], []
    for n in (2, 3, 15, 4, 14):  # 14 and 15 qubits run on Lightning, the rest on Aer
        circuit = training_ansatz(n, layers=1)
        obs = [[SparsePauliOp("I" * (n - 1 - i) + "Z" + "I" * i)] for i in range(min(n, 3))]
        values = rng.uniform(0, 2 * np.pi, (int(rng.integers(1, 9)), circuit.num_parameters))
        pubs.append((circuit, obs, values))
        expected.append(direct_aer(circuit, obs, values))
    result = client.estimate(pubs).result(timeout=120)
    assert len(result) == len(pubs)
    for got, want in zip(result, expected):
        np.testing.assert_allclose(got.evs, want, atol=1e-8)


def test_lightning_backend_and_qasm3_text(client: Client) -> None:
    rng = np.random.default_rng()
    template = training_ansatz(5)
    # OpenQASM text has no parameter vectors: its order is that of qasm3.loads(text).parameters
    # (sorted names), so name the parameters so that sorted order is circuit order.
    circuit = template.assign_parameters({p: Parameter(f"t{i:03d}") for i, p in enumerate(template.parameters)})
    text = qasm3.dumps(circuit)
    values = rng.uniform(0, 2 * np.pi, (6, circuit.num_parameters))
    obs = [["ZIIII"], ["IIXIY"]]
    want = direct_aer(circuit, obs, values)
    for backend in ("lightning", "aer"):
        got = client.estimate([(text, obs, values)], backend=backend).result(timeout=60)
        np.testing.assert_allclose(got[0].evs, want, atol=1e-8)


def test_shot_estimates_agree_within_standard_errors(client: Client) -> None:
    rng = np.random.default_rng()
    circuit = random_circuit(3, rng)
    obs = paulis(3, (4, 1), rng)
    values = rng.uniform(-np.pi, np.pi, (5, circuit.num_parameters))
    result = client.estimate([(circuit, obs, values)], shots=4000, seed=int(rng.integers(1 << 30))).result(timeout=120)[
        0
    ]
    want = direct_aer(circuit, obs, values)
    assert np.all(result.stds > 0)
    assert np.max(np.abs(result.evs - want) / result.stds) < 5.0
    by_precision = client.estimate([(circuit, obs, values, 0.02)]).result(timeout=120)[0]
    assert by_precision.metadata["shots"] == 2500


def test_qiskit_estimator_adapter_returns_qiskit_results(client: Client) -> None:
    from qfleet.qiskit import Estimator
    from qiskit.primitives import PrimitiveResult

    rng = np.random.default_rng()
    circuit = training_ansatz(3)
    values = rng.uniform(0, 2 * np.pi, (4, circuit.num_parameters))
    obs = ["ZII", "IXI"]
    estimator = Estimator(client, backend="aer", options={"timeout": 60})
    job = estimator.run([(circuit, [[o] for o in obs], values)])
    result = job.result()
    assert isinstance(result, PrimitiveResult)
    np.testing.assert_allclose(result[0].data.evs, direct_aer(circuit, [[o] for o in obs], values), atol=1e-8)
    assert result[0].data.stds.shape == (2, 4)
    assert job.done()


def test_async_client_runs_steps_concurrently(stack: Stack) -> None:
    rng = np.random.default_rng()
    circuit = training_ansatz(4)
    batches = [rng.uniform(0, 2 * np.pi, (8, circuit.num_parameters)) for _ in range(6)]

    async def main() -> list[np.ndarray]:
        async with AsyncClient(stack.url, api_key=stack.api_key) as client:
            jobs = await asyncio.gather(*(client.estimate([(circuit, "ZIII", b)]) for b in batches))
            results = await asyncio.gather(*(j.result(timeout=60) for j in jobs))
            return [r[0].evs for r in results]

    for got, values in zip(asyncio.run(main()), batches):
        np.testing.assert_allclose(got, direct_aer(circuit, "ZIII", values), atol=1e-8)


def test_status_cancel_and_errors(client: Client, stack: Stack) -> None:
    circuit = training_ansatz(12)
    values = np.random.default_rng().uniform(0, 1, (4000, circuit.num_parameters))
    job = client.estimate([(circuit, [["Z" + "I" * 11]] * 4, values)])
    status = job.status()
    assert status.progress.tasks_total > 2
    cancelled = job.cancel()
    assert cancelled.status == "cancelled"
    with pytest.raises(JobCancelledError):
        job.result(timeout=10)
    time.sleep(0.5)
    assert job.status().status == "cancelled"  # late results never revive it
    with pytest.raises(NotFoundError):
        client.job("j-nope").status()
    with pytest.raises(InvalidRequestError) as err:
        client.estimate([(circuit, "Z" * 13, values[:1])])
    assert err.value.code == "observable_too_wide"


def test_backends_and_health(client: Client, stack: Stack) -> None:
    backends = {b.name: b for b in client.backends()}
    assert {"aer", "lightning"} <= set(backends)
    aer = client.backend("aer")
    assert aer.status == "online" and aer.workers >= 2 and aer.num_qubits >= 20
    import httpx

    health = httpx.get(f"{stack.url}/healthz").json()
    assert health["status"] == "ok" and health["workers"] >= 2

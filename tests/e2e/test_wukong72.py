"""wukong72 through the service: discovery, validation, 72 qubits, metadata."""

from __future__ import annotations

import numpy as np
import pytest
from qfleet import Client, InvalidRequestError
from qiskit.quantum_info import SparsePauliOp, Statevector

from qfleet_server.bench.workloads import training_ansatz

pytestmark = pytest.mark.e2e


def test_backend_discovery(client: Client) -> None:
    backends = {b.name: b for b in client.backends()}
    device = client.backend("wukong72")
    assert device.num_qubits == 72 and device.status == "online"
    assert len(device.coupling_map or []) == 122 and set(device.native_gates) == {"rz", "sx", "x", "cz", "measure"}
    assert device.calibration and device.calibration["synthetic"] and device.calibration["couplers_disabled"] == 4
    assert device.limits["max_qubits"] == 72 and "noise" in device.options
    for name in ("origin", "ibm"):
        assert backends[name].status == "unavailable" and "credentials" in (backends[name].status_reason or "")


def test_a_72_qubit_job_with_metadata(client: Client) -> None:
    circuit = training_ansatz(72)
    values = np.random.default_rng().uniform(0, 0.3, (4, circuit.num_parameters))
    result = client.estimate(
        [(circuit, ["I" * 71 + "Z", "I" * 70 + "ZZ"], values[:, None, :].repeat(2, 1))],
        backend="wukong72",
        shots=2000,
        seed=3,
    ).result(timeout=300)[0]
    assert result.evs.shape == (4, 2) and np.all(result.stds > 0)
    meta = result.metadata
    assert meta["calibration"] == "wukong72-synthetic-seed7" and meta["shots"] == 2000
    assert (
        meta["engine"].startswith("aer-matrix_product_state")
        and meta["transpiled_depth"] > 0
        and meta["two_qubit_gates"] > 0
    )


def test_noise_off_through_the_service(client: Client) -> None:
    circuit = training_ansatz(4)
    values = np.random.default_rng().uniform(0, 2 * np.pi, (3, circuit.num_parameters))
    obs = [[SparsePauliOp("IIIZ")], [SparsePauliOp("IXXI")]]
    result = client.estimate([(circuit, obs, values)], backend="wukong72", shots=20_000, seed=1, noise=False).result(
        timeout=120
    )[0]
    ideal = np.array(
        [[Statevector(circuit.assign_parameters(x)).expectation_value(o[0]).real for x in values] for o in obs]
    )
    assert np.max(np.abs(result.evs - ideal) / result.stds) < 5.0


def test_device_validation(client: Client) -> None:
    wide = training_ansatz(73)
    with pytest.raises(InvalidRequestError) as err:
        client.estimate([(wide, "Z" * 73, np.zeros((1, wide.num_parameters)))], backend="wukong72")
    assert err.value.code == "too_many_qubits"
    small = training_ansatz(2)
    with pytest.raises(InvalidRequestError) as err:
        client.estimate([(small, "ZZ", np.zeros((1, small.num_parameters)))], backend="aer", noise=False)
    assert err.value.code == "option_not_supported"
    with pytest.raises(InvalidRequestError) as err:
        client.estimate([(small, "ZZ", np.zeros((1, small.num_parameters)))], backend="wukong72", gradient="adjoint")
    assert err.value.code == "gradient_not_supported"
    with pytest.raises(InvalidRequestError) as err:
        client.estimate([(small, "ZZ", np.zeros((1, small.num_parameters)))], backend="origin")
    assert err.value.code == "backend_unavailable"


def test_noisy_estimates_run_on_the_density_matrix_engine_and_match_the_noise_model(client: Client) -> None:
    """A noisy job on a few qubits: the batched density-matrix engine, within the shot error
    of the exact noisy values (Aer's density matrix under the worker's noise model, then the
    readout error on each measured bit)."""
    from qiskit_aer import AerSimulator

    from qfleet_server.devices.wukong72 import Wukong72Backend
    from qfleet_server.worker.engines import Program
    from qfleet_server.worker.engines.device import DeviceEngine

    circuit = training_ansatz(3)
    labels = ["IIZ", "ZZI"]
    values = np.random.default_rng().uniform(0, 2 * np.pi, (4, circuit.num_parameters))
    result = client.estimate(
        [(circuit, [[o] for o in labels], values)], backend="wukong72", shots=4000, seed=11
    ).result(timeout=120)[0]
    assert result.metadata["engine"] == "qfleet-pauli_density_matrix-noisy"
    engine = DeviceEngine(Wukong72Backend(), 1)
    compiled = engine.compile(Program(circuit, [SparsePauliOp(o) for o in labels]))
    simulator = AerSimulator(method="density_matrix", noise_model=engine.noise_model(compiled.physical))
    readout = engine._errors(compiled.physical).readout
    for j, x in enumerate(values):
        bound = compiled.circuit.assign_parameters(x[compiled.columns])
        bound.save_density_matrix()
        rho = simulator.run(bound).result().data()["density_matrix"]
        for k, obs in enumerate(compiled.observables):
            label = obs.paulis.to_labels()[0]
            support = [q for q, ch in enumerate(reversed(label)) if ch != "I"]
            exact = rho.expectation_value(obs).real * np.prod([1 - 2 * readout[q][0, 1] for q in support])
            assert abs(result.evs[k, j] - exact) < 5 * result.stds[k, j]


def test_noisy_jobs_are_priced_from_the_runs_before_them(client: Client) -> None:
    """The device model prices a noisy row at a full density matrix (about a second at n=8);
    the workers record what a row of that work took, and the next job of the same circuit,
    observables and shots is priced from it: a few tasks instead of one per row or two."""
    circuit = training_ansatz(8)
    observables = [["I" * (7 - i) + "Z" + "I" * i] for i in range(8)]
    rng = np.random.default_rng()
    tasks = []
    for _ in range(3):  # fresh values each time: nothing comes from the result cache
        job = client.estimate(
            [(circuit, observables, rng.uniform(0, 2 * np.pi, (16, circuit.num_parameters)))],
            backend="wukong72",
            shots=1024,
        )
        result = job.result(timeout=300)[0]
        assert result.evs.shape == (8, 16) and np.all(np.abs(result.evs) <= 1)
        tasks.append(job.status().progress.tasks_total)
    assert tasks[0] >= 8  # a row or two per task: the model's price
    assert tasks[2] <= 4  # the measured price: a share per worker

"""The wukong72 model, and the real-QPU adapters' translations run locally."""

from __future__ import annotations

import json

import numpy as np
import pytest
from qiskit.quantum_info import SparsePauliOp, Statevector

from qfleet_server.bench.workloads import training_ansatz
from qfleet_server.devices.wukong72 import (
    CALIBRATION_FILE,
    NUM_QUBITS,
    Wukong72Backend,
    generate_calibration,
    grid_edges,
    load_calibration,
)
from qfleet_server.worker.engines import Block, Program
from qfleet_server.worker.engines.device import DeviceEngine
from tests.conftest import random_circuit


def exact(circuit, observables, values):  # type: ignore[no-untyped-def]
    return np.array(
        [[Statevector(circuit.assign_parameters(x)).expectation_value(o).real for x in values] for o in observables]
    )


def test_calibration_is_reproducible_synthetic_and_within_public_ranges() -> None:
    snapshot = load_calibration()
    assert snapshot == json.loads(CALIBRATION_FILE.read_text()) == generate_calibration(7)
    assert snapshot["synthetic"] is True and len(snapshot["qubits"]) == 72
    assert len(grid_edges()) == len(snapshot["couplers"]) == 126
    for q in snapshot["qubits"]:
        assert 9 <= q["t1_us"] <= 17 and 1.1 <= q["t2_us"] <= 3
        assert 0.003 <= q["sx_error"] <= 0.008 and 0.05 <= q["readout_error"] <= 0.08
    assert all(0.02 <= c["cz_error"] <= 0.05 for c in snapshot["couplers"])
    assert 0 < sum(not c["enabled"] for c in snapshot["couplers"]) < 10


def test_target_has_the_grid_and_native_gates() -> None:
    backend = Wukong72Backend()
    assert backend.num_qubits == NUM_QUBITS
    assert set(backend.target.operation_names) == {"rz", "sx", "x", "cz", "measure"}
    pairs = {tuple(sorted(p)) for p in backend.coupling_map.get_edges()}
    enabled = {tuple(sorted(c["pair"])) for c in load_calibration()["couplers"] if c["enabled"]}
    assert pairs == enabled and backend.coupling_map.is_connected()
    assert backend.target["cz"][next(iter(backend.target["cz"]))].error > 0


@pytest.mark.parametrize("seed", range(3))
def test_noise_off_agrees_with_exact_statevector_within_shot_error(seed: int) -> None:
    rng = np.random.default_rng()
    n = int(rng.integers(3, 9))
    circuit = random_circuit(n, rng, depth=3)
    observables = [
        SparsePauliOp(["".join(rng.choice(list("IXYZ"), n)) for _ in range(2)], rng.normal(size=2)) for _ in range(2)
    ]
    values = rng.uniform(-np.pi, np.pi, (3, circuit.num_parameters))
    engine = DeviceEngine(Wukong72Backend(), 1)
    block = Block(values=values, shots=20_000, seed=seed, noise=False)
    evs, stds = engine.estimate(Program(circuit, observables), block)
    assert np.all(stds > 0)
    assert np.max(np.abs(evs - exact(circuit, observables, values)) / stds) < 5.0


def test_noise_shrinks_z_with_depth() -> None:
    engine = DeviceEngine(Wukong72Backend(), 1)
    magnitudes = []
    for layers in (1, 4, 8):
        circuit = training_ansatz(4, layers=layers)
        evs, _ = engine.estimate(
            Program(circuit, [SparsePauliOp("IIIZ")]),
            Block(values=np.zeros((1, circuit.num_parameters)), shots=20_000, seed=1),
        )
        magnitudes.append(abs(float(evs[0, 0])))  # the ideal value is exactly 1 at all-zero angles
    assert magnitudes[0] > magnitudes[1] > magnitudes[2]
    assert magnitudes[0] < 0.99


def test_72_qubits_run_on_matrix_product_states() -> None:
    engine = DeviceEngine(Wukong72Backend(), 1)
    circuit = training_ansatz(72)
    obs = [SparsePauliOp("I" * 71 + "Z"), SparsePauliOp("I" * 70 + "ZZ")]
    program = Program(circuit, obs)
    block = Block(values=np.zeros((2, circuit.num_parameters)), shots=2000, seed=1, noise=False)
    evs, stds = engine.estimate(program, block)
    metadata = engine.describe(program, block)
    assert metadata["engine"] == "aer-matrix_product_state"
    assert len(metadata["physical_qubits"]) == 72 and metadata["two_qubit_gates"] >= 142
    np.testing.assert_allclose(evs, 1.0, atol=1e-9)  # all-zero angles: |0…0>, Z0 = Z0Z1 = 1


def test_origin_translation_agrees_with_aer_on_pyqpanda3s_simulator() -> None:
    from qiskit_aer.primitives import EstimatorV2

    from qfleet_server.worker.engines.origin import OriginEngine

    rng = np.random.default_rng()
    circuit = random_circuit(3, rng)
    observables = [SparsePauliOp(["XZI", "IYY"], [0.6, -0.4]), SparsePauliOp("ZZZ")]
    values = rng.uniform(-3, 3, (4, circuit.num_parameters))
    evs, stds = OriginEngine(None).estimate(Program(circuit, observables), Block(values=values, shots=20_000))
    from qiskit import transpile
    from qiskit_aer import AerSimulator

    native = transpile(circuit, AerSimulator(), optimization_level=0)
    aer = EstimatorV2().run([(native, [[o] for o in observables], values)]).result()[0].data.evs
    # A near-certain term (ZZZ at -0.9999 on some random circuits) can give 20 000 equal outcomes
    # and a reported std of 0; an estimate's resolution is 2 / shots, so no error is counted finer.
    assert np.max(np.abs(evs - aer) / np.maximum(stds, 2 / 20_000)) < 5.0


def test_ibm_runtime_path_runs_on_a_fake_backend() -> None:
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    from qfleet_server.worker.engines.ibm import IBMEngine

    circuit = training_ansatz(3, layers=1)
    observables = [SparsePauliOp("ZII"), SparsePauliOp("IZZ")]
    values = np.random.default_rng().uniform(0, 3, (3, circuit.num_parameters))
    evs, stds = IBMEngine(FakeManilaV2()).estimate(
        Program(circuit, observables), Block(values=values, shots=4000, seed=1)
    )
    assert evs.shape == stds.shape == (2, 3) and np.all(stds > 0)
    assert np.max(np.abs(evs - exact(circuit, observables, values))) < 0.3  # a noisy fake device, near the ideal


def test_origin_sampler_translation_on_pyqpanda3s_simulator() -> None:
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter

    from qfleet_server.tasks import register_bits
    from qfleet_server.worker.engines.origin import OriginEngine

    theta = Parameter("t")
    qc = QuantumCircuit(2, 3)
    qc.ry(theta, 0)
    qc.cx(0, 1)
    qc.measure([0, 1], [2, 0])  # clbit 2 reads qubit 0, clbit 0 reads qubit 1
    memory = OriginEngine(None).sample(Program(qc, []), Block(values=np.array([[0.0], [np.pi]]), shots=300, seed=2))
    assert memory.shape == (2, 300, 1)
    assert np.all(register_bits(memory, [0, 1, 2])[0] == 0)
    assert np.all(register_bits(memory, [0, 1, 2])[1] == 0b101)


def test_ibm_sampler_runs_on_a_fake_backend() -> None:
    from qiskit import QuantumCircuit
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    from qfleet_server.worker.engines.ibm import IBMEngine

    qc = QuantumCircuit(2, 2)
    qc.x(1)
    qc.measure([0, 1], [0, 1])
    memory = IBMEngine(FakeManilaV2()).sample(Program(qc, []), Block(values=np.zeros((2, 0)), shots=2000, seed=1))
    assert memory.shape == (2, 2000, 1)
    ones = np.mean(memory[..., 0] == 0b10)
    assert ones > 0.8  # a noisy fake device, near the ideal "10"


def test_each_qubit_of_a_cz_relaxes_with_its_own_t1() -> None:
    """The CZ's error holds each qubit's own relaxation, in either qubit order: with one qubit of
    a coupler given a far shorter T1, an excitation on that qubit decays more than on the other."""
    from qiskit.quantum_info import DensityMatrix

    engine = DeviceEngine(Wukong72Backend(), 1)
    cal = json.loads(json.dumps(engine.calibration))
    coupler = next(c for c in cal["couplers"] if c["enabled"])
    a, b = coupler["pair"]
    cal["qubits"][a]["t1_us"], cal["qubits"][a]["t2_us"] = 0.2, 0.2  # a: gone within a few CZs
    cal["qubits"][b]["t1_us"], cal["qubits"][b]["t2_us"] = 500.0, 500.0  # b: barely decays
    engine.calibration = cal
    for physical in ([a, b], [b, a]):
        model = engine._build_noise(physical)
        index = {p: i for i, p in enumerate(physical)}
        error = model._local_quantum_errors["cz"][(0, 1)]
        channel = error.to_quantumchannel()

        def survival(qubit: int, channel: object = channel) -> float:
            label = "".join("1" if i == qubit else "0" for i in (1, 0))  # qubit 0 is the rightmost
            return float(DensityMatrix.from_label(label).evolve(channel).probabilities([qubit])[1])

        assert survival(index[a]) < survival(index[b]) - 0.05

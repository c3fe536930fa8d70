"""The batched density-matrix engine of the device model against Aer on the same noise model."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit.library import RZGate
from qiskit.primitives import BackendEstimatorV2
from qiskit.quantum_info import DensityMatrix, Pauli, PauliList, SparsePauliOp
from qiskit_aer import AerSimulator

from qfleet_server.bench.workloads import training_ansatz, z_observables
from qfleet_server.devices.wukong72 import Wukong72Backend
from qfleet_server.worker.engines import Block, Program, density
from qfleet_server.worker.engines.device import DeviceEngine
from tests.conftest import random_circuit


@pytest.fixture(scope="module")
def engine() -> DeviceEngine:
    return DeviceEngine(Wukong72Backend(), 1)


def aer_density_matrix(engine: DeviceEngine, circuit: QuantumCircuit, physical: list[int]) -> np.ndarray:
    bound = circuit.copy()
    bound.save_density_matrix()
    simulator = AerSimulator(method="density_matrix", noise_model=engine.noise_model(physical))
    return np.asarray(simulator.run(bound).result().data()["density_matrix"])


def exact_noisy(engine: DeviceEngine, program: Program, values: np.ndarray, label: str) -> float:
    """The noisy expectation of one Pauli (compact qubits) as BackendEstimatorV2 measures it on
    Aer: its noisy basis change, Aer's density matrix, then each measured bit's readout flip."""
    compiled = engine.compile(program)
    n = len(compiled.physical)
    simulator = AerSimulator(method="density_matrix", noise_model=engine.noise_model(compiled.physical))
    (measurement,) = BackendEstimatorV2(backend=simulator)._create_measurement_circuits(
        QuantumCircuit(n), PauliList([label]), (0,)
    )
    circuit = compiled.circuit.assign_parameters(values)
    circuit.compose(measurement.remove_final_measurements(inplace=False), inplace=True)
    rho = DensityMatrix(aer_density_matrix(engine, circuit, compiled.physical))
    support = [q for q, ch in enumerate(reversed(label)) if ch != "I"]
    z = Pauli("".join("Z" if q in support else "I" for q in reversed(range(n))))
    readout = engine._errors(compiled.physical).readout
    flips = [readout[q][0, 1] for q in support]
    assert all(np.isclose(readout[q][1, 0], e) for q, e in zip(support, flips))  # symmetric: parity scales
    return float(rho.expectation_value(z).real) * float(np.prod([1 - 2 * e for e in flips]))


def test_pauli_transfer_matrices_follow_qiskit() -> None:
    theta = np.random.default_rng().uniform(-4, 4, 3)
    for t, got in zip(theta, density.rz_ptms(theta)):
        np.testing.assert_allclose(got, density.ptm(RZGate(t), 1), atol=1e-14)
    np.testing.assert_allclose(density.ptm(RZGate(0.3), 1)[0], [1, 0, 0, 0], atol=1e-15)  # trace preserving


@pytest.mark.parametrize("k", [0, 1, 3, 4, 6])
def test_a_run_expanded_in_its_angles_equals_its_product(k: int) -> None:
    """A run's PTMs from its expansion in cos and sin (k ≤ 4), or multiplied out (k > 4)."""
    rng = np.random.default_rng()
    run: density.Run = [rng.normal(size=(4, 4))]
    for j in rng.permutation(k):
        run += [int(j), rng.normal(size=(4, 4))]
    angles = rng.uniform(-4, 4, (5, max(k, 1)))
    want = np.broadcast_to(np.eye(4), (5, 4, 4))
    for item in run:
        want = item @ want if isinstance(item, np.ndarray) else density.rz_ptms(angles[:, item]) @ want
    np.testing.assert_allclose(density.Form(run).ptms(angles), want, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_final_state_equals_aers_density_matrix_on_the_noise_model(engine: DeviceEngine, seed: int) -> None:
    """Random circuits transpiled onto the device and compacted, fresh random parameters: the
    density matrix equals Aer's ``save_density_matrix`` under the same noise model."""
    rng = np.random.default_rng()
    n = int(rng.integers(2, 6))
    circuit = training_ansatz(n, layers=2) if seed == 0 else random_circuit(n, rng, depth=3)
    program = Program(circuit, [SparsePauliOp("Z" * n)])
    compiled = engine.compile(program)
    prepared, _ = engine._density(program)
    values = rng.uniform(-np.pi, np.pi, (3, circuit.num_parameters))[:, compiled.columns]
    got = density.density_matrices(density.final_state(prepared, values))
    for row, rho in zip(values, got):
        want = aer_density_matrix(engine, compiled.circuit.assign_parameters(row), compiled.physical)
        np.testing.assert_allclose(rho, want, atol=1e-10)
        assert abs(np.trace(rho) - 1) < 1e-10


def test_seven_qubits_end_on_permuted_axes_and_still_match(engine: DeviceEngine) -> None:
    """Wide enough that qubits join in front and two-qubit steps move axes to the front as they go."""
    rng = np.random.default_rng()
    circuit = training_ansatz(7, layers=1)
    program = Program(circuit, [SparsePauliOp("Z" * 7)])
    compiled = engine.compile(program)
    prepared, _ = engine._density(program)
    values = rng.uniform(-np.pi, np.pi, (2, circuit.num_parameters))[:, compiled.columns]
    state, _ = density.contract(prepared, density.plan(prepared, [], density.Channels(), keep_all=True), values)
    assert state.axes != sorted(state.axes)
    got = density.density_matrices(density.final_state(prepared, values))
    want = aer_density_matrix(engine, compiled.circuit.assign_parameters(values[1]), compiled.physical)
    np.testing.assert_allclose(got[1], want, atol=1e-10)


def read_full_state(engine: DeviceEngine, program: Program, group: density.Group, values: np.ndarray) -> np.ndarray:
    """A group's outcome distribution from the whole final state (every qubit to the end, no
    light cone): each measured qubit's noisy basis change and readout, the others traced out."""
    compiled = engine.compile(program)
    prepared, _ = engine._density(program)
    channels = engine.channels(compiled.physical)
    state = density.final_state(prepared, values)
    for q in reversed(range(prepared.num_qubits)):  # the last axis first, so axis 1 + q stays put
        if q in group.measured:
            change = density.run_ptms(group.basis[q], np.zeros((1, 0)))[0]
            functional = channels.readout.get(q, np.eye(2)) @ density.Z_OUTCOMES @ change
            state = np.moveaxis(np.tensordot(state, functional, axes=([1 + q], [1])), -1, 1 + q)
        else:
            state = np.take(state, 0, axis=1 + q)
    return state.reshape(len(values), -1)


@pytest.mark.parametrize("seed", range(4))
def test_light_cone_plans_equal_the_full_state(engine: DeviceEngine, seed: int) -> None:
    """What the estimator samples from: each group's outcome distribution from its plan (its
    light cone only, qubits joining late and leaving measured early, in the greedy order, one
    pass for all groups or one each) equals the one read off the full density matrix."""
    rng = np.random.default_rng()
    n = int(rng.integers(4, 7))
    if seed == 0:  # narrow observables on a ladder: much of the circuit lies outside their light cones
        n = 6
        circuit, labels = training_ansatz(n), ["I" * (n - 1) + "Z", "I" * (n - 2) + "XI"]
    else:
        circuit = random_circuit(n, rng, depth=3)
        labels = ["".join(rng.choice(list("IXYZ"), n)) for _ in range(4)] + ["I" * (n - 2) + "ZZ"]
    program = Program(circuit, [SparsePauliOp(label) for label in labels])
    compiled = engine.compile(program)
    prepared, groups = engine._density(program)
    found = groups(tuple(sorted({p for o in compiled.observables for p in o.paulis.to_labels()})))
    values = rng.uniform(-np.pi, np.pi, (3, circuit.num_parameters))[:, compiled.columns]
    plans = density.plans(prepared, found, engine.channels(compiled.physical))
    assert sorted(id(g) for p in plans for g in p.groups) == sorted(id(g) for g in found)
    for p in plans:
        state, angles = density.contract(prepared, p, values)
        for k, group in enumerate(p.groups):
            got = density.distribution(prepared, p, state, angles, k)
            np.testing.assert_allclose(got, read_full_state(engine, program, group, values), atol=1e-12)
            assert abs(got.sum(axis=1) - 1).max() < 1e-12
    if seed == 0:
        assert all(p.peak <= 4**4 for p in plans), [p.peak for p in plans]


def test_ten_qubits_match_aers_density_matrix_and_its_shot_statistics(engine: DeviceEngine) -> None:
    """The benchmark's noisy ansatz at n=10, Z on each qubit: the outcome distribution equals Aer's
    density matrix through the readout error, and 400 estimates of one set (its own shots each)
    have the mean and spread a 1024-shot estimate from that distribution has."""
    rng = np.random.default_rng()
    n, repeats, shots = 10, 400, 1024
    circuit = training_ansatz(n)
    program = Program(circuit, [o[0] for o in z_observables(n)])
    compiled = engine.compile(program)
    prepared, groups = engine._density(program)
    x = rng.uniform(0, 2 * np.pi, circuit.num_parameters)
    values = x[compiled.columns][None]
    (group,) = groups(tuple(sorted(o.paulis.to_labels()[0] for o in compiled.observables)))
    m = len(compiled.physical)
    assert group.measured == list(range(m))
    rho = aer_density_matrix(engine, compiled.circuit.assign_parameters(values[0]), compiled.physical)
    want = np.real(np.diag(rho)).reshape((2,) * m).transpose(*reversed(range(m)))  # axis q: qubit q
    readout = engine._errors(compiled.physical).readout
    for q in range(m):  # [true][recorded]
        want = np.moveaxis(np.tensordot(want, readout[q], axes=([q], [0])), -1, q)
    (p,) = density.plans(prepared, [group], engine.channels(compiled.physical))
    state, angles = density.contract(prepared, p, values)
    got = density.distribution(prepared, p, state, angles, 0)
    np.testing.assert_allclose(got[0], want.ravel(), atol=1e-10)
    assert p.peak < 4**m // 64  # the light cone of a ladder is narrow at every step

    exact = [float(np.sum(want * (1 - 2 * (np.indices(want.shape)[q] % 2)))) for q in range(m)]
    evs, stds = engine.estimate(
        program, Block(values=np.tile(x, (repeats, 1)), shots=shots, seed=int(rng.integers(1 << 30)))
    )
    for k, obs in enumerate(compiled.observables):
        (q,) = [i for i, ch in enumerate(reversed(obs.paulis.to_labels()[0])) if ch != "I"]
        sigma = np.sqrt(1 - exact[q] ** 2) / np.sqrt(shots)  # BackendEstimatorV2's std on that distribution
        assert abs(np.mean(evs[k]) - exact[q]) < 4.5 * sigma / np.sqrt(repeats)
        assert 0.8 < np.std(evs[k], ddof=1) / sigma < 1.2  # χ²(399): a std of 0.035 on this ratio
        assert abs(np.mean(stds[k]) / sigma - 1) < 0.05


def test_estimates_match_the_noise_model_and_aers_spread(engine: DeviceEngine) -> None:
    """200 independent estimates of one parameter set (200 rows, each its own shots) over a
    few seeds: their mean agrees with the exact noisy value within the shot error, and their
    spread with the reported stds and with Aer's BackendEstimatorV2 on a density matrix."""
    rng = np.random.default_rng()
    n, repeats, shots = 3, 200, 1024
    circuit = random_circuit(n, rng, depth=3)
    observables = [SparsePauliOp("ZZI"), SparsePauliOp("XIY"), SparsePauliOp(["IZX", "ZIZ"], [0.6, -0.8])]
    program = Program(circuit, observables)
    x = rng.uniform(-np.pi, np.pi, circuit.num_parameters)
    values = np.tile(x, (repeats, 1))
    compiled = engine.compile(program)
    assert engine.describe(program, Block(values=values))["engine"] == "qfleet-pauli_density_matrix-noisy"
    exact = []
    for obs in compiled.observables:
        labels, coeffs = obs.paulis.to_labels(), obs.coeffs.real
        exact.append(sum(c * exact_noisy(engine, program, x[compiled.columns], p) for p, c in zip(labels, coeffs)))
    simulator = AerSimulator(method="density_matrix", noise_model=engine.noise_model(compiled.physical))
    aer = BackendEstimatorV2(backend=simulator, options={"default_precision": 1 / np.sqrt(shots), "seed_simulator": 9})
    aer_evs = aer.run([(compiled.circuit, [[o] for o in compiled.observables], values[:, compiled.columns])])
    aer_evs = aer_evs.result()[0].data.evs
    for seed in (1, 2):
        evs, stds = engine.estimate(program, Block(values=values, shots=shots, seed=seed))
        assert evs.shape == stds.shape == (3, repeats)
        for k in range(3):
            sigma = float(np.mean(stds[k]))
            assert abs(np.mean(evs[k]) - exact[k]) < 4.5 * sigma / np.sqrt(repeats)
            # sample variance of 200 draws: χ²(199)/199 has a std of 0.1, so these are 3.5σ bounds.
            # BackendEstimatorV2 reports Σ|c|·σ_term/√shots for a sum of Paulis (an upper bound: the
            # triangle inequality), so for the sum (k=2) the spread is only bounded from above.
            spread = np.std(evs[k], ddof=1) / sigma
            assert spread < 1.4 and (k == 2 or spread > 0.65), (k, spread)
            assert 0.55 < np.std(evs[k], ddof=1) / np.std(aer_evs[k], ddof=1) < 1.8
        again, _ = engine.estimate(program, Block(values=values, shots=shots, seed=seed))
        np.testing.assert_array_equal(again, evs)  # the seed fixes the shots


def test_zip_blocks_and_parameter_free_circuits(engine: DeviceEngine) -> None:
    rng = np.random.default_rng()
    circuit = random_circuit(3, rng, depth=2)
    observables = [SparsePauliOp("ZII"), SparsePauliOp("IXX"), SparsePauliOp("III")]
    program = Program(circuit, observables)
    values = rng.uniform(-np.pi, np.pi, (6, circuit.num_parameters))
    obs_index = np.array([0, 1, 2, 1, 0, 2])
    evs, stds = engine.estimate(program, Block(values=values, obs_index=obs_index, shots=4000, seed=3))
    assert evs.shape == stds.shape == (6,)
    compiled = engine.compile(program)
    for j, k in enumerate(obs_index):
        label = compiled.observables[k].paulis.to_labels()[0]
        want = exact_noisy(engine, program, values[j, compiled.columns], label)
        assert abs(evs[j] - want) <= 5 * stds[j] + 1e-12
    assert evs[2] == evs[5] == 1.0 and stds[2] == 0.0  # the identity: no shots needed

    fixed = QuantumCircuit(2)
    fixed.h(0)
    fixed.cx(0, 1)
    evs, _ = engine.estimate(Program(fixed, [SparsePauliOp("ZZ")]), Block(values=np.zeros((2, 0)), shots=4000, seed=1))
    assert evs.shape == (1, 2) and np.all(evs > 0.5)  # a Bell pair, through readout error

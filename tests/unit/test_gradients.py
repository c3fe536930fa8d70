"""Gradients on every engine against central finite differences of exact evs, and
parameter shift against adjoint."""

import numpy as np
import pytest
from qiskit.circuit import Parameter, QuantumCircuit
from qiskit.quantum_info import SparsePauliOp, Statevector

from qfleet_server.gradients import NotDifferentiable, resolve, shift_plan
from qfleet_server.parsing import describe
from qfleet_server.worker.engines import Block, Program
from qfleet_server.worker.engines.aer import AerEngine
from qfleet_server.worker.engines.lightning import LightningEngine
from qfleet_server.worker.parameter_shift import parameter_shift
from tests.conftest import random_circuit


def exact_evs(circuit: QuantumCircuit, observables: list[SparsePauliOp], values: np.ndarray) -> np.ndarray:
    out = np.zeros((len(observables), len(values)))
    for r, x in enumerate(values):
        psi = Statevector(circuit.assign_parameters(x))
        out[:, r] = [psi.expectation_value(o).real for o in observables]
    return out


def finite_difference(circuit, observables, values, h=1e-5):  # type: ignore[no-untyped-def]
    grad = np.zeros((len(observables), len(values), circuit.num_parameters))
    for p in range(circuit.num_parameters):
        step = np.zeros(circuit.num_parameters)
        step[p] = h
        grad[:, :, p] = (
            exact_evs(circuit, observables, values + step) - exact_evs(circuit, observables, values - step)
        ) / (2 * h)
    return grad


@pytest.mark.parametrize("seed", range(3))
def test_every_method_matches_finite_differences(seed: int) -> None:
    rng = np.random.default_rng()  # fresh every run
    n = int(rng.integers(2, 5))
    circuit = random_circuit(n, rng, depth=3)
    observables = [
        SparsePauliOp(["".join(rng.choice(list("IXYZ"), n)) for _ in range(2)], rng.normal(size=2)) for _ in range(3)
    ]
    values = rng.uniform(-np.pi, np.pi, (4, circuit.num_parameters))
    program = Program(circuit, observables)
    fd = finite_difference(circuit, observables, values)
    reference = exact_evs(circuit, observables, values)
    evs, _, adjoint = LightningEngine(1).gradient(program, Block(values=values))
    np.testing.assert_allclose(evs, reference, atol=1e-8)
    np.testing.assert_allclose(adjoint, fd, atol=1e-5)
    for engine in (AerEngine(1), LightningEngine(1)):
        evs, stds, shift = parameter_shift(engine, program, Block(values=values))
        np.testing.assert_allclose(evs, reference, atol=1e-8)
        np.testing.assert_allclose(shift, fd, atol=1e-5)
        np.testing.assert_allclose(shift, adjoint, atol=1e-8)
    # zip blocks: observable obs_index[j] with row j
    obs_index = rng.integers(0, 3, len(values))
    _, _, zipped = LightningEngine(1).gradient(program, Block(values=values, obs_index=obs_index))
    np.testing.assert_allclose(zipped, adjoint[obs_index, np.arange(len(values))], atol=1e-10)
    _, _, zipped = parameter_shift(AerEngine(1), program, Block(values=values, obs_index=obs_index))
    np.testing.assert_allclose(zipped, adjoint[obs_index, np.arange(len(values))], atol=1e-8)


def test_a_parameter_used_by_several_gates_with_scales() -> None:
    a, b = Parameter("a"), Parameter("b")
    qc = QuantumCircuit(2)
    qc.rx(2 * a + 0.3, 0)
    qc.ry(a, 1)
    qc.cx(0, 1)
    qc.rzz(-0.5 * b, 0, 1)
    qc.rx(b, 0)
    obs = [SparsePauliOp(["ZI", "XX"], [1.0, 0.5])]
    values = np.random.default_rng().uniform(-2, 2, (3, 2))
    program = Program(qc, obs)
    fd = finite_difference(qc, obs, values)
    np.testing.assert_allclose(parameter_shift(LightningEngine(1), program, Block(values=values))[2], fd, atol=1e-5)
    np.testing.assert_allclose(LightningEngine(1).gradient(program, Block(values=values))[2], fd, atol=1e-5)
    assert len(shift_plan(qc).angles) == 4


def test_shot_based_parameter_shift_has_errors_that_fit() -> None:
    rng = np.random.default_rng(9)
    circuit = random_circuit(2, rng, depth=2)
    obs = [SparsePauliOp("ZZ")]
    values = rng.uniform(-np.pi, np.pi, (2, circuit.num_parameters))
    evs, stds, grad = parameter_shift(AerEngine(1), Program(circuit, obs), Block(values=values, shots=20000, seed=3))
    fd = finite_difference(circuit, obs, values)
    assert np.all(stds > 0)
    # each gradient entry is a half-difference of two estimates, each with std <= 1/sqrt(shots)
    assert np.max(np.abs(grad - fd)) < 5 * np.sqrt(2) / 2 / np.sqrt(20000) * 2


def resolve_for(method: str, circuit: QuantumCircuit, shots: int) -> str:
    info = describe(circuit)  # what the API learns of a circuit from its parser
    return resolve(method, shots, info.shift_error, info.adjoint_error)


def test_methods_are_resolved_or_refused_with_a_reason() -> None:
    theta = Parameter("t")
    qc = QuantumCircuit(2)
    qc.crx(theta, 0, 1)
    assert resolve_for("auto", qc, shots=0) == "adjoint"
    with pytest.raises(NotDifferentiable, match="parameter-shift needs rotation gates"):
        resolve_for("auto", qc, shots=100)
    with pytest.raises(NotDifferentiable, match="exact simulation"):
        resolve_for("adjoint", qc, shots=100)
    qc2 = QuantumCircuit(1)
    qc2.rx(theta * Parameter("u"), 0)
    with pytest.raises(NotDifferentiable, match="several parameters"):
        resolve_for("parameter-shift", qc2, shots=0)


def test_a_circuit_without_parameters_has_an_empty_gradient() -> None:
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.cx(0, 1)
    program = Program(qc, [SparsePauliOp("ZZ")])
    for engine in (AerEngine(1), LightningEngine(1)):
        evs, _, grad = parameter_shift(engine, program, Block(values=np.zeros((3, 0))))
        assert grad.shape == (1, 3, 0) and np.allclose(evs, 1.0)
    assert LightningEngine(1).gradient(program, Block(values=np.zeros((3, 0))))[2].shape == (1, 3, 0)

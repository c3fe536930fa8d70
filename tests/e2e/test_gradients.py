"""Gradients through the real service: every method against finite differences of direct
Aer evs, and parameter shift against adjoint."""

from __future__ import annotations

import numpy as np
import pytest
from qfleet import Client, InvalidRequestError
from qiskit.circuit import Parameter, QuantumCircuit
from qiskit.quantum_info import SparsePauliOp
from qiskit_aer.primitives import EstimatorV2

from qfleet_server.bench.workloads import training_ansatz, z_observables

pytestmark = pytest.mark.e2e


def aer_evs(circuit, obs, values):  # type: ignore[no-untyped-def]
    return EstimatorV2().run([(circuit, obs, values)]).result()[0].data.evs


def aer_finite_difference(circuit, obs, values, h=1e-5):  # type: ignore[no-untyped-def]
    grads = []
    for p in range(circuit.num_parameters):
        step = np.zeros(circuit.num_parameters)
        step[p] = h
        grads.append((aer_evs(circuit, obs, values + step) - aer_evs(circuit, obs, values - step)) / (2 * h))
    return np.stack(grads, axis=-1)


def test_each_method_matches_finite_differences_and_each_other(client: Client) -> None:
    rng = np.random.default_rng()
    n = 4
    circuit = training_ansatz(n)
    obs = z_observables(n) + [[SparsePauliOp(["XXII", "IYZI"], [0.5, -1.0])]]
    values = rng.uniform(0, 2 * np.pi, (6, circuit.num_parameters))
    fd = aer_finite_difference(circuit, obs, values)
    results = {}
    for method in ("parameter-shift", "adjoint", "auto"):
        result = client.estimate([(circuit, obs, values)], gradient=method).result(timeout=120)[0]
        assert result.gradient is not None
        assert (
            result.gradient.shape == result.evs.shape + (circuit.num_parameters,) == (n + 1, 6, circuit.num_parameters)
        )
        np.testing.assert_allclose(result.evs, aer_evs(circuit, obs, values), atol=1e-8)
        np.testing.assert_allclose(result.gradient, fd, atol=1e-5)
        results[method] = result.gradient
    np.testing.assert_allclose(results["parameter-shift"], results["adjoint"], atol=1e-8)


def test_gradients_with_zipped_broadcasting(client: Client) -> None:
    rng = np.random.default_rng()
    circuit = training_ansatz(3, layers=1)
    obs = [SparsePauliOp("".join(rng.choice(list("XYZ"), 3))) for _ in range(30)]
    values = rng.uniform(0, 2 * np.pi, (30, circuit.num_parameters))  # (30,) with (30,): zip mode
    result = client.estimate([(circuit, obs, values)], gradient="auto").result(timeout=60)[0]
    assert result.gradient.shape == (30, circuit.num_parameters)  # type: ignore[union-attr]
    np.testing.assert_allclose(result.gradient, aer_finite_difference(circuit, obs, values), atol=1e-5)


def test_shot_based_parameter_shift_and_refusals(client: Client) -> None:
    circuit = training_ansatz(2, layers=1)
    values = np.random.default_rng().uniform(0, 2 * np.pi, (3, circuit.num_parameters))
    result = client.estimate([(circuit, "ZZ", values)], gradient="auto", shots=20000, seed=5).result(timeout=60)[0]
    fd = aer_finite_difference(circuit, "ZZ", values)
    assert np.max(np.abs(result.gradient - fd)) < 0.05  # type: ignore[operator]
    with pytest.raises(InvalidRequestError) as err:
        client.estimate([(circuit, "ZZ", values)], gradient="adjoint", shots=100)
    assert err.value.code == "gradient_not_supported"
    theta = Parameter("t")
    controlled = QuantumCircuit(2)
    controlled.h(0)
    controlled.crx(theta, 0, 1)
    with pytest.raises(InvalidRequestError, match="rotation gates"):
        client.estimate([(controlled, "ZZ", [[0.3]])], gradient="parameter-shift")
    adjoint = client.estimate([(controlled, "ZI", [[0.3]])], gradient="adjoint").result(timeout=60)[0]
    # <Z_1> = 1 - (1 - cos t)/2 for CRX(t) after H on the control, so d/dt = -sin(t)/2
    np.testing.assert_allclose(adjoint.gradient, [[-np.sin(0.3) / 2]], atol=1e-10)

"""qfleet inside others' tools: qiskit-machine-learning's EstimatorQNN, SSE progress."""

from __future__ import annotations

import numpy as np
import pytest
from qfleet import Client
from qfleet.qiskit import Estimator
from qiskit.quantum_info import SparsePauliOp
from qiskit_aer.primitives import EstimatorV2

from qfleet_server.bench.workloads import encoder_ansatz

pytestmark = pytest.mark.e2e


def test_estimator_qnn_forward_matches_aer(client: Client) -> None:
    from qiskit_machine_learning.neural_networks import EstimatorQNN

    qc, x, w = encoder_ansatz(3)
    obs = [SparsePauliOp("ZII"), SparsePauliOp("IXI")]
    rng = np.random.default_rng()
    inputs, weights = rng.uniform(0, np.pi, (4, 3)), rng.uniform(0, 2 * np.pi, len(w))
    # EstimatorQNN asks for precision 1/64 by default, which qfleet honours with 4096 shots
    # and Aer with Gaussian noise; precision 0 makes both exact, so they must agree closely.
    common = {"circuit": qc, "observables": obs, "input_params": x, "weight_params": w, "default_precision": 0.0}
    ours = EstimatorQNN(estimator=Estimator(client), **common)
    aer = EstimatorQNN(estimator=EstimatorV2(), **common)
    np.testing.assert_allclose(ours.forward(inputs, weights), aer.forward(inputs, weights), atol=1e-8)
    shots = EstimatorQNN(estimator=Estimator(client), **{**common, "default_precision": 1 / 64})
    assert np.max(np.abs(shots.forward(inputs, weights) - aer.forward(inputs, weights))) < 5 / 64


def test_progress_streams_until_the_job_is_final(client: Client) -> None:
    from qfleet_server.bench.workloads import training_ansatz, z_observables

    circuit = training_ansatz(12)
    values = np.random.default_rng().uniform(0, 1, (3000, circuit.num_parameters))
    job = client.estimate([(circuit, z_observables(12), values)])
    seen = list(job.stream(timeout=120))
    assert seen[-1].status == "done"
    done = [info.progress.tasks_done for info in seen]
    assert done == sorted(done) and done[-1] == seen[-1].progress.tasks_total > 1
    assert job.result(timeout=10, progress=True)[0].evs.shape == (12, 3000)


def test_parameterless_pubs_keep_their_shape(client: Client) -> None:
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(1)
    qc.x(0)
    result = Estimator(client).run([(qc, "Z", [[]]), (qc, "Z", np.zeros((3, 0))), (qc, ["Z", "I"])]).result()
    assert result[0].data.evs.shape == (1,) and result[1].data.evs.shape == (3,) and result[2].data.evs.shape == (2,)
    np.testing.assert_allclose(result[1].data.evs, [-1, -1, -1])
    np.testing.assert_allclose(result[2].data.evs, [-1, 1])


def test_metadata_equals_the_reference_and_provenance_is_on_the_side(client: Client) -> None:
    from qiskit import QuantumCircuit
    from qiskit.primitives import StatevectorEstimator

    qc = QuantumCircuit(2, metadata={"step": 7})
    qc.h(0)
    ours = Estimator(client, seed=3).run([(qc, "ZZ")], precision=0.1).result()
    reference = StatevectorEstimator(seed=3).run([(qc, "ZZ")], precision=0.1).result()
    assert ours.metadata == reference.metadata and ours[0].metadata == reference[0].metadata
    assert ours.qfleet.job_id.startswith("j-") and ours.qfleet.backend == "aer"  # type: ignore[attr-defined]


def test_idle_qubits_of_a_wide_layout_are_dropped_on_every_simulator(client: Client) -> None:
    """A 12-qubit circuit laid out on 127 qubits runs on aer (28 qubits), as Aer runs it."""
    from qiskit import QuantumCircuit, transpile

    from tests.conftest import random_circuit

    rng = np.random.default_rng()
    small = transpile(random_circuit(12, rng, depth=2), basis_gates=["rz", "sx", "x", "cx"])
    physical = sorted(rng.choice(127, 12, replace=False).tolist())
    wide = QuantumCircuit(127)
    wide.compose(small, qubits=physical, inplace=True)
    wide.barrier()  # touches every qubit; not a use
    labels = []
    for _ in range(3):
        label = ["I"] * 127
        for q in rng.choice(physical, 3, replace=False):
            label[126 - q] = str(rng.choice(["X", "Y", "Z"]))
        labels.append("".join(label))
    idle = next(q for q in range(127) if q not in physical)
    labels.append("".join("Z" if 126 - k == idle else ch for k, ch in enumerate(labels[0])))  # Z on |0>: factor 1
    labels.append("".join("X" if 126 - k == idle else ch for k, ch in enumerate(labels[0])))  # X on |0>: 0
    values = rng.uniform(0, 2 * np.pi, (2, wide.num_parameters))
    obs = np.array(labels)[:, None]
    for backend in ("aer", "lightning"):
        ours = Estimator(client, backend=backend).run([(wide, obs, values)]).result()[0].data.evs
        aer = EstimatorV2().run([(wide, obs, values)]).result()[0].data.evs
        np.testing.assert_allclose(ours, aer, atol=1e-8)
        np.testing.assert_allclose(ours[4], 0, atol=1e-12)


def test_one_seed_gives_identical_values_for_identical_pubs(client: Client) -> None:
    qc, x, w = encoder_ansatz(3)
    values = np.random.default_rng().uniform(0, 1, (5, qc.num_parameters))
    pubs = [(qc, [["ZII"], ["IXI"]], values)] * 3
    first = client.estimate(pubs, shots=200, seed=9).result(timeout=60)
    again = client.estimate(pubs[:1], shots=200, seed=9).result(timeout=60)
    assert np.array_equal(first[0].evs, first[1].evs) and np.array_equal(first[0].evs, first[2].evs)
    assert np.array_equal(first[0].evs, again[0].evs)
    other = client.estimate(pubs[:1], shots=200, seed=10).result(timeout=60)
    assert not np.array_equal(first[0].evs, other[0].evs)


def test_reset_runs_on_aer_and_gives_the_mixed_state_value(client: Client) -> None:
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(2)
    qc.ry(0.7, 0)
    qc.cx(0, 1)
    qc.reset(0)
    qc.h(0)
    evs = Estimator(client).run([(qc, ["IZ", "ZI", "IX", "ZZ"])]).result()[0].data.evs
    # qubit 1 keeps Z = cos(0.7); qubit 0 is |+> after the reset
    np.testing.assert_allclose(evs, [0.0, np.cos(0.7), 1.0, 0.0], atol=1e-10)


def test_thousands_of_pubs_sharing_a_circuit_equal_one_pub_of_many_rows(client: Client) -> None:
    qc, x, w = encoder_ansatz(4)
    values = np.random.default_rng().uniform(0, np.pi, (2500, qc.num_parameters))
    obs = [SparsePauliOp("ZIII"), SparsePauliOp("IIXZ")]
    one = client.estimate([(qc, [[o] for o in obs], values)]).result(timeout=300)[0].evs
    rows = client.estimate([(qc, obs, row) for row in values]).result(timeout=300)
    assert len(rows) == 2500 and rows[0].evs.shape == (2,)
    np.testing.assert_allclose(np.stack([r.evs for r in rows], axis=1), one, atol=1e-12)


def _classifier(n: int = 3) -> tuple[object, object, object]:
    from qiskit import QuantumCircuit
    from qiskit.circuit import ParameterVector

    x, w = ParameterVector("x", n), ParameterVector("w", 2 * n)
    qc = QuantumCircuit(n)
    for q in range(n):
        qc.ry(x[q], q)
    for layer in range(2):
        for q in range(n):
            qc.ry(w[layer * n + q], q)
        for q in range(n - 1):
            qc.cx(q, q + 1)
    return qc, x, w


def test_estimator_qnn_trains_at_batch_64_with_aer_equal_values_and_gradients(client: Client) -> None:
    """Three gradient steps of a small classifier; every forward and backward (default
    parameter-shift gradient, precision 0) equals the same network on Aer's EstimatorV2."""
    from qiskit_machine_learning.neural_networks import EstimatorQNN

    qc, x, w = _classifier()
    rng = np.random.default_rng()
    inputs = rng.uniform(0, np.pi, (64, 3))
    labels = np.where(inputs.sum(axis=1) > 1.5 * np.pi, 1.0, -1.0)
    common = {"circuit": qc, "observables": [SparsePauliOp("ZII")], "input_params": x, "weight_params": w}
    ours = EstimatorQNN(estimator=Estimator(client), default_precision=0.0, **common)
    aer = EstimatorQNN(estimator=EstimatorV2(), default_precision=0.0, **common)
    weights = rng.uniform(0, 2 * np.pi, 6)
    losses = []
    for _ in range(3):
        out = ours.forward(inputs, weights)
        _, grad = ours.backward(inputs, weights)
        np.testing.assert_allclose(out, aer.forward(inputs, weights), atol=1e-9)
        np.testing.assert_allclose(grad, aer.backward(inputs, weights)[1], atol=1e-9)
        losses.append(float(np.mean((out[:, 0] - labels) ** 2)))
        dloss = 2 * (out[:, 0] - labels)[:, None] * grad[:, 0, :] / len(labels)  # type: ignore[index]
        weights = weights - 0.5 * dloss.sum(axis=0)
    assert losses[-1] < losses[0]


def test_sampler_qnn_at_batch_64_matches_aer_statistically(client: Client) -> None:
    from qfleet.qiskit import Sampler
    from qiskit_aer.primitives import SamplerV2 as AerSampler
    from qiskit_machine_learning.neural_networks import SamplerQNN

    qc, x, w = _classifier()
    qc.measure_all()
    rng = np.random.default_rng()
    inputs, weights = rng.uniform(0, np.pi, (64, 3)), rng.uniform(0, 2 * np.pi, 6)
    parity = {"interpret": lambda b: bin(b).count("1") % 2, "output_shape": 2}
    ours = SamplerQNN(
        circuit=qc, sampler=Sampler(client, default_shots=4096), input_params=x, weight_params=w, **parity
    )
    aer = SamplerQNN(circuit=qc, sampler=AerSampler(default_shots=4096), input_params=x, weight_params=w, **parity)
    out, aer_out = ours.forward(inputs, weights), aer.forward(inputs, weights)
    assert out.shape == aer_out.shape == (64, 2)
    sigma = np.sqrt(0.25 / 4096) * np.sqrt(2)  # two independent estimates of one probability
    assert np.max(np.abs(out - aer_out)) < 6 * sigma
    (_, grad), (_, aer_grad) = ours.backward(inputs, weights), aer.backward(inputs, weights)
    assert grad.shape == aer_grad.shape == (64, 2, 6)  # type: ignore[union-attr]
    assert np.max(np.abs(grad - aer_grad)) < 6 * sigma * 2  # type: ignore[operator]


def test_a_circuit_wider_than_the_device_runs_on_its_used_qubits(client: Client) -> None:
    from qiskit import QuantumCircuit

    wide = QuantumCircuit(127)
    wide.ry(0.9, 40)
    wide.cx(40, 100)
    label = ["I"] * 127
    label[126 - 100] = "Z"
    result = client.estimate([(wide, "".join(label))], backend="wukong72", shots=4000, noise=False, seed=1)
    evs = result.result(timeout=300)[0]
    assert abs(float(evs.evs) - np.cos(0.9)) < 5 * float(evs.stds) + 1e-9


def test_a_hundred_thousand_pubs_sharing_a_circuit_cost_about_one_pub(client: Client) -> None:
    import time

    qc, x, w = encoder_ansatz(3)
    values = np.random.default_rng().uniform(0, np.pi, (100_000, qc.num_parameters))
    t0 = time.perf_counter()
    one = client.estimate([(qc, [["ZII"], ["IXI"]], values)]).result(timeout=600)[0].evs
    one_s = time.perf_counter() - t0
    obs = ["ZII", "IXI"]
    t0 = time.perf_counter()
    many = client.estimate([(qc, obs, row) for row in values]).result(timeout=600)
    many_s = time.perf_counter() - t0
    assert len(many) == 100_000 and many[7].evs.shape == (2,)
    np.testing.assert_allclose(np.stack([r.evs for r in many], axis=1), one, atol=1e-12)
    assert many_s < 4 * one_s + 5.0, (many_s, one_s)  # generous: a shared 2-core machine

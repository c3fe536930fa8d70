"""qfleet inside others' tools: qiskit-machine-learning's EstimatorQNN, SSE progress."""

from __future__ import annotations

import numpy as np
import pytest
from qfleet import Client
from qfleet.qiskit import Estimator
from qiskit.quantum_info import SparsePauliOp
from qiskit_aer.primitives import EstimatorV2

from bench.workloads import encoder_ansatz

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
    from bench.workloads import training_ansatz, z_observables

    circuit = training_ansatz(12)
    values = np.random.default_rng().uniform(0, 1, (3000, circuit.num_parameters))
    job = client.estimate([(circuit, z_observables(12), values)])
    seen = list(job.stream(timeout=120))
    assert seen[-1].status == "done"
    done = [info.progress.tasks_done for info in seen]
    assert done == sorted(done) and done[-1] == seen[-1].progress.tasks_total > 1
    assert job.result(timeout=10, progress=True)[0].evs.shape == (12, 3000)

"""The qfleet PennyLane device through a real stack: values and gradients equal lightning.qubit's
on fresh random inputs, a batch of tapes is exactly one job, and a TorchLayer trains through it
as it does on default.qubit."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import numpy as np
import pennylane as qml
import pytest
import torch
from pennylane.devices import device_constructor

from qfleet_server.settings import Settings
from qfleet_server.stack import Stack
from qfleet_server.store import Store, connect

pytestmark = pytest.mark.e2e

# a client installed before the entry point existed does not declare it yet
device_constructor.plugin_devices.setdefault(
    "qfleet", EntryPoint(name="qfleet", value="qfleet.pennylane:QfleetDevice", group="pennylane.plugins")
)


def _jobs_in_store(stack: Stack) -> int:
    settings = Settings(redis_url=stack.redis_url, dev_mode=True)
    return len(Store(connect(settings), settings.key_prefix).recent_jobs(1_000_000))


def _circuit(x: Any, w: Any) -> Any:
    qml.AngleEmbedding(x, wires=range(3))
    qml.StronglyEntanglingLayers(w, wires=range(3))
    qml.CRX(w[0, 0, 0] * 0.5, wires=[0, 2])
    return (
        qml.expval(0.7 * qml.Z(0) @ qml.Z(1) - 0.3 * qml.X(2) + 0.1 * qml.Y(0) @ qml.X(1)),
        qml.expval(qml.Hermitian(np.array([[1.0, 0.5], [0.5, -1.0]]), wires=1)),
    )


@pytest.mark.parametrize("diff_method", ["best", "parameter-shift"])
def test_values_and_gradients_equal_lightning(stack: Stack, diff_method: str) -> None:
    rng = np.random.default_rng()
    x = qml.numpy.array(rng.uniform(0, np.pi, 3), requires_grad=True)
    w = qml.numpy.array(rng.uniform(0, 2 * np.pi, (2, 3, 3)), requires_grad=True)
    dev = qml.device("qfleet", wires=3, url=stack.url, api_key=stack.api_key)
    remote = qml.QNode(_circuit, dev, diff_method=diff_method)
    local = qml.QNode(_circuit, qml.device("lightning.qubit", wires=3), diff_method="adjoint")
    np.testing.assert_allclose(remote(x, w), local(x, w), atol=1e-8)

    def cost(node: Any) -> Any:
        return lambda x, w: qml.math.stack(node(x, w)) @ qml.numpy.array([1.0, -0.4])

    jobs = len(dev.job_ids)
    g_remote = qml.grad(cost(remote))(x, w)
    g_local = qml.grad(cost(local))(x, w)
    for a, b in zip(g_remote, g_local):
        np.testing.assert_allclose(a, b, atol=1e-7)
    # device gradients: values and gradients in one job; parameter shift: the forward job and one for all shifts
    assert len(dev.job_ids) - jobs == (1 if diff_method == "best" else 2)


def test_a_batch_of_tapes_is_one_job(stack: Stack) -> None:
    rng = np.random.default_rng()
    dev = qml.device("qfleet", wires=4, url=stack.url, api_key=stack.api_key)
    ref = qml.device("default.qubit", wires=4)
    tapes = []
    for i in range(40):  # two structures, different observables and measurements
        ops = [qml.RY(rng.uniform(0, np.pi), wires=q) for q in range(4)] + [qml.CNOT([0, 1]), qml.CNOT([2, 3])]
        if i % 2:
            ops.append(qml.IsingZZ(rng.uniform(0, np.pi), wires=[1, 2]))
        measurement = qml.expval(qml.Z(i % 4)) if i % 3 else qml.probs(wires=[0, 3])
        tapes.append(qml.tape.QuantumScript(ops, [measurement, qml.var(qml.X(1) @ qml.Y(2))]))
    before = _jobs_in_store(stack)
    ids = len(dev.job_ids)
    got = qml.execute(tapes, dev)
    assert _jobs_in_store(stack) - before == 1 and len(dev.job_ids) - ids == 1
    want = qml.execute(tapes, ref)
    for a, b in zip(got, want):
        for ra, rb in zip(a, b):
            np.testing.assert_allclose(ra, rb, atol=1e-8)


def test_shots_are_seeded_and_sampled(stack: Stack) -> None:
    def circuit(x: float) -> Any:
        qml.RX(x, wires=0)
        qml.CNOT([0, 1])
        return qml.expval(qml.Z(0)), qml.counts(wires=[0, 1]), qml.sample(wires=[1])

    def run(seed: int) -> Any:
        dev = qml.device("qfleet", wires=2, url=stack.url, api_key=stack.api_key, seed=seed)
        return qml.set_shots(qml.QNode(circuit, dev), 4000)(1.1)

    ev, counts, samples = run(5)
    assert set(counts) <= {"00", "11"} and sum(counts.values()) == 4000 and samples.shape == (4000, 1)
    assert abs(ev - np.cos(1.1)) < 5 * np.sqrt((1 - np.cos(1.1) ** 2) / 4000)
    np.testing.assert_array_equal(run(5)[2], samples)
    assert not np.array_equal(run(6)[2], samples)


def test_torch_layer_trains_as_on_default_qubit(stack: Stack) -> None:
    torch.manual_seed(int(np.random.default_rng().integers(2**31)))
    n = 3
    x = torch.rand(8, n, dtype=torch.float64) * np.pi
    y = torch.rand(8, n, dtype=torch.float64) * 2 - 1

    def model(dev: Any) -> torch.nn.Module:
        @qml.qnode(dev, interface="torch")
        def node(inputs: Any, weights: Any) -> Any:
            qml.AngleEmbedding(inputs, wires=range(n))
            qml.BasicEntanglerLayers(weights, wires=range(n))
            return [qml.expval(qml.Z(q)) for q in range(n)]

        return qml.qnn.TorchLayer(node, {"weights": (2, n)})

    remote = model(qml.device("qfleet", wires=n, url=stack.url, api_key=stack.api_key))
    local = model(qml.device("default.qubit", wires=n))
    local.load_state_dict(remote.state_dict())
    opts = [torch.optim.SGD(m.parameters(), lr=0.3) for m in (remote, local)]
    for _ in range(3):
        grads = []
        for m, opt in zip((remote, local), opts):
            opt.zero_grad()
            loss = ((m(x) - y) ** 2).mean()
            loss.backward()
            grads.append((loss.item(), m.weights.grad.clone()))
            opt.step()
        assert grads[0][0] == pytest.approx(grads[1][0], abs=1e-9)
        torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-8, rtol=0)
    torch.testing.assert_close(remote.weights.detach(), local.weights.detach(), atol=1e-8, rtol=0)

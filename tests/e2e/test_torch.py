"""The torch layer through the real service: gradcheck in float64, batched shapes, no
gradient work under no_grad, and a few training steps that lower the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qfleet import Client
from qfleet.torch import QuantumLayer

from qfleet_server.bench.workloads import encoder_ansatz

pytestmark = pytest.mark.e2e


def test_gradcheck_through_the_service(client: Client) -> None:
    qc, x, w = encoder_ansatz(2)
    layer = QuantumLayer(qc, ["ZI", "IZ", "XX"], x, w, client=client)
    inputs = torch.tensor(np.random.default_rng().uniform(0, np.pi, (3, 2)), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: layer._forward_with(a, b), (inputs, layer.weight), eps=1e-6, atol=1e-5)


def test_batched_shapes_and_no_grad(client: Client) -> None:
    qc, x, w = encoder_ansatz(3)
    layer = QuantumLayer(qc, ["ZII", "IZI"], x, w, client=client)
    batch = torch.rand(5, 3, dtype=torch.float64)
    out = layer(batch)
    assert out.shape == (5, 2) and out.requires_grad
    assert layer.last_job["gradient"]
    out.sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.shape == (len(w),)
    with torch.no_grad():
        assert layer(batch).shape == (5, 2)
    assert not layer.last_job["gradient"]  # no gradient work sent
    assert layer(batch[0]).shape == (2,)


def test_training_lowers_the_loss(client: Client) -> None:
    torch.manual_seed(0)
    qc, x, w = encoder_ansatz(2)
    layer = QuantumLayer(qc, ["IZ"], x, w, client=client, initial_weights=np.full(len(w), 0.1))
    inputs = torch.tensor([[0.1, 0.2], [2.8, 2.9], [0.3, 0.1], [3.0, 2.7]], dtype=torch.float64)
    target = torch.tensor([[-1.0], [1.0], [-1.0], [1.0]], dtype=torch.float64)  # the opposite of the untrained layer
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.2)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = torch.mean((layer(inputs) - target) ** 2)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses

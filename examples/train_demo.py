"""A hybrid model trained through qfleet: a frozen classical feature extractor with a
quantum head, against the same extractor with a classical head that has more trainable
parameters. Each training step of the quantum model is one qfleet job (the whole
mini-batch, forward and gradient, computed on the server).

Run it with ``make demo`` (or ``qfleet demo [--quick]``).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from qfleet import Client
from qfleet.torch import QuantumLayer

from bench.workloads import encoder_ansatz

N_QUBITS = 4
LAYERS = 2


def frozen_extractor() -> torch.nn.Module:
    """Stands in for a pretrained backbone: fixed weights, never trained; features in [0, 1]."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, N_QUBITS, dtype=torch.float64), torch.nn.Sigmoid())
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def make_data(extractor: torch.nn.Module, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Generated 16-dimensional inputs; the label is an XOR of two extracted features, so a
    head must learn a non-linear function of what the frozen backbone gives it."""
    x = torch.tensor(np.random.default_rng(seed).normal(size=(count, 16)) * 2)
    with torch.no_grad():
        f = extractor(x)
    y = (((f[:, 0] - 0.5) * (f[:, 1] - 0.5)) > 0).double()
    return x, y


class QuantumHead(torch.nn.Module):
    def __init__(self, client: Client) -> None:
        super().__init__()
        qc, x, w = encoder_ansatz(N_QUBITS, LAYERS, input_scale=np.pi)
        observables = ["I" * (N_QUBITS - 1 - i) + "Z" + "I" * i for i in range(N_QUBITS)]
        self.quantum = QuantumLayer(qc, observables, x, w, client=client, initial_weights=np.full(len(w), 0.1))
        self.readout = torch.nn.Linear(N_QUBITS, 1, dtype=torch.float64)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.readout(self.quantum(features)).squeeze(-1)


def classical_head() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(N_QUBITS, 32, dtype=torch.float64),
        torch.nn.Tanh(),
        torch.nn.Linear(32, 1, dtype=torch.float64),
        torch.nn.Flatten(0),
    )


def trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def train(
    name: str,
    head: torch.nn.Module,
    extractor: torch.nn.Module,
    data: tuple,
    steps: int,
    batch: int,
    quantum: QuantumLayer | None,
) -> float:  # type: ignore[type-arg]
    (x_train, y_train), (x_test, y_test) = data
    optimizer = torch.optim.Adam(head.parameters(), lr=0.1)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    rng = np.random.default_rng(1)
    print(
        f"\n{name}: {trainable(head)} trainable parameters (+{sum(p.numel() for p in extractor.parameters())} frozen)"
    )
    for step in range(1, steps + 1):
        idx = torch.tensor(rng.choice(len(x_train), batch, replace=False))
        t0 = time.perf_counter()
        optimizer.zero_grad()
        loss = loss_fn(head(extractor(x_train[idx])), y_train[idx])
        loss.backward()
        optimizer.step()
        total = time.perf_counter() - t0
        if quantum is not None:
            job = quantum.last_job
            quantum_s, queue_s = job["running_s"], job["round_trip_s"] - job["running_s"]
            split = f"quantum {quantum_s * 1000:6.1f} ms  queue+http {queue_s * 1000:5.1f} ms  classical {(total - job['round_trip_s']) * 1000:5.1f} ms"
            split += f"  circuits {job['parameter_sets']} (+adjoint gradient)"
        else:
            split = f"classical {total * 1000:6.1f} ms"
        if step == 1 or step % max(1, steps // 10) == 0 or step == steps:
            print(f"  step {step:3d}  loss {loss.item():.4f}  time {total * 1000:6.1f} ms  ({split})")
    with torch.no_grad():
        accuracy = ((head(extractor(x_test)) > 0).double() == y_test).double().mean().item()
    print(f"  test accuracy {accuracy:.3f}")
    return accuracy


def main(url: str, api_key: str, quick: bool = False) -> int:
    steps, batch = (3, 16) if quick else (120, 32)
    extractor = frozen_extractor()
    data = (make_data(extractor, 400, 1), make_data(extractor, 200, 2))
    with Client(url, api_key=api_key) as client:
        head = QuantumHead(client)
        q_acc = train("quantum head", head, extractor, data, steps, batch, head.quantum)
    torch.manual_seed(0)
    c_head = classical_head()
    c_acc = train("classical head", c_head, extractor, data, steps, batch, None)
    print(
        f"\nsummary: quantum head {trainable(head)} parameters, accuracy {q_acc:.3f}; "
        f"classical head {trainable(c_head)} parameters, accuracy {c_acc:.3f}"
    )
    return 0

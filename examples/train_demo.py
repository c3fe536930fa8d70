"""A short training loop through qfleet: one job per step.

A 4-qubit circuit classifier (the WORKLOADS.md ansatz with the inputs encoded as RY
angles) learns a two-moons-like task. Each step sends one job holding the whole batch
and its parameter-shift rows, and prints the loss and the time per step.
"""

from __future__ import annotations

import time

import numpy as np
from qfleet import Client


def ansatz_qasm(n: int, layers: int) -> str:
    lines = ["OPENQASM 3.0;", 'include "stdgates.inc";']
    lines += [f"input float[64] x{q};" for q in range(n)]
    lines += [f"input float[64] w{k:02d};" for k in range(2 * n * layers)]
    lines.append(f"qubit[{n}] q;")
    lines += [f"ry(x{q}) q[{q}];" for q in range(n)]
    k = 0
    for _ in range(layers):
        for q in range(n):
            lines.append(f"ry(w{k:02d}) q[{q}];")
            lines.append(f"rz(w{k + 1:02d}) q[{q}];")
            k += 2
        lines += [f"cx q[{q}], q[{q + 1}];" for q in range(n - 1)]
    return "\n".join(lines)


def dataset(count: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    t = rng.uniform(0, np.pi, count)
    labels = rng.integers(0, 2, count)
    x = np.stack([np.cos(t) + labels, np.sin(t) * (1 - 2 * labels) + 0.5 * labels], axis=1)
    x += rng.normal(0, 0.1, x.shape)
    features = np.concatenate([x, x[:, :1] * x[:, 1:]], axis=1)[:, : n - 1]
    features = np.pad(features, ((0, 0), (0, n - features.shape[1])))
    return np.pi * (features - features.min(0)) / (np.ptp(features, 0) + 1e-9), 1.0 - 2.0 * labels


def main(url: str, api_key: str, quick: bool = False) -> int:
    n, layers = 4, 2
    rng = np.random.default_rng(7)
    steps, batch = (3, 8) if quick else (25, 24)
    x_all, y_all = dataset(200, n, rng)
    weights = rng.normal(0, 0.3, 2 * n * layers)
    P = len(weights)
    circuit = ansatz_qasm(n, layers)
    observable = "Z" + "I" * (n - 1)  # Z on the last qubit
    lr = 0.3
    print(f"training a {n}-qubit, {P}-weight circuit classifier; {batch} samples x {2 * P + 1} circuits per step")
    with Client(url, api_key=api_key) as client:
        for step in range(1, steps + 1):
            idx = rng.choice(len(x_all), batch, replace=False)
            x, y = x_all[idx], y_all[idx]
            # rows: the weights, then each weight shifted by +pi/2 and -pi/2 (parameter shift)
            shifts = np.concatenate([np.zeros((1, P)), np.pi / 2 * np.eye(P), -np.pi / 2 * np.eye(P)])
            w_rows = weights + shifts  # (2P+1, P)
            values = np.concatenate(
                [
                    np.broadcast_to(x[:, None, :], (batch, len(w_rows), n)),
                    np.broadcast_to(w_rows, (batch, len(w_rows), P)),
                ],
                axis=2,
            )  # (batch, 2P+1, n+P); inputs x0..x3 sort before w00.. in circuit.parameters
            t0 = time.perf_counter()
            job = client.estimate([(circuit, observable, values)], backend="aer")
            evs = job.result(timeout=120)[0].evs  # (batch, 2P+1)
            quantum_s = time.perf_counter() - t0
            pred, plus, minus = evs[:, 0], evs[:, 1 : P + 1], evs[:, P + 1 :]
            loss = float(np.mean((pred - y) ** 2))
            grad = np.mean(2 * (pred - y)[:, None] * (plus - minus) / 2, axis=0)
            weights -= lr * grad
            acc = float(np.mean(np.sign(pred) == y))
            print(
                f"step {step:3d}  loss {loss:.4f}  acc {acc:.2f}  circuits {values.shape[0] * values.shape[1]:5d}  time {quantum_s * 1000:7.1f} ms"
            )
    return 0

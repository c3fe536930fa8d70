"""The standard workloads of WORKLOADS.md, shared by the benchmark, the demo and the tests."""

from __future__ import annotations

from qiskit import QuantumCircuit
from qiskit.circuit import Parameter, ParameterVector
from qiskit.quantum_info import SparsePauliOp


def _variational_layers(qc: QuantumCircuit, weights: ParameterVector, layers: int) -> None:
    """L layers of RY(θ), RZ(θ) on every qubit then a CX ladder q0→q1→…."""
    n, k = qc.num_qubits, 0
    for _ in range(layers):
        for q in range(n):
            qc.ry(weights[k], q)
            qc.rz(weights[k + 1], q)
            k += 2
        for q in range(n - 1):
            qc.cx(q, q + 1)


def training_ansatz(n: int, layers: int = 2) -> QuantumCircuit:
    """The training-step ansatz: L variational layers; P = 2·n·L."""
    qc = QuantumCircuit(n)
    _variational_layers(qc, ParameterVector("θ", 2 * n * layers), layers)
    return qc


def encoder_ansatz(
    n: int, layers: int = 1, input_scale: float = 1.0
) -> tuple[QuantumCircuit, list[Parameter], list[Parameter]]:
    """Inputs as RY(input_scale·x_q) angles, then trainable variational layers: (circuit, inputs, weights)."""
    x = ParameterVector("x", n)
    w = ParameterVector("w", 2 * n * layers)
    qc = QuantumCircuit(n)
    for q in range(n):
        qc.ry(input_scale * x[q] if input_scale != 1.0 else x[q], q)
    _variational_layers(qc, w, layers)
    return qc, list(x), list(w)


def z_observables(n: int) -> list[list[SparsePauliOp]]:
    """Z on each qubit, shape (n, 1), so the evs of B parameter sets have shape (n, B)."""
    return [[SparsePauliOp("I" * (n - 1 - i) + "Z" + "I" * i)] for i in range(n)]

"""The standard workloads of WORKLOADS.md, shared by the benchmark and the tests."""

from __future__ import annotations

from qiskit import QuantumCircuit
from qiskit.circuit import ParameterVector
from qiskit.quantum_info import SparsePauliOp


def training_ansatz(n: int, layers: int = 2) -> QuantumCircuit:
    """L layers of RY(θ), RZ(θ) on every qubit then a CX ladder q0→q1→…; P = 2·n·L."""
    theta = ParameterVector("θ", 2 * n * layers)
    qc = QuantumCircuit(n)
    k = 0
    for _ in range(layers):
        for q in range(n):
            qc.ry(theta[k], q)
            qc.rz(theta[k + 1], q)
            k += 2
        for q in range(n - 1):
            qc.cx(q, q + 1)
    return qc


def z_observables(n: int) -> list[list[SparsePauliOp]]:
    """Z on each qubit, shape (n, 1), so the evs of B parameter sets have shape (n, B)."""
    return [[SparsePauliOp("I" * (n - 1 - i) + "Z" + "I" * i)] for i in range(n)]

"""Engines: the library code that computes expectation values.

Each engine takes a :class:`Program` (a circuit prepared once per structure) and a block of
rows, and returns evs and stds. ``product`` blocks compute every observable on every
parameter row, giving (K, rows); ``zip`` blocks pair observable ``obs_index[j]`` with row
``j``, giving (rows,).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp


@dataclass
class Program:
    """A circuit and its observables, prepared once and reused for every task of that shape."""

    circuit: QuantumCircuit
    observables: list[SparsePauliOp]
    cache: dict[str, Any] = field(default_factory=dict)  # per-engine prepared forms

    @property
    def num_qubits(self) -> int:
        return int(self.circuit.num_qubits)


@dataclass
class Block:
    values: np.ndarray  # (rows, P)
    obs_index: np.ndarray | None = None  # (rows,) in zip mode; None in product mode
    shots: int = 0
    seed: int | None = None


class Engine(Protocol):
    name: str

    def estimate(self, program: Program, block: Block) -> tuple[np.ndarray, np.ndarray]: ...


class EngineUnsupported(Exception):
    """This engine cannot run this circuit; the runner tries the next engine."""

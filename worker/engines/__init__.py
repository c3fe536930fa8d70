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
    noise: bool = True  # device models: simulate the calibration's noise (the job's `noise` option)


class Engine(Protocol):
    name: str

    def estimate(self, program: Program, block: Block) -> tuple[np.ndarray, np.ndarray]: ...


class EngineUnsupported(Exception):
    """This engine cannot run this circuit; the runner tries the next engine."""


def block_pub(
    circuit: QuantumCircuit, observables: list[SparsePauliOp], block: Block, values: np.ndarray | None = None
) -> tuple[tuple[QuantumCircuit, Any, np.ndarray | None], tuple[int, ...]]:
    """The Qiskit EstimatorV2 PUB for a block, and the shape its evs must come back in:
    observables (K, 1) against rows for a product block, observable j with row j for a zip block."""
    from qiskit.primitives.containers import ObservablesArray

    rows = len(block.values)
    values = block.values if values is None else values
    if block.obs_index is None:
        array = ObservablesArray([[o] for o in observables])
        shape: tuple[int, ...] = (len(observables), rows)
    else:
        array = ObservablesArray([observables[k] for k in block.obs_index])
        shape = (rows,)
    return (circuit, array, values if circuit.num_parameters else None), shape


def as_block_result(data: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """evs and stds of a PUB result in the block's shape (a parameter-free circuit runs once, tiled)."""
    evs = np.broadcast_to(np.asarray(data.evs, dtype=float), shape).copy()
    return evs, np.broadcast_to(np.asarray(data.stds, dtype=float), shape).copy()


SAMPLER_REGISTER = "_qfleet_all"


def with_all_clbits(circuit: QuantumCircuit) -> QuantumCircuit:
    """The circuit plus one register aliasing all its clbits, in order: a sampler's output for
    that register is the whole clbit memory, which the service splits into the user's registers."""
    from qiskit import ClassicalRegister

    out = circuit.copy()
    if circuit.num_clbits:
        out.add_register(ClassicalRegister(name=SAMPLER_REGISTER, bits=out.clbits))
    return out


def memory_of(data: Any, rows: int, shots: int, num_clbits: int) -> np.ndarray:
    """(rows, shots, bytes) uint8 from a SamplerV2 PUB result over :func:`with_all_clbits`."""
    if not num_clbits:
        return np.zeros((rows, shots, 0), dtype=np.uint8)
    array = np.asarray(getattr(data, SAMPLER_REGISTER).array, dtype=np.uint8)
    return np.broadcast_to(array.reshape((-1,) + array.shape[-2:]), (rows,) + array.shape[-2:])

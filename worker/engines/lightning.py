"""Lightning: PennyLane Lightning's C++ statevector kernels, driven directly.

A circuit is compiled once into a list of kernel calls with each angle an affine function
of one parameter column; rows then run with no Python object built per gate. Qiskit's
qubit q is Lightning's wire n-1-q, which makes Lightning's amplitude order Qiskit's.
Observables that are only I/Z are read from the probabilities with one matrix product;
others use qiskit's Pauli expectation on the final state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pennylane_lightning.lightning_qubit_ops import StateVectorC128
from qiskit.circuit import Parameter, ParameterExpression
from qiskit.quantum_info import SparsePauliOp, Statevector

from . import Block, EngineUnsupported, Program

# qiskit name -> (lightning kernel, number of angles); angles map one to one unless noted.
_KERNELS: dict[str, tuple[str, int]] = {
    "rx": ("RX", 1),
    "ry": ("RY", 1),
    "rz": ("RZ", 1),
    "p": ("PhaseShift", 1),
    "u1": ("PhaseShift", 1),
    "h": ("Hadamard", 0),
    "x": ("PauliX", 0),
    "y": ("PauliY", 0),
    "z": ("PauliZ", 0),
    "s": ("S", 0),
    "t": ("T", 0),
    "sx": ("SX", 0),
    "cx": ("CNOT", 0),
    "cy": ("CY", 0),
    "cz": ("CZ", 0),
    "swap": ("SWAP", 0),
    "crx": ("CRX", 1),
    "cry": ("CRY", 1),
    "crz": ("CRZ", 1),
    "cp": ("ControlledPhaseShift", 1),
    "rxx": ("IsingXX", 1),
    "ryy": ("IsingYY", 1),
    "rzz": ("IsingZZ", 1),
    "ccx": ("Toffoli", 0),
    "cswap": ("CSWAP", 0),
}
_INVERSES = {"sdg": "s", "tdg": "t", "sxdg": "sx"}
_SKIP = {"barrier", "id", "delay", "global_phase"}

Angle = tuple[int, float, float]  # column (-1 = constant), scale, offset


@dataclass
class _Op:
    kernel: str
    wires: list[int]
    inverse: bool
    angles: list[Angle]
    matrix: np.ndarray | None = None


def _angle(value: Any, columns: dict[Parameter, int]) -> Angle:
    if not isinstance(value, ParameterExpression):
        return (-1, 0.0, float(value))
    params = value.parameters
    if not params:
        return (-1, 0.0, float(value))
    if len(params) != 1:
        raise EngineUnsupported("angle depends on several parameters")
    (param,) = params
    offset = float(value.bind({param: 0.0}))
    scale = float(value.bind({param: 1.0})) - offset
    if abs(float(value.bind({param: 2.0})) - (offset + 2 * scale)) > 1e-12:
        raise EngineUnsupported("angle is not affine in its parameter")
    return (columns[param], scale, offset)


def compile_circuit(program: Program) -> list[_Op]:
    circuit = program.circuit
    n = circuit.num_qubits
    columns = {p: j for j, p in enumerate(circuit.parameters)}
    ops: list[_Op] = []
    for inst in circuit.data:
        op = inst.operation
        name = op.name
        wires = [n - 1 - circuit.find_bit(q).index for q in inst.qubits]
        if name in _SKIP:
            continue
        inverse = name in _INVERSES
        base = _INVERSES.get(name, name)
        if base in _KERNELS:
            kernel, count = _KERNELS[base]
            angles = [_angle(v, columns) for v in op.params[:count]]
            ops.append(_Op(kernel, wires, inverse, angles))
        elif name in ("u", "u3"):
            theta, phi, lam = (_angle(v, columns) for v in op.params)
            ops.append(_Op("Rot", wires, False, [lam, theta, phi]))  # equal up to global phase
        elif not op.params or all(not isinstance(v, ParameterExpression) for v in op.params):
            try:
                matrix = np.ascontiguousarray(op.to_matrix(), dtype=np.complex128)
            except Exception as exc:
                raise EngineUnsupported(f"no matrix for '{name}'") from exc
            ops.append(
                _Op("applyMatrix", wires[::-1], False, [], matrix)
            )  # qiskit's first qubit is the least significant
        else:
            raise EngineUnsupported(f"no kernel for parameterized gate '{name}'")
    return ops


def _z_signs(n: int, observables: list[SparsePauliOp]) -> np.ndarray | None:
    """(2^n, K) matrix whose column k gives <O_k> = probs @ column, if every term is I/Z."""
    labels = [(label, coeff) for o in observables for label, coeff in o.to_list()]
    if any(set(label) - {"I", "Z"} for label, _ in labels):
        return None
    index = np.arange(2**n, dtype=np.uint64)
    signs = np.zeros((2**n, len(observables)))
    for k, obs in enumerate(observables):
        for label, coeff in obs.to_list():
            mask = sum(1 << q for q, ch in enumerate(reversed(label)) if ch == "Z")
            parity = np.bitwise_count(index & np.uint64(mask)) & np.uint64(1)
            signs[:, k] += coeff.real * (1.0 - 2.0 * parity.astype(float))
    return signs


class LightningEngine:
    name = "lightning"

    def __init__(self, threads: int) -> None:
        self.threads = threads  # Lightning reads OMP_NUM_THREADS, set by the worker at start

    def _prepared(self, program: Program) -> tuple[list[_Op], np.ndarray | None]:
        prepared = program.cache.get("lightning")
        if prepared is None:
            prepared = (compile_circuit(program), _z_signs(program.num_qubits, program.observables))
            program.cache["lightning"] = prepared
        return prepared

    def estimate(self, program: Program, block: Block) -> tuple[np.ndarray, np.ndarray]:
        if block.shots:
            raise EngineUnsupported("Lightning runs exact estimates only")
        ops, signs = self._prepared(program)
        n = program.num_qubits
        sv = StateVectorC128(n)
        state = np.zeros(2**n, dtype=np.complex128)
        rows = len(block.values)
        K = len(program.observables)
        evs = np.zeros((K, rows)) if block.obs_index is None else np.zeros(rows)
        for r, x in enumerate(block.values):
            sv.resetStateVector()
            for op in ops:
                if op.matrix is not None:
                    sv.applyMatrix(op.matrix, op.wires, False)
                    continue
                angles = [offset + (scale * x[col] if col >= 0 else 0.0) for col, scale, offset in op.angles]
                getattr(sv, op.kernel)(op.wires, op.inverse, angles)
            sv.getState(state)
            if block.obs_index is None:
                if signs is not None:
                    evs[:, r] = (state.real**2 + state.imag**2) @ signs
                else:
                    psi = Statevector(state)
                    evs[:, r] = [psi.expectation_value(o).real for o in program.observables]
            else:
                k = int(block.obs_index[r])
                if signs is not None:
                    evs[r] = (state.real**2 + state.imag**2) @ signs[:, k]
                else:
                    evs[r] = Statevector(state).expectation_value(program.observables[k]).real
        return evs, np.zeros_like(evs)

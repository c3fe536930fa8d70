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
from pennylane_lightning.lightning_qubit_ops.algorithms import AdjointJacobianC128, create_ops_listC128
from pennylane_lightning.lightning_qubit_ops.observables import HamiltonianC128, NamedObsC128, TensorProdObsC128
from qiskit.circuit import Parameter, ParameterExpression
from qiskit.quantum_info import SparsePauliOp, Statevector

from qfleet_server.gradients import Angle, NotDifferentiable, affine_angle

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


@dataclass
class _Op:
    kernel: str
    wires: list[int]
    inverse: bool
    angles: list[Angle]
    matrix: np.ndarray | None = None


def _angle(value: Any, columns: dict[Parameter, int]) -> Angle:
    try:
        return affine_angle(value, columns)
    except NotDifferentiable as exc:
        raise EngineUnsupported(str(exc)) from None


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


# Largest sign matrix kept (entries): 2^24 float64 = 128 MiB. Wider circuits, or many
# observables, use qiskit's O(2^n)-memory Pauli expectation instead.
_MAX_SIGN_ENTRIES = 1 << 24
# Probabilities of this many bytes are gathered before one product with the sign matrix.
_PROBS_GROUP_BYTES = 1 << 21


def _z_signs(n: int, observables: list[SparsePauliOp]) -> np.ndarray | None:
    """(2^n, K) matrix whose column k gives <O_k> = probs @ column, if every term is I/Z."""
    if 2**n * len(observables) > _MAX_SIGN_ENTRIES:
        return None
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
        product = block.obs_index is None
        evs = np.zeros((K, rows)) if product else np.zeros(rows)
        if product and signs is not None:
            # I/Z observables, every one on each row: a few rows' probabilities at a time, then one
            # matrix product, so the sign matrix is read once per group instead of copied per row
            group = max(1, min(rows, _PROBS_GROUP_BYTES // (8 << n)))
            probs = np.empty((group, 2**n))
            for lo in range(0, rows, group):
                hi = min(rows, lo + group)
                for j, x in enumerate(block.values[lo:hi]):
                    _run(sv, ops, x)
                    sv.getState(state)
                    _probabilities(state, probs[j])
                evs[:, lo:hi] = (probs[: hi - lo] @ signs).T
            return evs, np.zeros_like(evs)
        for r, x in enumerate(block.values):
            _run(sv, ops, x)
            sv.getState(state)
            if product:
                evs[:, r] = _expectations(state, program, signs, range(K))
            else:
                evs[r] = _expectations(state, program, signs, [int(block.obs_index[r])])[0]  # type: ignore[index]
        return evs, np.zeros_like(evs)

    def gradient(self, program: Program, block: Block) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Adjoint differentiation: exact runs only."""
        if block.shots:
            raise EngineUnsupported("adjoint gradients need exact simulation")
        ops, signs = self._prepared(program)
        return adjoint_gradient(program, block, ops, signs)


def _run(sv: Any, ops: list[_Op], x: np.ndarray) -> None:
    sv.resetStateVector()
    for op in ops:
        if op.matrix is not None:
            sv.applyMatrix(op.matrix, op.wires, False)
            continue
        angles = [offset + (scale * x[col] if col >= 0 else 0.0) for col, scale, offset in op.angles]
        getattr(sv, op.kernel)(op.wires, op.inverse, angles)


def _probabilities(state: np.ndarray, out: np.ndarray) -> np.ndarray:
    """|amplitude|^2 of each basis state into ``out``, with no temporaries of the state's size."""
    pairs = state.view(np.float64).reshape(-1, 2)
    return np.einsum("ij,ij->i", pairs, pairs, out=out)  # type: ignore[no-any-return]


def _expectations(state: np.ndarray, program: Program, signs: np.ndarray | None, which: Any) -> np.ndarray:
    which = list(which)
    if signs is not None:
        probs = _probabilities(state, np.empty(len(state)))
        if which == list(range(signs.shape[1])):
            return probs @ signs  # type: ignore[no-any-return]
        return probs @ signs[:, which]  # type: ignore[no-any-return]
    psi = Statevector(state)
    return np.array([psi.expectation_value(program.observables[k]).real for k in which])


def _pauli_observable(n: int, op: SparsePauliOp) -> Any:
    """A Lightning observable for a real combination of Pauli strings."""
    names = {"X": "PauliX", "Y": "PauliY", "Z": "PauliZ"}
    coeffs, terms = [], []
    for label, coeff in op.to_list():
        factors = [NamedObsC128(names[ch], [n - 1 - q]) for q, ch in enumerate(reversed(label)) if ch != "I"]
        if not factors:
            continue  # a constant term has no gradient
        terms.append(factors[0] if len(factors) == 1 else TensorProdObsC128(factors))
        coeffs.append(float(np.real(coeff)))
    if not terms:
        terms, coeffs = [NamedObsC128("Identity", [0])], [0.0]
    return HamiltonianC128(np.array(coeffs), terms)


@dataclass
class _AdjointForm:
    names: list[str]
    wires: list[list[int]]
    inverses: list[bool]
    mats: list[np.ndarray]
    angles: list[list[Angle]]  # per op; QubitUnitary carries a dummy constant
    trainable: list[int]  # flat indices of parameter-dependent angles
    columns: np.ndarray  # circuit parameter of each trainable angle
    scales: np.ndarray
    observables: list[Any]


def _adjoint_form(program: Program, ops: list[_Op]) -> _AdjointForm:
    names: list[str] = []
    wires: list[list[int]] = []
    inverses: list[bool] = []
    mats: list[np.ndarray] = []
    angles: list[list[Angle]] = []
    for op in ops:
        if op.matrix is not None:
            names.append("QubitUnitary")
            wires.append(op.wires)
            inverses.append(False)
            mats.append(np.array(op.matrix, dtype=np.complex128, order="C"))  # writable, as the binding wants
            angles.append([(-1, 0.0, 0.0)])
        elif op.kernel == "Rot":  # Rot(a, b, c) = RZ(c) RY(b) RZ(a), as Lightning's adjoint wants it
            for kernel, angle in zip(("RZ", "RY", "RZ"), op.angles):
                names.append(kernel)
                wires.append(op.wires)
                inverses.append(False)
                mats.append(np.array([], dtype=np.complex128))
                angles.append([angle])
        else:
            names.append(op.kernel)
            wires.append(op.wires)
            inverses.append(op.inverse)
            mats.append(np.array([], dtype=np.complex128))
            angles.append(op.angles)
    flat = [a for per_op in angles for a in per_op]
    trainable = [i for i, a in enumerate(flat) if a[0] >= 0]
    n = program.num_qubits
    return _AdjointForm(
        names,
        wires,
        inverses,
        mats,
        angles,
        trainable,
        np.array([flat[i][0] for i in trainable], dtype=int),
        np.array([flat[i][1] for i in trainable]),
        [_pauli_observable(n, o) for o in program.observables],
    )


def adjoint_gradient(
    program: Program, block: Block, ops: list[_Op], signs: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """evs and d(evs)/d(parameters) by adjoint differentiation, one forward and one backward pass per row."""
    form = program.cache.get("lightning-adjoint")
    if form is None:
        form = program.cache["lightning-adjoint"] = _adjoint_form(program, ops)
    n, P = program.num_qubits, program.circuit.num_parameters
    rows = len(block.values)
    K = len(program.observables)
    product = block.obs_index is None
    evs = np.zeros((K, rows)) if product else np.zeros(rows)
    grad = np.zeros((K, rows, P)) if product else np.zeros((rows, P))
    sv = StateVectorC128(n)
    state = np.zeros(2**n, dtype=np.complex128)
    adjoint = AdjointJacobianC128()
    no_controls: list[list[int]] = [[] for _ in form.names]
    no_values: list[list[bool]] = [[] for _ in form.names]
    for r, x in enumerate(block.values):
        params = [
            [offset + (scale * x[col] if col >= 0 else 0.0) for col, scale, offset in per_op] for per_op in form.angles
        ]
        _run(sv, ops, x)
        sv.getState(state)
        wanted = list(range(K)) if product else [int(block.obs_index[r])]  # type: ignore[index]
        values = _expectations(state, program, signs, wanted)
        struct = create_ops_listC128(form.names, params, form.wires, form.inverses, form.mats, no_controls, no_values)
        jac = np.asarray(adjoint(sv, [form.observables[k] for k in wanted], struct, form.trainable)).reshape(
            len(wanted), -1
        )
        per_param = np.zeros((len(wanted), P))
        np.add.at(per_param.T, form.columns, (jac * form.scales).T)
        if product:
            evs[:, r] = values
            grad[:, r, :] = per_param
        else:
            evs[r] = values[0]
            grad[r] = per_param[0]
    return evs, np.zeros_like(evs), grad

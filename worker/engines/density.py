"""Noisy density-matrix simulation of many parameter sets at once, in the Pauli basis.

The state of n qubits is kept as its Pauli coefficients c_P = Tr(ρ P), which are real, with one
axis of length 4 (I, X, Y, Z) per qubit: shape (B, 4, …, 4) for B parameter sets. Every gate and
noise channel is then a real Pauli transfer matrix (PTM), taken from qiskit's own channels, so
the result is the exact density matrix of the noise model, with a quarter of the arithmetic of
complex matrices. Per circuit structure (:func:`compile_circuit`) each qubit's run of one-qubit
gates between two two-qubit gates, noise included, becomes one 4×4 PTM per parameter set, and
each CZ with its parameter-free noise one shared signed, scaled permutation of 16 Paulis; the
relaxation after a CZ acts on each qubit alone, so it joins the next run of that qubit. Qubits
are product states until their first two-qubit gate, and the runs after their last one join
the measurement.

Measurement follows qiskit's ``BackendEstimatorV2``: per group of qubit-wise commuting Paulis,
the noisy basis change, the readout confusion matrix, ``shots`` shots drawn from the outcome
distribution, and evs and stds computed from the counts by its formulas.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import ParameterExpression
from qiskit.quantum_info import SuperOp

PAULIS = (
    np.eye(2, dtype=complex),
    np.array([[0, 1], [1, 0]], dtype=complex),
    np.array([[0, -1j], [1j, 0]]),
    np.array([[1, 0], [0, -1]], dtype=complex),
)
# outcome 0 and 1 of a Z measurement from the (I, Z) coefficients: p(x) = (c_I ± c_Z) / 2
Z_OUTCOMES = np.array([[0.5, 0.0, 0.0, 0.5], [0.5, 0.0, 0.0, -0.5]])
CHUNK_BYTES = 1 << 21  # states per chunk small enough to stay in cache while every gate passes over them


class Unsupported(ValueError):
    """The circuit has an operation this simulator does not model."""


def ptm(channel: Any, num_qubits: int) -> np.ndarray:
    """The real Pauli transfer matrix R[a, b] = Tr(P_a E(P_b)) / 2^k of a qiskit channel or gate.

    Index a is row-major over (Pauli on the channel's qubit 0, on qubit 1, …); qubit 0 is the
    least significant in qiskit's matrices, so P_(p0, p1) = P_p1 ⊗ P_p0.
    """
    superop = SuperOp(channel).data  # column-stacking: vec(ρ) = ρ.flatten("F")
    d = 2**num_qubits
    basis = []
    for index in np.ndindex(*(4,) * num_qubits):
        matrix = np.ones((1, 1), dtype=complex)
        for p in index:
            matrix = np.kron(PAULIS[p], matrix)
        basis.append(matrix)
    images = [(superop @ b.flatten("F")).reshape(d, d, order="F") for b in basis]
    out = np.array([[np.trace(a @ e).real / d for e in images] for a in basis])
    return out


def rz_ptms(angles: np.ndarray) -> np.ndarray:
    """(B, 4, 4) PTMs of RZ(θ): X → cos θ X + sin θ Y."""
    c, s = np.cos(angles), np.sin(angles)
    out = np.zeros(angles.shape + (4, 4))
    out[..., 0, 0] = out[..., 3, 3] = 1.0
    out[..., 1, 1] = out[..., 2, 2] = c
    out[..., 1, 2] = -s
    out[..., 2, 1] = s
    return out


@dataclass
class Channels:
    """The noise model on the compact qubits, as PTMs.

    ``one_qubit[q]``: the error after each sx or x on qubit q. ``two_qubit[(a, b)]``: for a CZ
    with a first, (the CZ's error less its relaxation, 16×16; relaxation of a; of b).
    ``readout[q]``: the confusion matrix A[recorded, true]. A missing key means no noise there.
    """

    one_qubit: dict[int, np.ndarray] = field(default_factory=dict)
    two_qubit: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    readout: dict[int, np.ndarray] = field(default_factory=dict)


# A run of one-qubit operations: fixed PTMs and RZ angles (indices into the affine angle table).
Run = list[np.ndarray | int]


Term = tuple[int, int, int, int, float]  # out[i, j] += coef · in[k, l], Paulis of (first, second)


@dataclass
class _TwoQubit:
    a: int
    b: int
    terms: list[Term]


@dataclass
class Compiled:
    """A circuit prepared for :func:`evolve`: per qubit its leading and trailing runs, and the
    steps between (a run on one qubit, or a two-qubit channel), in circuit order."""

    num_qubits: int
    num_parameters: int
    lead: list[Run]
    steps: list[tuple[int, Run] | _TwoQubit]
    tail: list[Run]
    angle_weights: np.ndarray  # (P, m): the m RZ angles are values @ weights + offsets
    angle_offsets: np.ndarray


def _affine(expression: Any, parameters: list[Any]) -> tuple[float, dict[int, float]]:
    """offset and coefficients of an angle that is affine in the circuit's parameters."""
    if not isinstance(expression, ParameterExpression):
        return float(expression), {}
    index = {p: i for i, p in enumerate(parameters)}
    free = list(expression.parameters)
    offset = float(expression.bind(dict.fromkeys(free, 0.0)))
    weights = {}
    for p in free:
        slope = expression.gradient(p)
        if isinstance(slope, ParameterExpression):
            if slope.parameters:
                raise Unsupported(f"angle {expression} is not affine in its parameters")
            slope = float(slope)
        weights[index[p]] = float(slope)
    return offset, weights


def compile_circuit(circuit: QuantumCircuit, channels: Channels) -> Compiled:
    """Prepare a circuit of rz, sx, x and cz gates (a device's native set) for :func:`evolve`."""
    n = circuit.num_qubits
    parameters = list(circuit.parameters)
    sx, x = ptm(_gate("sx"), 1), ptm(_gate("x"), 1)
    cz = ptm(_gate("cz"), 2)
    offsets: list[float] = []
    weights: list[dict[int, float]] = []
    pending: list[Run] = [[] for _ in range(n)]
    lead: list[Run | None] = [None] * n
    steps: list[tuple[int, Run] | _TwoQubit] = []
    for inst in circuit.data:
        name = inst.operation.name
        qubits = [circuit.find_bit(q).index for q in inst.qubits]
        if name == "rz":
            offset, weight = _affine(inst.operation.params[0], parameters)
            pending[qubits[0]].append(len(offsets))
            offsets.append(offset)
            weights.append(weight)
        elif name in ("sx", "x"):
            q = qubits[0]
            pending[q].append(sx if name == "sx" else x)
            if q in channels.one_qubit:
                pending[q].append(channels.one_qubit[q])
        elif name == "cz":
            a, b = qubits
            for q in (a, b):
                if lead[q] is None:
                    lead[q] = pending[q]
                elif pending[q]:
                    steps.append((q, pending[q]))
            error, relax_a, relax_b = channels.two_qubit.get((a, b), (np.eye(16), np.eye(4), np.eye(4)))
            steps.append(_TwoQubit(a, b, _sparse(error @ cz)))
            pending[a], pending[b] = [relax_a], [relax_b]
        elif name == "barrier":
            continue
        else:
            raise Unsupported(f"the density-matrix engine does not model {name!r}")
    table = np.zeros((len(parameters), len(offsets)))
    for j, weight in enumerate(weights):
        for i, w in weight.items():
            table[i, j] = w
    return Compiled(
        n,
        len(parameters),
        [_fold(run if run is not None else pending[q]) for q, run in enumerate(lead)],
        [step if isinstance(step, _TwoQubit) else (step[0], _fold(step[1])) for step in steps],
        [_fold(pending[q]) if lead[q] is not None else [] for q in range(n)],
        table,
        np.array(offsets),
    )


def _gate(name: str) -> Any:
    from qiskit.circuit.library import CZGate, SXGate, XGate

    return {"sx": SXGate, "x": XGate, "cz": CZGate}[name]()


def _fold(run: Run) -> Run:
    """Multiply neighbouring fixed PTMs once, at compile time."""
    out: Run = []
    for item in run:
        if isinstance(item, np.ndarray) and out and isinstance(out[-1], np.ndarray):
            out[-1] = item @ out[-1]
        else:
            out.append(item)
    return out


def _sparse(matrix: np.ndarray) -> list[Term]:
    rows, cols = np.nonzero(np.abs(matrix) > 1e-15)
    return [(int(r) // 4, int(r) % 4, int(c) // 4, int(c) % 4, float(matrix[r, c])) for r, c in zip(rows, cols)]


def run_ptms(run: Run, angles: np.ndarray) -> np.ndarray:
    """(B, 4, 4): a run's PTM for each parameter set, from the (B, m) RZ angles."""
    out = np.broadcast_to(np.eye(4), (len(angles), 4, 4))
    for item in run:
        out = item @ out if isinstance(item, np.ndarray) else rz_ptms(angles[:, item]) @ out
    return np.ascontiguousarray(out)


def _apply_one(state: np.ndarray, axis: int, ptms: np.ndarray, out: np.ndarray) -> np.ndarray:
    """(B, 4, …) ← a (B, 4, 4) PTM per set on one qubit axis, through matmul over contiguous blocks."""
    B, n = state.shape[0], state.ndim - 1
    R = 4 ** (n - 1 - axis)
    if R >= 16:
        np.matmul(ptms[:, None], state.reshape(B, -1, 4, R), out=out.reshape(B, -1, 4, R))
        return out
    # the last axes: one matmul per set from the right against I ⊗ PTMᵀ ⊗ I, 16 wide at least
    left = 4 ** min(axis, 1 if R == 1 else 0)
    width = left * 4 * R
    kron = np.einsum("uv,bij,rs->bujrvis", np.eye(left), ptms, np.eye(R)).reshape(B, width, width)
    np.matmul(state.reshape(B, -1, width), kron, out=out.reshape(B, -1, width))
    return out


def _apply_two(state: np.ndarray, first: int, second: int, terms: list[Term], out: np.ndarray) -> np.ndarray:
    """(B, 4, …) ← a sparse 16×16 PTM on two qubit axes, one strided slice per nonzero."""
    B, n = state.shape[0], state.ndim - 1
    a, b = sorted((first, second))
    view = state.reshape(B, 4**a, 4, 4 ** (b - a - 1), 4, 4 ** (n - 1 - b))
    target = out.reshape(view.shape)
    written = set()
    for i, j, k, m, coef in terms:
        if first > second:  # terms index (first, second); the view's axes are sorted
            i, j, k, m = j, i, m, k
        source = view[:, :, k, :, m, :]
        if (i, j) in written:
            target[:, :, i, :, j, :] += coef * source
        else:
            np.multiply(source, coef, out=target[:, :, i, :, j, :])
            written.add((i, j))
    for i in range(4):
        for j in range(4):
            if (i, j) not in written:
                target[:, :, i, :, j, :] = 0.0
    return out


def _to_front(state: np.ndarray, axes: list[int], qubits: tuple[int, ...], spare: np.ndarray) -> np.ndarray:
    """Gates on the last two axes act on short contiguous runs, which is slow: move those two
    axes to the front (one copy, at most twice) and record where each qubit now is."""
    B, n = state.shape[0], state.ndim - 1
    for _ in range(2):
        if n < 5 or all(axes[q] < n - 2 for q in qubits):
            break
        front = spare.reshape(B, 16, 4 ** (n - 2))
        np.copyto(front, state.reshape(B, 4 ** (n - 2), 16).transpose(0, 2, 1))
        for q in range(n):
            axes[q] = axes[q] + 2 if axes[q] < n - 2 else axes[q] - (n - 2)
        state, spare = spare, state
    return state


def evolve(program: Compiled, values: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """(B, 4, …, 4): the Pauli coefficients after the last two-qubit step, for (B, P) values
    (each qubit's trailing run is left to :func:`measure`), and the axis of each qubit there."""
    angles = values @ program.angle_weights + program.angle_offsets
    B, n = len(values), program.num_qubits
    zero = np.array([1.0, 0.0, 0.0, 1.0])  # |0><0| = (I + Z) / 2
    state = np.ones((B, 1))
    for q in reversed(range(n)):  # outer products, axis by axis: qubit q on axis q
        vector = run_ptms(program.lead[q], angles) @ zero
        state = (vector[:, :, None] * state[:, None, :]).reshape(B, -1)
    state = state.reshape((B,) + (4,) * n)
    buffers = [state, np.empty_like(state)]
    axes = list(range(n))
    for step in program.steps:
        qubits = (step.a, step.b) if isinstance(step, _TwoQubit) else (step[0],)
        moved = _to_front(state, axes, qubits, buffers[1] if state is buffers[0] else buffers[0])
        spare = buffers[1] if moved is buffers[0] else buffers[0]
        if isinstance(step, _TwoQubit):
            state = _apply_two(moved, axes[step.a], axes[step.b], step.terms, spare)
        else:
            state = _apply_one(moved, axes[step[0]], run_ptms(step[1], angles), spare)
    return state, axes


def chunk_size(num_qubits: int) -> int:
    return max(1, CHUNK_BYTES // (8 * 4**num_qubits))


@dataclass
class Group:
    """One measurement setting: the qubits measured, each one's basis change as a run, and
    the Paulis read from its counts."""

    measured: list[int]
    basis: dict[int, Run]
    paulis: list[str]  # labels, qiskit order (qubit 0 rightmost)


def measurement_group(circuit: QuantumCircuit, paulis: Sequence[str], channels: Channels) -> Group:
    """A group from one of BackendEstimatorV2's measurement circuits (basis change, then measure)."""
    sx, x = ptm(_gate("sx"), 1), ptm(_gate("x"), 1)
    basis: dict[int, Run] = {}
    measured = []
    for inst in circuit.data:
        q = circuit.find_bit(inst.qubits[0]).index
        name = inst.operation.name
        run = basis.setdefault(q, [])
        if name == "measure":
            measured.append(q)
        elif name == "rz":
            run.append(rz_ptms(np.array([float(inst.operation.params[0])]))[0])
        elif name in ("sx", "x"):
            run.append(sx if name == "sx" else x)
            if q in channels.one_qubit:
                run.append(channels.one_qubit[q])
        elif name != "barrier":
            raise Unsupported(f"measurement basis change with {name!r}")
    supports = [{q for q, ch in enumerate(reversed(p)) if ch != "I"} for p in paulis]
    # an all-identity group is read from qubit 0 but needs no outcome: its Paulis are all +1
    measured = sorted(measured) if any(supports) else []
    return Group(measured, {q: _fold(basis.get(q, [])) for q in measured}, list(paulis))


def measure(
    program: Compiled,
    state: np.ndarray,
    axes: list[int],
    angles: np.ndarray,
    group: Group,
    channels: Channels,
    shots: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """(B, len(group.paulis)) expectation values from ``shots`` sampled outcomes per set."""
    B, n = state.shape[0], program.num_qubits
    # unmeasured qubits are traced out: every channel is trace preserving, so the tails keep c_I
    measured = set(group.measured)
    index = tuple(slice(None) if axes.index(a) in measured else 0 for a in range(n))
    reduced = state[(slice(None),) + index]
    order = sorted(group.measured, key=lambda q: axes[q])  # front axes first: later ones act on less data
    for k, q in enumerate(order):
        tail = run_ptms(program.tail[q], angles)
        change = run_ptms(group.basis[q], np.zeros((1, 0)))[0]
        readout = channels.readout.get(q, np.eye(2))
        functional = (readout @ Z_OUTCOMES @ change) @ tail  # (B, 2, 4)
        reduced = np.matmul(functional[:, None], reduced.reshape(B, 2**k, 4, -1))
    probabilities = np.clip(reduced.reshape(B, -1), 0.0, None)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    counts = rng.multinomial(shots, probabilities)
    m = len(order)
    bits = (np.arange(2**m)[:, None] >> np.arange(m - 1, -1, -1)[None, :]) & 1  # outcome → bit of order[k]
    signs = np.empty((2**m, len(group.paulis)))
    for j, label in enumerate(group.paulis):
        mask = np.array([label[::-1][q] != "I" for q in order], dtype=int)
        signs[:, j] = 1 - 2 * ((bits @ mask) % 2)
    return (counts @ signs) / shots


def estimator_shots(shots: int) -> int:
    """The shots BackendEstimatorV2 runs for precision 1/√shots."""
    return math.ceil(1.0 / (1 / np.sqrt(shots)) ** 2)


def estimate(
    program: Compiled,
    channels: Channels,
    values: np.ndarray,
    observables: list[dict[str, complex]],
    obs_index: np.ndarray | None,
    shots: int,
    seed: int | None,
    groups: Callable[[tuple[str, ...]], list[Group]],
) -> tuple[np.ndarray, np.ndarray]:
    """evs and stds as BackendEstimatorV2 gives them: (K, B) for every observable on every set,
    or (B,) for observable ``obs_index[j]`` on set j. ``groups`` maps a sorted tuple of Pauli
    labels to its measurement groups."""
    rng = np.random.default_rng(seed)
    shots = estimator_shots(shots)
    B = len(values)
    wanted = [sorted({label for obs in observables for label in obs})] * B
    if obs_index is not None:
        wanted = [sorted(observables[k]) for k in obs_index]
    expvals: list[dict[str, float]] = [{} for _ in range(B)]
    chunk = chunk_size(program.num_qubits)
    for start in range(0, B, chunk):
        rows = np.arange(start, min(B, start + chunk))
        block = values[rows]
        state, axes = evolve(program, block)
        angles = block @ program.angle_weights + program.angle_offsets
        sets: dict[tuple[str, ...], list[int]] = {}
        for i, r in enumerate(rows):
            sets.setdefault(tuple(wanted[r]), []).append(i)
        for labels, members in sets.items():
            sub = state if len(members) == len(rows) else state[members]
            for group in groups(labels):
                got = measure(program, sub, axes, angles[members], group, channels, shots, rng)
                for i, row in zip(members, got):
                    expvals[rows[i]].update(zip(group.paulis, row))
    shape = (len(observables), B) if obs_index is None else (B,)
    evs, spread = np.zeros(shape), np.zeros(shape)
    for idx in np.ndindex(*shape):
        k, r = (idx[0], idx[1]) if obs_index is None else (int(obs_index[idx[0]]), idx[0])
        for label, coeff in observables[k].items():
            ev = expvals[r][label]
            evs[idx] += (ev * coeff).real
            spread[idx] += abs(coeff) * (1 - ev**2) ** 0.5
    return evs, spread / np.sqrt(shots)


def final_state(program: Compiled, values: np.ndarray) -> np.ndarray:
    """(B, 4, …, 4): the Pauli coefficients at the end of the circuit, trailing runs included."""
    state, axes = evolve(program, values)
    state = np.ascontiguousarray(state.transpose([0] + [1 + a for a in axes]))
    angles = values @ program.angle_weights + program.angle_offsets
    for q, run in enumerate(program.tail):
        if run:
            state = _apply_one(state, q, run_ptms(run, angles), np.empty_like(state))
    return state


def density_matrices(coefficients: np.ndarray) -> np.ndarray:
    """(B, 2^n, 2^n) density matrices, qiskit's qubit order, from (B, 4, …, 4) Pauli coefficients."""
    B, n = coefficients.shape[0], coefficients.ndim - 1
    paulis = np.array(PAULIS)
    operands: list[Any] = [coefficients, [0, *range(1, n + 1)]]
    for q in range(n):
        operands += [paulis, [1 + q, 1 + n + q, 1 + 2 * n + q]]
    rows, cols = [1 + n + q for q in reversed(range(n))], [1 + 2 * n + q for q in reversed(range(n))]
    return np.einsum(*operands, [0, *rows, *cols], optimize="greedy").reshape(B, 2**n, 2**n) / 2**n

"""Noisy density-matrix simulation of many parameter sets at once, in the Pauli basis.

The state of n qubits is kept as its Pauli coefficients c_P = Tr(ρ P), which are real, with one
axis of length 4 (I, X, Y, Z) per qubit: shape (B, 4, …, 4) for B parameter sets. Every gate and
noise channel is then a real Pauli transfer matrix (PTM), taken from qiskit's own channels, so
the result is the exact density matrix of the noise model, with a quarter of the arithmetic of
complex matrices. Per circuit structure (:func:`compile_circuit`) each qubit's run of one-qubit
gates between two two-qubit gates, noise included, becomes one 4×4 PTM per parameter set, and
each CZ with its parameter-free noise one shared signed, scaled permutation of 16 Paulis; the
relaxation after a CZ acts on each qubit alone, so it joins the next run of that qubit.

Per set of measurement groups a :class:`Plan` keeps the state small without changing what is
measured: only the backward light cone of the measured qubits is simulated, a qubit joins the
state at its first two-qubit gate (it is a product state until then) and leaves it after its
last one, traced out or measured (its axis of 4 coefficients becomes one of 2 outcome
probabilities), and the two-qubit gates run in an order that keeps the state smallest. On a
ladder of CZs the state then spans a few qubits' coefficients and the finished qubits' outcomes,
not 4^n coefficients: the noisy 12-qubit training ansatz costs milliseconds a set, not seconds.

Measurement follows qiskit's ``BackendEstimatorV2``: per group of qubit-wise commuting Paulis,
the noisy basis change, the readout confusion matrix, ``shots`` shots drawn from the outcome
distribution, and evs and stds computed from the counts by its formulas. Its groups are kept
as they are (so are the correlations between Paulis read from the same shots).
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
    lead: list[Form]
    steps: list[tuple[int, Form] | _TwoQubit]
    tail: list[Form]
    angle_weights: np.ndarray  # (P, m): the m RZ angles are values @ weights + offsets
    angle_offsets: np.ndarray
    plans: dict[tuple[str, ...], list[Plan]] = field(default_factory=dict)  # per set of Pauli labels


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
            run = pending[qubits[0]]
            if not weight:  # a fixed angle: a fixed PTM, multiplied into its neighbours
                run.append(rz_ptms(np.array(offset)))
            elif run and not isinstance(run[-1], np.ndarray):  # RZ(a) RZ(b) = RZ(a + b): fewer angles a run
                j = run[-1]
                offsets[j] += offset
                weights[j] = {i: weights[j].get(i, 0.0) + weight.get(i, 0.0) for i in weights[j].keys() | weight.keys()}
            else:
                run.append(len(offsets))
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
        [Form(_fold(run if run is not None else pending[q])) for q, run in enumerate(lead)],
        [step if isinstance(step, _TwoQubit) else (step[0], Form(_fold(step[1]))) for step in steps],
        [Form(_fold(pending[q]) if lead[q] is not None else []) for q in range(n)],
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


# RZ(θ)'s PTM is E0 + cos θ·E1 + sin θ·E2
_RZ_TERMS = np.zeros((3, 4, 4))
_RZ_TERMS[0, 0, 0] = _RZ_TERMS[0, 3, 3] = _RZ_TERMS[1, 1, 1] = _RZ_TERMS[1, 2, 2] = _RZ_TERMS[2, 2, 1] = 1.0
_RZ_TERMS[2, 1, 2] = -1.0


class Form:
    """A run's PTM as a polynomial in the cosines and sines of its k RZ angles, expanded once:
    Σ_e Π_j t_(e_j)(θ_j) M_e over e in {1, cos, sin}^k, so the PTMs of B sets take one matmul."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.indices = [item for item in run if not isinstance(item, np.ndarray)]
        self.expanded = len(self.indices) <= 4  # 3^k terms
        terms = np.eye(4)[None]
        if self.expanded:
            for item in run:
                if isinstance(item, np.ndarray):
                    terms = item @ terms
                else:  # the new factor's index varies fastest
                    terms = np.einsum("eij,tjk->teik", _RZ_TERMS, terms).reshape(-1, 4, 4)
        self.terms = terms.reshape(len(terms), 16)
        self.empty = not run

    def ptms(self, angles: np.ndarray) -> np.ndarray:
        """(B, 4, 4) from the (B, m) RZ angles."""
        if not self.expanded:
            return run_ptms(self.run, angles)
        B = len(angles)
        weights = np.ones((B, 1))
        if self.indices:
            theta = angles[:, self.indices]
            trig = np.stack([np.ones_like(theta), np.cos(theta), np.sin(theta)], axis=-1)  # (B, k, 3)
            for j in reversed(range(len(self.indices))):  # as in the terms: the last angle's varies fastest
                weights = (trig[:, j, :, None] * weights[:, None, :]).reshape(B, -1)
        return (weights @ self.terms).reshape(B, 4, 4)


@dataclass
class Group:
    """One measurement setting: the qubits measured, each one's basis change as a run, and
    the Paulis read from its counts."""

    measured: list[int]
    basis: dict[int, Run]
    paulis: list[str]  # labels, qiskit order (qubit 0 rightmost)
    signs: np.ndarray | None = None  # (2^m, len(paulis)): each Pauli's value on each outcome, once computed


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


def _readout_functional(group: Group, q: int, channels: Channels) -> np.ndarray:
    """(2, 4): the probabilities of recording 0 and 1 on qubit q from its Pauli coefficients,
    through the group's noisy basis change and the readout confusion (the tail run excluded)."""
    change = run_ptms(group.basis[q], np.zeros((1, 0)))[0]
    return channels.readout.get(q, np.eye(2)) @ Z_OUTCOMES @ change  # type: ignore[no-any-return]


@dataclass
class _Node:
    step: _TwoQubit
    runs: list[tuple[int, Form]]  # the one-qubit runs just before it on its qubits
    index: int  # its place in the circuit


@dataclass
class Plan:
    """How one pass over the circuit serves some measurement groups.

    Only the backward light cone of the measured qubits takes part: a two-qubit step that no
    later step connects to a measured qubit is dropped, and so is every qubit it alone touched
    (tracing a qubit out keeps its I coefficient, which trace-preserving channels leave alone).
    A qubit joins the state, as the product with its leading run, just before its first two-qubit
    step, and leaves it just after its last one: traced out, or measured (its trailing run, basis
    change and readout as a (2, 4) functional, which turns its axis of 4 Pauli coefficients into
    one of 2 outcome probabilities) where every group reads it alike; a qubit the groups read
    differently stays to the end. The steps run in a greedy order that keeps the state small
    (any order that keeps each qubit's own order is the same circuit). All of this is exact: the
    outcome distribution of each group is the one of the full density matrix.
    """

    joins: list[int]  # qubits that join before any step (product factors, or every qubit)
    ops: list[tuple[list[int], _Node, list[int]]]  # (qubits joining, node, qubits leaving after)
    leave: dict[int, np.ndarray | None]  # qubit -> its (2, 4) functional less its tail, None to trace
    groups: list[Group]
    functionals: dict[tuple[int, int], np.ndarray]  # (group, qubit) -> (2, 4), for qubits kept to the end
    peak: int  # the largest state, coefficients per set
    cost: int  # coefficients passed over, summed over the steps: what the greedy order minimises


def plan(program: Compiled, groups: list[Group], channels: Channels, keep_all: bool = False) -> Plan:
    """A :class:`Plan` for ``groups`` (measured together), or with ``keep_all`` one that keeps every
    qubit and its full state to the end (for :func:`final_state`)."""
    n = program.num_qubits
    measured = set(range(n)) if keep_all else {q for g in groups for q in g.measured}
    cone = set(measured)
    kept: list[tuple[int, Form] | _TwoQubit] = []
    for step in reversed(program.steps):
        if isinstance(step, _TwoQubit):
            if step.a in cone or step.b in cone:
                cone |= {step.a, step.b}
                kept.append(step)
        elif step[0] in cone:
            kept.append(step)
    kept.reverse()
    leave: dict[int, np.ndarray | None] = {}
    functionals: dict[tuple[int, int], np.ndarray] = {}
    for q in sorted(cone):
        readers = [(k, _readout_functional(g, q, channels)) for k, g in enumerate(groups) if q in g.measured]
        if keep_all:
            continue
        if not readers:
            leave[q] = None
        elif all(np.array_equal(f, readers[0][1]) for _, f in readers):
            leave[q] = readers[0][1]
        else:
            functionals.update(((k, q), f) for k, f in readers)
    nodes: list[_Node] = []
    pending: dict[int, list[tuple[int, Form]]] = {}
    for step in kept:
        if isinstance(step, _TwoQubit):
            runs = [(q, pending.pop(q)[0][1]) for q in (step.a, step.b) if q in pending]
            nodes.append(_Node(step, runs, len(nodes)))
        else:
            pending.setdefault(step[0], []).append(step)
    queues: dict[int, list[int]] = {q: [] for q in cone}
    for node in nodes:
        queues[node.step.a].append(node.index)
        queues[node.step.b].append(node.index)
    heads = dict.fromkeys(cone, 0)
    dims: dict[int, int] = {}
    cost = 0

    def shrink(q: int) -> int:
        return 1 if q not in leave else (4 if leave[q] is None else 2)

    joins = [q for q in sorted(cone) if not queues[q]]
    for q in joins:
        dims[q] = 4 if q not in leave else (1 if leave[q] is None else 2)
    size = math.prod(dims.values())
    peak, ops = 4 * size, []
    ready = {i for i, node in enumerate(nodes) if all(queues[q][0] == i for q in (node.step.a, node.step.b))}
    while ready:
        best: tuple[int, int, int] | None = None
        for i in ready:
            a, b = nodes[i].step.a, nodes[i].step.b
            during = size * 4 ** sum(q not in dims for q in (a, b))
            after = during // math.prod(shrink(q) for q in (a, b) if heads[q] == len(queues[q]) - 1)
            if best is None or (during, after, i) < best:
                best = (during, after, i)
        assert best is not None
        during, size, i = best
        node = nodes[i]
        qubits = (node.step.a, node.step.b)
        joining = [q for q in qubits if q not in dims]
        leaving = [q for q in qubits if heads[q] == len(queues[q]) - 1 and q in leave]
        ops.append((joining, node, leaving))
        cost += during * (3 + len(node.runs)) + (during if joining else 0)
        peak = max(peak, during)
        for q in joining:
            dims[q] = 4
        for q in leaving:
            dims[q] = 1 if leave[q] is None else 2
        ready.discard(i)
        for q in qubits:
            heads[q] += 1
        for q in qubits:
            if heads[q] < len(queues[q]):
                j = queues[q][heads[q]]
                other = nodes[j].step.a if nodes[j].step.b == q else nodes[j].step.b
                if queues[other][heads[other]] == j:
                    ready.add(j)
    return Plan(joins, ops, leave, groups, functionals, peak, cost)


def _sizes(dims: list[int], axis: int) -> tuple[int, int, int]:
    return math.prod(dims[:axis]), dims[axis], math.prod(dims[axis + 1 :])


class _State:
    """Pauli coefficients (B, *dims) of the qubits on ``axes`` (the front one first) in one of
    two preallocated buffers; each operation writes into the other one."""

    def __init__(self, B: int, capacity: int) -> None:
        self.B = B
        self.pool = [np.empty(B * capacity), np.empty(B * capacity)]
        self.data = self.pool[0][:B]
        self.data[:] = 1.0
        self.current = 0  # the buffer that holds data
        self.axes: list[int] = []
        self.dims: list[int] = []

    def _spare(self, *shape: int) -> np.ndarray:
        """An array to write the next state into: the other buffer."""
        self.current = 1 - self.current
        return self.pool[self.current][: math.prod(shape)].reshape(shape)

    def join(self, q: int, vector: np.ndarray) -> None:
        """Add qubit q in front, as the product with its (B, d) coefficients."""
        size = self.data.size // self.B
        out = self._spare(self.B, vector.shape[1], size)
        np.multiply(vector[:, :, None], self.data.reshape(self.B, 1, size), out=out)
        self.data, self.axes, self.dims = out, [q, *self.axes], [vector.shape[1], *self.dims]

    def apply(self, q: int, matrices: np.ndarray) -> None:
        """A (B, d', d) matrix per set on qubit q's axis; d' = 2 for a measurement."""
        B, i = self.B, self.axes.index(q)
        L, d, R = _sizes(self.dims, i)
        d_out = matrices.shape[1]
        if R >= 16:
            out = self._spare(B, L, d_out, R)
            np.matmul(matrices[:, None], self.data.reshape(B, L, d, R), out=out)
        else:  # a short inner run: one matmul per set from the right against I ⊗ Mᵀ ⊗ I, 16 wide at least
            left, j = 1, i
            while left * d * R < 16 and j > 0:
                j -= 1
                left *= self.dims[j]
            kron = np.einsum("uv,bij,rs->bujrvis", np.eye(left), matrices, np.eye(R))
            kron = kron.reshape(B, left * d * R, left * d_out * R)
            out = self._spare(B, L // left, left * d_out * R)
            np.matmul(self.data.reshape(B, L // left, left * d * R), kron, out=out)
        self.data, self.dims = out, self.dims[:i] + [d_out] + self.dims[i + 1 :]

    def trace(self, q: int) -> None:
        """Trace qubit q out: keep its I coefficient."""
        B, i = self.B, self.axes.index(q)
        L, d, R = _sizes(self.dims, i)
        out = self._spare(B, L, R)
        np.copyto(out, self.data.reshape(B, L, d, R)[:, :, 0, :])
        self.data, self.axes, self.dims = out, self.axes[:i] + self.axes[i + 1 :], self.dims[:i] + self.dims[i + 1 :]

    def two(self, step: _TwoQubit) -> None:
        """A sparse 16×16 PTM on two qubits' axes, one strided slice per nonzero. On short inner
        runs (the last axes) it is slow: those qubits move to the front first, in one copy."""
        B = self.B
        first, second = self.axes.index(step.a), self.axes.index(step.b)
        if min(_sizes(self.dims, first)[2], _sizes(self.dims, second)[2]) < 16 and len(self.dims) > 3:
            order = [first, second] + [k for k in range(len(self.dims)) if k not in (first, second)]
            dims = [self.dims[k] for k in order]
            out = self._spare(B, *dims)
            np.copyto(out, self.data.reshape(B, *self.dims).transpose(0, *(1 + k for k in order)))
            self.data, self.axes, self.dims = out, [self.axes[k] for k in order], dims
            first, second = 0, 1
        a, b = sorted((first, second))
        shape = (B, math.prod(self.dims[:a]), 4, math.prod(self.dims[a + 1 : b]), 4, math.prod(self.dims[b + 1 :]))
        view = self.data.reshape(shape)
        target = self._spare(*shape)
        written = set()
        for i, j, k, m, coef in step.terms:
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
        self.data = target


def contract(program: Compiled, plan: Plan, values: np.ndarray) -> tuple[_State, np.ndarray]:
    """Run a plan for (B, P) values: the state at its end (outcome axes of the qubits that left
    measured, coefficient axes of those kept) and the (B, m) RZ angles."""
    angles = values @ program.angle_weights + program.angle_offsets
    state = _State(len(values), plan.peak)
    zero = np.array([1.0, 0.0, 0.0, 1.0])  # |0><0| = (I + Z) / 2

    def join(q: int) -> None:
        state.join(q, program.lead[q].ptms(angles) @ zero)

    def leave(q: int) -> None:
        functional = plan.leave[q]
        if functional is None:
            state.trace(q)
        else:
            state.apply(q, functional @ program.tail[q].ptms(angles))

    for q in plan.joins:
        join(q)
        if q in plan.leave:
            leave(q)
    for joining, node, leaving in plan.ops:
        for q in joining:
            join(q)
        for q, run in node.runs:
            state.apply(q, run.ptms(angles))
        state.two(node.step)
        for q in leaving:
            leave(q)
    return state, angles


def distribution(program: Compiled, plan: Plan, state: _State, angles: np.ndarray, k: int) -> np.ndarray:
    """(B, 2^m): group k's outcome probabilities from the end of its plan, bit of its first
    measured qubit most significant."""
    group, B = plan.groups[k], state.B
    x = _State(B, 0)
    x.data, x.axes, x.dims = state.data, list(state.axes), list(state.dims)
    x._spare = lambda *shape: np.empty(shape)  # type: ignore[method-assign]
    for q in list(x.axes):
        if x.dims[x.axes.index(q)] == 4:
            if q in group.measured:
                x.apply(q, plan.functionals[k, q] @ program.tail[q].ptms(angles))
            else:
                x.trace(q)
    data = x.data.reshape(B, *x.dims)
    unread = tuple(1 + i for i, q in enumerate(x.axes) if q not in group.measured)
    data = data.sum(axis=unread) if unread else data
    axes = [q for q in x.axes if q in group.measured]
    data = data.transpose(0, *(1 + axes.index(q) for q in group.measured))
    return np.ascontiguousarray(data).reshape(B, -1)


def plans(program: Compiled, groups: list[Group], channels: Channels) -> list[Plan]:
    """One plan for all groups, or one per group where that passes over fewer coefficients (each
    group's own light cone, and each qubit leaves measured, against one pass)."""
    shared = plan(program, groups, channels)
    if len(groups) == 1:
        return [shared]
    alone = [plan(program, [g], channels) for g in groups]
    return alone if sum(p.cost for p in alone) < shared.cost else [shared]


def sample(group: Group, probabilities: np.ndarray, shots: int, rng: np.random.Generator) -> np.ndarray:
    """(B, len(group.paulis)) expectation values from ``shots`` outcomes drawn per set."""
    probabilities = np.clip(probabilities, 0.0, None)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    counts = rng.multinomial(shots, probabilities)
    if group.signs is None:
        m = len(group.measured)
        bits = (np.arange(2**m)[:, None] >> np.arange(m - 1, -1, -1)[None, :]) & 1  # outcome → bit of measured[k]
        masks = [[label[::-1][q] != "I" for q in group.measured] for label in group.paulis]
        parity = bits @ np.array(masks, dtype=int).reshape(len(masks), m).T % 2
        group.signs = 1.0 - 2 * parity
    return (counts @ group.signs) / shots  # type: ignore[no-any-return]


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
    wanted = [tuple(sorted({label for obs in observables for label in obs}))] * B
    if obs_index is not None:
        wanted = [tuple(sorted(observables[k])) for k in obs_index]
    expvals: list[dict[str, float]] = [{} for _ in range(B)]
    sets: dict[tuple[str, ...], list[int]] = {}
    for r, labels in enumerate(wanted):
        sets.setdefault(labels, []).append(r)
    for labels, members in sets.items():
        found = program.plans.get(labels)
        if found is None:
            found = program.plans[labels] = plans(program, groups(labels), channels)
        for p in found:
            chunk = max(1, CHUNK_BYTES // (8 * p.peak))
            for start in range(0, len(members), chunk):
                rows = members[start : start + chunk]
                state, angles = contract(program, p, values[rows])
                for k, group in enumerate(p.groups):
                    got = sample(group, distribution(program, p, state, angles, k), shots, rng)
                    for r, row in zip(rows, got):
                        expvals[r].update(zip(group.paulis, row))
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
    """(B, 4, …, 4): the Pauli coefficients at the end of the circuit, trailing runs included,
    qubit q on axis 1 + q."""
    state, angles = contract(program, plan(program, [], Channels(), keep_all=True), values)
    for q, run in enumerate(program.tail):
        if not run.empty:
            state.apply(q, run.ptms(angles))
    data = state.data.reshape(len(values), *state.dims)
    return np.ascontiguousarray(data.transpose(0, *(1 + state.axes.index(q) for q in range(program.num_qubits))))


def density_matrices(coefficients: np.ndarray) -> np.ndarray:
    """(B, 2^n, 2^n) density matrices, qiskit's qubit order, from (B, 4, …, 4) Pauli coefficients."""
    B, n = coefficients.shape[0], coefficients.ndim - 1
    paulis = np.array(PAULIS)
    operands: list[Any] = [coefficients, [0, *range(1, n + 1)]]
    for q in range(n):
        operands += [paulis, [1 + q, 1 + n + q, 1 + 2 * n + q]]
    rows, cols = [1 + n + q for q in reversed(range(n))], [1 + 2 * n + q for q in reversed(range(n))]
    return np.einsum(*operands, [0, *rows, *cols], optimize="greedy").reshape(B, 2**n, 2**n) / 2**n

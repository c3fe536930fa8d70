"""Torch: qfleet's own batched statevector engine, for a GPU.

Every row of a block runs at once. The state is a (rows, 2^n) complex128 tensor on the engine's
device. A parameterized gate's matrices are built on the device for all rows (and all one-angle
gates of a size) in one einsum; a run of one-qubit gates on a qubit is multiplied into one
matrix first, then applied elementwise to the two halves of the state along that qubit; CX and
CZ act on the control's half only; other gates are one einsum each. Expectation values group
the observables' Pauli terms by their X part: per group, one gather of the state, then one
product with the group's (2^n, terms) phase matrix, or, where that would be large, a sum halved
one qubit at a time per term. Gradients are torch's autograd through the same run. Exact
estimates only; the runner picks this engine where a GPU is present (``QFLEET_GPU``), and the
same code runs on the CPU in the tests.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from qiskit.circuit import Parameter, ParameterExpression
from qiskit.quantum_info import SparsePauliOp

from qfleet_server.gradients import Angle, NotDifferentiable, affine_angle

from . import Block, EngineUnsupported, Program

_SKIP = {"barrier", "id", "delay", "global_phase"}  # a global phase changes no expectation value
# A one-angle gate's matrix as A + B cos(t/2) + C sin(t/2) + D cos t + E sin t: every rotation,
# phase and controlled-rotation gate of qiskit's library has this form. Fitted from 5 angles,
# checked at 2 more; a gate that fails the check is left to the other engines.
_FIT_ANGLES = np.array([0.0, np.pi / 2, np.pi, 3 * np.pi / 2, 2 * np.pi / 3])
_CHECK_ANGLES = (0.3141, -2.2719)
# Phase matrices are kept with a compiled program (on the GPU, for each of the runner's cached
# programs) up to this many entries, 16 MiB; past it, each term's sum is halved qubit by qubit.
_MAX_PHASE_ENTRIES = 1 << 20
_LETTERS = string.ascii_letters[:-1]  # einsum subscripts: one per state axis, plus the gate's new ones ("Z": rows)


def _basis(t: np.ndarray) -> np.ndarray:
    """(len(t), 5): the functions a one-angle gate's matrix is a combination of."""
    return np.stack([np.ones_like(t), np.cos(t / 2), np.sin(t / 2), np.cos(t), np.sin(t)], axis=-1)


def _fit(op: Any) -> np.ndarray:
    """(5, d, d) coefficients of a one-angle gate's matrix over :func:`_basis`."""

    def matrix(theta: float) -> np.ndarray:
        gate = op.to_mutable()
        gate.params = [theta]
        return np.asarray(gate.to_matrix(), dtype=np.complex128)

    try:
        samples = np.stack([matrix(float(t)) for t in _FIT_ANGLES])
    except Exception as exc:
        raise EngineUnsupported(f"no matrix for '{op.name}'") from exc
    d = samples.shape[-1]
    coeffs = np.linalg.solve(_basis(_FIT_ANGLES), samples.reshape(len(_FIT_ANGLES), -1))
    for t in _CHECK_ANGLES:
        if not np.allclose(_basis(np.array([t]))[0] @ coeffs, matrix(t).reshape(-1), atol=1e-12):
            raise EngineUnsupported(f"gate '{op.name}' is not a rotation or phase in its angle")
    return coeffs.reshape(5, d, d)


@dataclass
class _Gate:
    qubits: list[int]  # qiskit's order: the first is the matrix's least significant bit
    fixed: torch.Tensor | None = None  # (d, d) when no angle depends on a parameter
    angles: list[Angle] | None = None  # u/u3: (theta, phi, lambda); else one angle
    coeffs: np.ndarray | None = None  # (5, d, d): a one-angle gate's fit
    slot: int = -1  # a one-angle gate's place among the matrices built per chunk (see _Circuit)
    kind: str = ""  # "cx" or "cz": applied in place on the control's half of the state, no matrix


def compile_circuit(program: Program, device: torch.device) -> list[_Gate]:
    circuit = program.circuit
    columns: dict[Parameter, int] = {p: j for j, p in enumerate(circuit.parameters)}
    memo: dict[Any, Angle] = {}
    gates: list[_Gate] = []
    for inst in circuit.data:
        op = inst.operation
        if op.name in _SKIP:
            continue
        qubits = [circuit.find_bit(q).index for q in inst.qubits]
        if not any(isinstance(v, ParameterExpression) and v.parameters for v in op.params):
            try:
                fixed = torch.tensor(np.asarray(op.to_matrix(), dtype=np.complex128), device=device)
            except Exception as exc:
                raise EngineUnsupported(f"no matrix for '{op.name}'") from exc
            kind = op.name if op.name in ("cx", "cz") and getattr(op, "ctrl_state", 1) == 1 else ""
            gates.append(_Gate(qubits, fixed=fixed, kind=kind))
            continue
        try:
            angles = [affine_angle(v, columns, memo) for v in op.params]
        except NotDifferentiable as exc:
            raise EngineUnsupported(str(exc)) from None
        if op.name in ("u", "u3") and len(qubits) == 1:
            gates.append(_Gate(qubits, angles=angles))
        elif len(angles) == 1:
            gates.append(_Gate(qubits, angles=angles, coeffs=_fit(op)))
        else:
            raise EngineUnsupported(f"no batched form for parameterized gate '{op.name}'")
    return gates


@dataclass
class _Circuit:
    """A compiled circuit on one device: its one-angle gates' matrices are built for all rows of a
    chunk at once, one einsum per matrix size, instead of a few kernels per gate."""

    gates: list[_Gate]
    fits: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]  # d -> coeffs, cols, scales, offsets

    @classmethod
    def of(cls, program: Program, device: torch.device) -> _Circuit:
        gates = compile_circuit(program, device)
        by_size: dict[int, list[_Gate]] = {}
        for gate in gates:
            if gate.coeffs is not None:
                gate.slot = len(by_size.setdefault(gate.coeffs.shape[-1], []))
                by_size[gate.coeffs.shape[-1]].append(gate)
        fits = {}
        for d, group in by_size.items():
            angles = [g.angles[0] for g in group if g.angles]  # a fitted gate has its one angle
            fits[d] = (
                torch.as_tensor(np.stack([g.coeffs for g in group if g.coeffs is not None]), device=device),
                torch.as_tensor([a[0] for a in angles], device=device, dtype=torch.int64),
                torch.as_tensor([a[1] for a in angles], device=device, dtype=torch.float64),
                torch.as_tensor([a[2] for a in angles], device=device, dtype=torch.float64),
            )
        return cls(gates, fits)

    def matrices(self, values: torch.Tensor) -> dict[int, torch.Tensor]:
        """d -> (gates, rows, d, d): every one-angle gate's matrix for every row."""
        out = {}
        for d, (coeffs, cols, scales, offsets) in self.fits.items():
            t = values[:, cols] * scales + offsets  # (rows, gates); a one-angle gate's angle has a parameter
            basis = torch.stack(
                [torch.ones_like(t), torch.cos(t / 2), torch.sin(t / 2), torch.cos(t), torch.sin(t)], -1
            )
            out[d] = torch.einsum("rgf,gfij->grij", basis.to(torch.complex128), coeffs)
        return out


@dataclass
class _Group:
    """Pauli terms with one X part: <P> = sum_i conj(psi_i) psi_(i ^ x) (-1)^|i & z| (-i)^power."""

    x: int  # the X part's bit mask; 0: the terms are I/Z, and the sum is over probabilities
    phases: torch.Tensor | None  # (2^n, terms) of the sum's factors; None past _MAX_PHASE_ENTRIES
    terms: list[tuple[int, int, int]]  # (term id, z mask, power)


@dataclass
class _Terms:
    """The observables' Pauli terms grouped by X part, on one device."""

    groups: list[_Group]
    coeffs: torch.Tensor  # (K, terms) real


def _terms(n: int, observables: list[SparsePauliOp], device: torch.device) -> _Terms:
    by_x: dict[int, list[tuple[int, int, int]]] = {}  # x mask -> [(term id, z mask, (-i) power)]
    coeffs: list[list[tuple[int, float]]] = []
    count = 0
    for obs in observables:
        row = []
        for pauli, coeff in zip(obs.paulis, obs.coeffs):
            x = int(sum(1 << q for q in range(n) if pauli.x[q]))
            z = int(sum(1 << q for q in range(n) if pauli.z[q]))
            # pauli = (-i)^phase (x) labels, and Y = -i Z X, so pauli = (-i)^(phase + #Y) Z^z X^x
            power = (int(pauli.phase) + bin(x & z).count("1")) % 4
            by_x.setdefault(x, []).append((count, z, power))
            row.append((count, float(np.real(coeff))))
            count += 1
        coeffs.append(row)
    with_matrices = (2**n) * count <= _MAX_PHASE_ENTRIES
    index = torch.arange(2**n, device=device, dtype=torch.int64) if with_matrices else None
    groups = []
    for x, terms in by_x.items():
        phases = None
        if with_matrices:
            assert index is not None
            phases = torch.empty((2**n, len(terms)), dtype=torch.complex128, device=device)
            for j, (_, z, power) in enumerate(terms):
                parity = torch.zeros_like(index)
                for q in range(n):
                    if z >> q & 1:
                        parity ^= (index >> q) & 1
                phases[:, j] = (1.0 - 2.0 * parity.to(torch.float64)) * (-1j) ** power
            if x == 0:
                phases = phases.real.contiguous()  # I/Z only: probabilities times real signs
        groups.append(_Group(x, phases, terms))
    matrix = torch.zeros((len(observables), count), dtype=torch.float64, device=device)
    for k, row in enumerate(coeffs):
        for t, c in row:
            matrix[k, t] = c
    return _Terms(groups, matrix)


class TorchEngine:
    """Exact expectation values of a whole block at once, on ``device`` (``cuda`` on a GPU)."""

    def __init__(self, device: str = "cuda", memory_bytes: int = 4 << 30) -> None:
        self.device = torch.device(device)
        self.name = f"torch-{self.device.type}"
        self.memory_bytes = memory_bytes  # the states of one chunk of rows, with room for two copies

    def _prepared(self, program: Program) -> tuple[_Circuit, _Terms]:
        key = f"torch-{self.device}"
        prepared = program.cache.get(key)
        if prepared is None:
            n = program.num_qubits
            if n + 6 > len(_LETTERS):
                raise EngineUnsupported(f"{n} qubits: too many for one einsum")
            prepared = (_Circuit.of(program, self.device), _terms(n, program.observables, self.device))
            program.cache[key] = prepared
        return prepared  # type: ignore[no-any-return]

    def estimate(self, program: Program, block: Block) -> tuple[np.ndarray, np.ndarray]:
        if block.shots:
            raise EngineUnsupported("the torch engine runs exact estimates only")
        circuit, terms = self._prepared(program)
        n, rows = program.num_qubits, len(block.values)
        chunk = max(1, self.memory_bytes // (3 * 16 << n))
        values = torch.as_tensor(np.asarray(block.values, dtype=np.float64), device=self.device)
        with torch.inference_mode():
            parts = [self._run(circuit, terms, n, values[lo : lo + chunk]) for lo in range(0, rows, chunk)]
            evs = torch.cat(parts, dim=1).cpu().numpy() if parts else np.zeros((len(program.observables), 0))
        if block.obs_index is not None:
            evs = evs[np.asarray(block.obs_index, dtype=int), np.arange(rows)]
        return evs, np.zeros_like(evs)

    def gradient(self, program: Program, block: Block) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """evs, stds and d(evs)/d(parameters), exact: torch's autograd through the same run, one
        backward pass per observable (one in all for a zip block: its rows are independent).
        Autograd keeps every intermediate state, so rows go in smaller chunks than a forward run's."""
        if block.shots:
            raise EngineUnsupported("the torch engine runs exact estimates only")
        circuit, terms = self._prepared(program)
        n, rows, P = program.num_qubits, len(block.values), program.circuit.num_parameters
        K = len(program.observables)
        chunk = max(1, self.memory_bytes // ((len(circuit.gates) + 4) * 16 << n))
        values = torch.as_tensor(np.asarray(block.values, dtype=np.float64), device=self.device)
        which = None if block.obs_index is None else torch.as_tensor(np.asarray(block.obs_index), device=self.device)
        evs_parts, grad_parts = [], []
        for lo in range(0, rows, chunk):
            x = values[lo : lo + chunk].detach().requires_grad_(True)
            with torch.enable_grad():
                evs = self._run(circuit, terms, n, x)  # (K, rows of the chunk)
                if which is not None:
                    evs = evs[which[lo : lo + chunk], torch.arange(x.shape[0], device=self.device)]
                    outputs = [evs.sum()]
                else:
                    outputs = [evs[k].sum() for k in range(K)]
                grads = []
                for k, output in enumerate(outputs):
                    (g,) = torch.autograd.grad(output, x, retain_graph=k < len(outputs) - 1, allow_unused=True)
                    grads.append(torch.zeros_like(x) if g is None else g)
            evs_parts.append(evs.detach())
            grad_parts.append(torch.stack(grads) if which is None else grads[0])  # (K, rows, P) or (rows, P)
        if not evs_parts:
            shape = (K, 0) if which is None else (0,)
            return np.zeros(shape), np.zeros(shape), np.zeros(shape + (P,))
        out = torch.cat(evs_parts, dim=-1).cpu().numpy()
        grad = torch.cat(grad_parts, dim=-2).cpu().numpy()
        return out, np.zeros_like(out), grad

    def _run(self, circuit: _Circuit, terms: _Terms, n: int, values: torch.Tensor) -> torch.Tensor:
        """(K, rows) evs of one chunk of rows."""
        rows = values.shape[0]
        state = torch.zeros((rows, 2**n), dtype=torch.complex128, device=self.device)
        state[:, 0] = 1.0
        built = circuit.matrices(values)
        pending: dict[int, torch.Tensor] = {}  # qubit -> product of its one-qubit gates not yet applied
        for gate in circuit.gates:
            matrix = self._matrix(gate, values, built)
            if len(gate.qubits) == 1:
                (q,) = gate.qubits
                pending[q] = matrix if q not in pending else matrix @ pending[q]
                continue
            for q in gate.qubits:
                if q in pending:
                    state = _apply_one(state, n, q, pending.pop(q))
            if gate.kind:
                state = _apply_controlled(state, n, gate.kind, *gate.qubits)
            else:
                state = _apply(state, n, gate.qubits, matrix)
        for q, matrix in pending.items():
            state = _apply_one(state, n, q, matrix)
        return _expectations(state, terms, n)

    def _matrix(self, gate: _Gate, values: torch.Tensor, built: dict[int, torch.Tensor]) -> torch.Tensor:
        """(d, d), or (rows, d, d) where an angle depends on a parameter."""
        if gate.fixed is not None:
            return gate.fixed
        if gate.coeffs is not None:
            return built[gate.coeffs.shape[-1]][gate.slot]
        assert gate.angles is not None  # u(theta, phi, lambda)
        theta, phi, lam = (
            values[:, col] * scale + offset if col >= 0 else torch.full_like(values[:, 0], offset)
            for col, scale, offset in gate.angles
        )
        c, s = torch.cos(theta / 2), torch.sin(theta / 2)
        m = torch.stack(
            [c + 0j, -torch.exp(1j * lam) * s, torch.exp(1j * phi) * s, torch.exp(1j * (phi + lam)) * c], dim=-1
        )
        return m.reshape(-1, 2, 2)


def _apply_one(state: torch.Tensor, n: int, q: int, matrix: torch.Tensor) -> torch.Tensor:
    """A (2, 2) or (rows, 2, 2) matrix on qubit q of a (rows, 2^n) state, elementwise on the two
    halves along qubit q. On an H200 this beat one batched product of the pairs (which needs two
    transposing copies) from 12 qubits up: 477 against 742 ms at n=20, B=256 (bench/results/gpu.json)."""
    rows = state.shape[0]
    view = state.view(rows, 2 ** (n - 1 - q), 2, 2**q)
    low, high = view[:, :, 0, :], view[:, :, 1, :]
    m = matrix.reshape(-1, 4, 1, 1)
    out = torch.stack((m[:, 0] * low + m[:, 1] * high, m[:, 2] * low + m[:, 3] * high), dim=2)
    return out.view(rows, 2**n)


def _apply_controlled(state: torch.Tensor, n: int, kind: str, control: int, target: int) -> torch.Tensor:
    """CX or CZ: only the half of the state where the control is 1 changes. In place, unless
    autograd records the run (a gradient), which needs every earlier state kept as it was."""
    rows = state.shape[0]
    view = state.view((rows,) + (2,) * n)
    half = view.select(n - control, 1)  # the target's axis moves down one if it came after the control
    axis = n - target if target > control else n - target - 1
    if not torch.is_grad_enabled():
        if kind == "cx":
            half.copy_(half.flip(axis))
        else:
            half.select(axis, 1).neg_()
        return state
    if kind == "cx":
        changed = half.flip(axis)
    else:
        changed = torch.stack((half.select(axis, 0), -half.select(axis, 1)), dim=axis)
    return torch.stack((view.select(n - control, 0), changed), dim=n - control).reshape(rows, 2**n)


def _apply(state: torch.Tensor, n: int, qubits: list[int], matrix: torch.Tensor) -> torch.Tensor:
    """``matrix`` on ``qubits`` of a (rows, 2^n) state; qubit q is axis n - q of its (rows, 2, ..., 2) view."""
    k = len(qubits)
    axes = _LETTERS[:n]  # axis a + 1 of the state holds qubit n - 1 - a
    fresh = _LETTERS[n : n + k]
    # the matrix's bits, most significant first, belong to qubits[k-1], ..., qubits[0]
    old = "".join(axes[n - 1 - q] for q in reversed(qubits))
    out = axes
    for new, q in zip(fresh, reversed(qubits)):
        out = out.replace(axes[n - 1 - q], new)
    batched = matrix.dim() == 3
    gate = matrix.reshape(((matrix.shape[0],) if batched else ()) + (2,) * (2 * k))
    lhs = ("Z" if batched else "") + fresh + old
    tensor = state.view((state.shape[0],) + (2,) * n)
    return torch.einsum(f"{lhs},Z{axes}->Z{out}", gate, tensor).reshape(state.shape[0], 2**n)


def _expectations(state: torch.Tensor, terms: _Terms, n: int) -> torch.Tensor:
    """(K, rows) from a (rows, 2^n) state."""
    values = torch.zeros((terms.coeffs.shape[1], state.shape[0]), dtype=torch.float64, device=state.device)
    for group in terms.groups:
        if group.x == 0:
            products = state.real**2 + state.imag**2
        else:  # amplitude i times that of i ^ x
            flipped = torch.arange(state.shape[1], device=state.device) ^ group.x
            products = state.conj() * state[:, flipped]
        ids = [t for t, _, _ in group.terms]
        if group.phases is not None:
            values[ids] = (products @ group.phases).real.T
            continue
        for t, z, power in group.terms:  # no matrix: halve the sum one qubit at a time
            total = products
            for q in range(n):
                pairs = total.reshape(total.shape[0], -1, 2)
                total = pairs[..., 0] - pairs[..., 1] if z >> q & 1 else pairs[..., 0] + pairs[..., 1]
            values[t] = (total.reshape(-1) * (-1j) ** power).real
    return terms.coeffs @ values

"""What gradients need to know of a circuit, shared by the API (validation at submit) and the
workers (expansion): each parameterized angle as an affine function of one parameter, and
the circuit rewritten so that every such angle is a parameter of its own.

The parameter-shift rule used is the exact two-term rule,
``d<O>/dφ = (<O>(φ + π/2) - <O>(φ - π/2)) / 2``, valid for gates ``exp(-i φ G / 2)`` whose
generator ``G`` has eigenvalues ±1: the rotations below. The chain rule then gives
``d<O>/dθ_c = Σ_j scale_j · d<O>/dφ_j`` over the angles ``φ_j = scale_j θ_c + offset_j``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter, ParameterExpression, ParameterVector

SHIFT_RULE_GATES = frozenset({"rx", "ry", "rz", "p", "u1", "rxx", "ryy", "rzz", "rzx", "u", "u3"})

Angle = tuple[int, float, float]  # column in circuit.parameters (-1: constant), scale, offset


class NotDifferentiable(ValueError):
    """A circuit the asked-for gradient method cannot handle; the message says why."""


def affine_angle(value: Any, columns: dict[Parameter, int], memo: dict[Any, Angle] | None = None) -> Angle:
    """An angle as (column, scale, offset); raises NotDifferentiable if it is not affine in one parameter.
    ``memo`` keeps the answers for expressions seen before (a template repeats its angles)."""
    if not isinstance(value, ParameterExpression) or not value.parameters:
        return (-1, 0.0, float(value))
    if memo is not None:
        if value not in memo:
            memo[value] = affine_angle(value, columns)
        return memo[value]
    if len(value.parameters) != 1:
        raise NotDifferentiable(f"angle {value} depends on several parameters")
    (param,) = value.parameters
    offset = float(value.bind({param: 0.0}))
    scale = float(value.bind({param: 1.0})) - offset
    if abs(float(value.bind({param: 2.0})) - (offset + 2 * scale)) > 1e-12:
        raise NotDifferentiable(f"angle {value} is not affine in {param}")
    return (columns[param], scale, offset)


@dataclass
class ShiftPlan:
    """The circuit with each parameterized angle replaced by a fresh parameter φ_j."""

    circuit: QuantumCircuit
    angles: list[Angle]  # one per φ_j
    num_parameters: int

    def angle_values(self, values: np.ndarray) -> np.ndarray:
        """φ for each row of circuit parameter values: (rows, P) -> (rows, G)."""
        cols = np.array([a[0] for a in self.angles], dtype=int)
        scale = np.array([a[1] for a in self.angles])
        offset = np.array([a[2] for a in self.angles])
        return values[:, cols] * scale + offset if len(cols) else np.zeros((len(values), 0))

    def chain(self) -> np.ndarray:
        """(G, P) matrix taking d/dφ to d/dθ."""
        a = np.zeros((len(self.angles), self.num_parameters))
        for j, (col, scale, _) in enumerate(self.angles):
            a[j, col] += scale
        return a


def _rotation_angles(inst: Any, columns: dict[Parameter, int], memo: dict[Any, Angle]) -> list[Angle] | None:
    """The angles of a parameterized rotation (None for an instruction without parameters);
    raises NotDifferentiable for a gate the shift rule does not cover."""
    op = inst.operation
    if not any(isinstance(v, ParameterExpression) and v.parameters for v in op.params):
        return None
    if op.name not in SHIFT_RULE_GATES:
        raise NotDifferentiable(
            f"parameter-shift needs rotation gates ({', '.join(sorted(SHIFT_RULE_GATES))}); "
            f"'{op.name}' has a parameter. Transpile to rotations first, or use gradient='adjoint'"
        )
    return [affine_angle(value, columns, memo) for value in op.params]


def shift_terms(circuit: QuantumCircuit) -> int:
    """G: the parameterized angles the shift rule shifts (2G+1 circuits a row); raises NotDifferentiable."""
    columns = {p: j for j, p in enumerate(circuit.parameters)}
    memo: dict[Any, Angle] = {}
    count = 0
    for inst in circuit.data:
        angles = _rotation_angles(inst, columns, memo)
        count += sum(1 for a in angles or () if a[0] >= 0)
    return count


def shift_plan(circuit: QuantumCircuit) -> ShiftPlan:
    """Rewrite ``circuit`` for the parameter-shift rule; raises NotDifferentiable with the reason."""
    columns = {p: j for j, p in enumerate(circuit.parameters)}
    memo: dict[Any, Angle] = {}
    out = circuit.copy_empty_like()
    angles: list[Angle] = []
    fresh = ParameterVector("φ", sum(len(i.operation.params) for i in circuit.data))
    for inst in circuit.data:
        found = _rotation_angles(inst, columns, memo)
        if found is None:
            out.append(inst)
            continue
        params = []
        for angle in found:
            if angle[0] < 0:
                params.append(angle[2])
                continue
            params.append(fresh[len(angles)])
            angles.append(angle)
        new_op = inst.operation.copy()
        new_op.params = params
        out.append(new_op, inst.qubits, inst.clbits)
    if out.num_parameters != len(angles):  # sorted order must be φ_0, φ_1, ... for the values to line up
        raise NotDifferentiable("internal: shifted circuit parameters do not line up")
    return ShiftPlan(circuit=out, angles=angles, num_parameters=circuit.num_parameters)


def check_adjoint(circuit: QuantumCircuit) -> None:
    """Raises NotDifferentiable unless every angle is affine in one parameter (adjoint's need)."""
    columns = {p: j for j, p in enumerate(circuit.parameters)}
    memo: dict[Any, Angle] = {}
    for inst in circuit.data:
        for value in inst.operation.params:
            if isinstance(value, ParameterExpression):  # a constant (or a unitary's matrix) is fine
                affine_angle(value, columns, memo)


def resolve(method: str, shots: int, shift_error: str | None, adjoint_error: str | None) -> str:
    """The method a PUB's gradient will use, given why each method cannot run (None: it can);
    raises NotDifferentiable with the reason.

    ``auto`` is adjoint differentiation on exact runs (a few statevector passes instead of
    2G+1 circuits), else the parameter-shift rule.
    """
    if method == "auto":
        method = "parameter-shift" if shots else "adjoint"
    if method == "adjoint":
        if shots:
            raise NotDifferentiable(
                "adjoint gradients need exact simulation; drop shots/precision or use 'parameter-shift'"
            )
        if adjoint_error:
            raise NotDifferentiable(adjoint_error)
        return method
    if shift_error:
        raise NotDifferentiable(shift_error)
    return "parameter-shift"

"""The backends a user can name, and what each accepts. Shared by the API (validation,
discovery) and the workers (which queue they serve, which engines run)."""

from __future__ import annotations

from dataclasses import dataclass, field

from qiskit.circuit.library import get_standard_gate_name_mapping

STANDARD_GATES = tuple(sorted(get_standard_gate_name_mapping()))


@dataclass(frozen=True)
class Backend:
    name: str
    description: str
    num_qubits: int
    exact: bool
    supports_shots: bool
    engines: tuple[str, ...]
    max_shots: int = 1_000_000
    native_gates: tuple[str, ...] = STANDARD_GATES
    coupling_map: list[list[int]] | None = None
    options: tuple[str, ...] = ("precision", "shots", "seed")
    gradients: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)


def simulator_backends(max_qubits: int, max_shots: int) -> dict[str, Backend]:
    return {
        "aer": Backend(
            name="aer",
            description="Statevector simulation on CPU. Exact by default; shot-based when "
            "precision or shots is set. Each task runs on the fastest engine for it: Aer "
            "with runtime parameter binding for narrow circuits, Lightning for wide ones.",
            num_qubits=max_qubits,
            exact=True,
            supports_shots=True,
            max_shots=max_shots,
            engines=("aer", "lightning"),
        ),
        "lightning": Backend(
            name="lightning",
            description="Exact statevector simulation with PennyLane Lightning's kernels "
            "(falls back to Aer for gates it lacks).",
            num_qubits=max_qubits,
            exact=True,
            supports_shots=False,
            max_shots=0,
            engines=("lightning", "aer"),
            options=("precision",),
        ),
    }

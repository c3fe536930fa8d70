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
    gradients: tuple[str, ...] = ("parameter-shift", "adjoint", "auto")
    extra: dict[str, str] = field(default_factory=dict)


def simulator_backends(max_qubits: int, max_shots: int) -> dict[str, Backend]:
    return {
        "aer": Backend(
            name="aer",
            description="Statevector simulation on CPU. Exact by default; shot-based when "
            "precision or shots is set. Exact tasks run on Lightning's kernels, the fastest "
            "engine measured here, and on Aer for circuits Lightning cannot compile; "
            "shot-based tasks run on Aer.",
            num_qubits=max_qubits,
            exact=True,
            supports_shots=True,
            max_shots=max_shots,
            engines=("aer", "lightning"),
        ),
        "lightning": Backend(
            name="lightning",
            description="Exact statevector simulation only (no shots), on Lightning's kernels "
            "with Aer for circuits Lightning cannot compile.",
            num_qubits=max_qubits,
            exact=True,
            supports_shots=False,
            max_shots=0,
            engines=("lightning", "aer"),
            options=("precision",),
        ),
    }

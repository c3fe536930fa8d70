"""The backends a user can name, and what each accepts. Shared by the API (validation,
discovery) and the workers (which queue they serve, which engines run)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    calibration: dict[str, Any] | None = None
    unavailable: str | None = None  # why it cannot run now (missing credentials, …)


def simulator_backends(max_qubits: int, max_shots: int) -> dict[str, Backend]:
    """Every backend a user can name (simulators, the device model, QPU adapters)."""
    from .devices.wukong72 import NATIVE_GATES, NUM_QUBITS, enabled_pairs, load_calibration, summary

    calibration = load_calibration()
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
        "wukong72": Backend(
            name="wukong72",
            description="A model of Origin Wukong, a 72-qubit superconducting QPU: 12x6 grid coupling map, "
            "CZ and single-qubit rotations, an Aer noise model from a (synthetic) calibration snapshot, "
            "shot-based estimates; matrix-product-state simulation so all 72 qubits run.",
            num_qubits=NUM_QUBITS,
            exact=False,
            supports_shots=True,
            max_shots=min(max_shots, 100_000),
            engines=("aer-density-matrix", "aer-statevector", "aer-mps"),
            native_gates=NATIVE_GATES,
            coupling_map=[list(p) for p in enabled_pairs(calibration)],
            options=("precision", "shots", "seed", "noise"),
            gradients=("parameter-shift", "auto"),
            calibration=summary(calibration),
        ),
    }

"""The backends a user can name, and what each accepts. Shared by the API (validation,
discovery) and the workers (which queue they serve, which engines run)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from qiskit.circuit.library import get_standard_gate_name_mapping

STANDARD_GATES = tuple(sorted(get_standard_gate_name_mapping()))
# Shots a device (model) runs when a job names neither shots nor precision: exact is not on offer there.
DEFAULT_SHOTS = 4096
# Engines that run resets, mid-circuit measurements and classical control (Aer's simulators).
MID_CIRCUIT_BACKENDS = ("aer", "lightning")


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
    kind: Literal["simulator", "device"] = "simulator"
    unavailable: str | None = None  # why it cannot run now (missing credentials, …)

    @property
    def mid_circuit(self) -> bool:
        return self.name in MID_CIRCUIT_BACKENDS

    @property
    def is_device(self) -> bool:
        """A QPU or a model of one: shot-based, one batch at a time, wide circuits as MPS."""
        return self.kind == "device"

    @property
    def task_scale(self) -> float:
        """A device runs one batch at a time: give it tasks this many times bigger."""
        return 20.0 if self.is_device else 1.0


def all_backends(settings: Any) -> dict[str, Backend]:
    """Every backend a user can name: simulators, the device model, real-QPU adapters."""
    max_qubits, max_shots = settings.max_qubits, settings.max_shots
    from .devices.wukong72 import NATIVE_GATES, NUM_QUBITS, enabled_pairs, load_calibration, summary

    calibration = load_calibration()
    return {
        "aer": Backend(
            name="aer",
            description="Statevector simulation on CPU, and on a GPU where a worker has one. Exact by "
            "default; shot-based when precision or shots is set. Exact tasks run on Lightning's kernels, "
            "the fastest CPU engine measured here, and on Aer for circuits Lightning cannot compile; on a "
            "worker with a GPU, wide ones run on qfleet's torch engine there. Shot-based tasks run on Aer.",
            num_qubits=max_qubits,
            exact=True,
            supports_shots=True,
            max_shots=max_shots,
            engines=("aer", "lightning", "torch-cuda"),
        ),
        "lightning": Backend(
            name="lightning",
            description="Exact statevector simulation only (no shots), on Lightning's kernels "
            "with Aer for circuits Lightning cannot compile, and wide ones on qfleet's torch engine "
            "on a worker with a GPU.",
            num_qubits=max_qubits,
            exact=True,
            supports_shots=False,
            max_shots=0,
            engines=("lightning", "aer", "torch-cuda"),
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
            engines=("qfleet-pauli-density-matrix", "aer-density-matrix", "aer-statevector", "aer-mps"),
            native_gates=NATIVE_GATES,
            coupling_map=[list(p) for p in enabled_pairs(calibration)],
            options=("precision", "shots", "seed", "noise"),
            gradients=("parameter-shift", "auto"),
            calibration=summary(calibration),
            kind="device",
        ),
        "origin": Backend(
            name="origin",
            description=f"Origin Quantum QPU '{settings.origin_chip}' through pyqpanda3's QCloud, in batches of at most 200.",
            num_qubits=72,
            exact=False,
            supports_shots=True,
            max_shots=min(max_shots, 100_000),
            engines=("pyqpanda3-qcloud",),
            native_gates=("rx", "ry", "rz", "h", "x", "cz", "cx"),
            options=("precision", "shots", "seed"),
            gradients=("parameter-shift", "auto"),
            unavailable=None if settings.origin_api_key else "no credentials: set QFLEET_ORIGIN_API_KEY",
            kind="device",
        ),
        "ibm": Backend(
            name="ibm",
            description="IBM Quantum QPU through qiskit-ibm-runtime's EstimatorV2 in batch mode.",
            num_qubits=156,
            exact=False,
            supports_shots=True,
            max_shots=min(max_shots, 100_000),
            engines=("qiskit-ibm-runtime",),
            native_gates=("rz", "sx", "x", "cz", "ecr", "measure"),
            options=("precision", "shots", "seed"),
            gradients=("parameter-shift", "auto"),
            unavailable=None if settings.ibm_token else "no credentials: set QFLEET_IBM_TOKEN",
            kind="device",
        ),
    }


def served_backends(settings: Any) -> list[str]:
    """The backends a worker serves by default: every one that is available."""
    return [name for name, b in all_backends(settings).items() if not b.unavailable]

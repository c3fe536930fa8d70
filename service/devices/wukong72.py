"""``wukong72``: a model of Origin Wukong, a 72-qubit superconducting QPU.

Public facts it follows: 72 computational qubits on a 12×6 grid of nearest-neighbour
tunable couplers (12·5 + 11·6 = 126), native CZ with single-qubit rotations, T1 about
9–17 µs, T2 about 1.1–3 µs, single-qubit fidelity 0.992–0.997, CZ fidelity 0.95–0.98,
readout fidelity 0.92–0.95, a few couplers disabled. The calibration snapshot in
``wukong72_calibration.json`` is SYNTHETIC: drawn reproducibly from those ranges by
``python -m qfleet_server.devices.wukong72 --seed 7 > service/devices/wukong72_calibration.json``.
"""

from __future__ import annotations

import argparse
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from qiskit.circuit import Parameter
from qiskit.circuit.library import CZGate, Measure, RZGate, SXGate, XGate
from qiskit.providers import BackendV2, Options, QubitProperties
from qiskit.transpiler import InstructionProperties, Target

from ..backends import DEFAULT_SHOTS

ROWS, COLS = 12, 6
NUM_QUBITS = ROWS * COLS
CALIBRATION_FILE = Path(__file__).with_name("wukong72_calibration.json")
NATIVE_GATES = ("rz", "sx", "x", "cz", "measure")


def qubit_at(row: int, col: int) -> int:
    return row * COLS + col


def grid_edges() -> list[tuple[int, int]]:
    horizontal = [(qubit_at(r, c), qubit_at(r, c + 1)) for r in range(ROWS) for c in range(COLS - 1)]
    vertical = [(qubit_at(r, c), qubit_at(r + 1, c)) for r in range(ROWS - 1) for c in range(COLS)]
    return horizontal + vertical


def generate_calibration(seed: int, disabled: int = 4) -> dict[str, Any]:
    """A synthetic snapshot within the public ranges; the same seed gives the same snapshot."""
    rng = np.random.default_rng(seed)
    qubits = []
    for q in range(NUM_QUBITS):
        t1 = rng.uniform(9.0, 17.0)
        qubits.append(
            {
                "qubit": q,
                "t1_us": round(t1, 3),
                "t2_us": round(min(rng.uniform(1.1, 3.0), 2 * t1), 3),
                "frequency_ghz": round(rng.uniform(4.4, 5.4), 4),
                "sx_error": round(1 - rng.uniform(0.992, 0.997), 5),
                "readout_error": round(1 - rng.uniform(0.92, 0.95), 5),
            }
        )
    edges = grid_edges()
    off = set(rng.choice(len(edges), size=disabled, replace=False).tolist())
    couplers = [
        {"pair": list(e), "cz_error": round(1 - rng.uniform(0.95, 0.98), 5), "enabled": i not in off}
        for i, e in enumerate(edges)
    ]
    return {
        "id": f"wukong72-synthetic-seed{seed}",
        "synthetic": True,
        "note": "Drawn from public ranges for Origin Wukong; not a measurement of the real chip.",
        "durations_ns": {"sx": 30, "x": 30, "cz": 40, "measure": 1500},
        "qubits": qubits,
        "couplers": couplers,
    }


@lru_cache(maxsize=1)
def load_calibration() -> dict[str, Any]:
    return json.loads(CALIBRATION_FILE.read_text())  # type: ignore[no-any-return]


def enabled_pairs(calibration: dict[str, Any]) -> list[tuple[int, int]]:
    return [tuple(c["pair"]) for c in calibration["couplers"] if c["enabled"]]  # type: ignore[misc]


def build_target(calibration: dict[str, Any]) -> Target:
    durations = {k: v * 1e-9 for k, v in calibration["durations_ns"].items()}
    qubits = calibration["qubits"]
    target = Target(
        description=calibration["id"],
        num_qubits=NUM_QUBITS,
        dt=1e-9,
        qubit_properties=[
            QubitProperties(t1=q["t1_us"] * 1e-6, t2=q["t2_us"] * 1e-6, frequency=q["frequency_ghz"] * 1e9)
            for q in qubits
        ],
    )
    target.add_instruction(
        RZGate(Parameter("λ")), {(q["qubit"],): InstructionProperties(duration=0.0, error=0.0) for q in qubits}
    )
    for gate in (SXGate(), XGate()):
        target.add_instruction(
            gate,
            {(q["qubit"],): InstructionProperties(duration=durations[gate.name], error=q["sx_error"]) for q in qubits},
        )
    cz = {}
    for c in calibration["couplers"]:
        if c["enabled"]:
            a, b = c["pair"]
            props = InstructionProperties(duration=durations["cz"], error=c["cz_error"])
            cz[(a, b)] = props
            cz[(b, a)] = props
    target.add_instruction(CZGate(), cz)
    target.add_instruction(
        Measure(),
        {(q["qubit"],): InstructionProperties(duration=durations["measure"], error=q["readout_error"]) for q in qubits},
    )
    return target


class Wukong72Backend(BackendV2):  # type: ignore[misc]
    """A Qiskit BackendV2 of the device model: target, coupling map, calibration. It does not
    run circuits itself; qfleet's workers simulate it (see worker/engines/device.py)."""

    def __init__(self, calibration: dict[str, Any] | None = None) -> None:
        super().__init__(name="wukong72", description="Origin Wukong-class 72-qubit superconducting QPU model")
        self.calibration = calibration or load_calibration()
        self._target = build_target(self.calibration)

    @property
    def target(self) -> Target:
        return self._target

    @property
    def max_circuits(self) -> None:
        return None

    @classmethod
    def _default_options(cls) -> Options:
        return Options(shots=DEFAULT_SHOTS)

    def run(self, run_input: Any, **options: Any) -> Any:
        raise NotImplementedError("submit to qfleet with backend='wukong72'")


def summary(calibration: dict[str, Any]) -> dict[str, Any]:
    """Medians and ranges for GET /v1/backends."""
    qubits = calibration["qubits"]
    enabled = [c for c in calibration["couplers"] if c["enabled"]]

    def stats(values: list[float]) -> dict[str, float]:
        return {"median": float(np.median(values)), "min": float(np.min(values)), "max": float(np.max(values))}

    return {
        "id": calibration["id"],
        "synthetic": calibration["synthetic"],
        "t1_us": stats([q["t1_us"] for q in qubits]),
        "t2_us": stats([q["t2_us"] for q in qubits]),
        "sx_error": stats([q["sx_error"] for q in qubits]),
        "readout_error": stats([q["readout_error"] for q in qubits]),
        "cz_error": stats([c["cz_error"] for c in enabled]),
        "couplers": len(calibration["couplers"]),
        "couplers_disabled": len(calibration["couplers"]) - len(enabled),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=7)
    print(json.dumps(generate_calibration(parser.parse_args().seed), indent=1))

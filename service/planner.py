"""Pricing a job and sharding it into tasks: parsed PUBs in, a complete
:class:`~service.tasks.JobSpec` and its payload blobs out.

Product mode (every observable on each parameter set) is the usual training case,
observables (K, 1) against parameters (B, P); zip mode is chosen when a product would
compute much more than the broadcast shape needs. Tasks are priced to run for about
``task_target_s`` (the row layout is described in :mod:`service.tasks`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .pubs import ParsedPub
from .tasks import JobSpec, PubSpec, Segment

# Seconds per row on one core: a fixed part per circuit execution, plus a part that scales
# with the statevector size times the work per state (gates and observable terms). Fitted
# to the Lightning engine on the WORKLOADS.md ansatz (n=12: ~75 µs a row, n=16: ~0.9 ms);
# shot-based rows run on Aer, which costs several times more, plus the sampling.
_ROW_FIXED_S = 1e-5
_ROW_PER_AMP_OP_S = 2.5e-10
_AER_FACTOR = 5.0
_SHOT_S = 2e-7
COST_QUBIT_CAP = 30


@dataclass
class Plan:
    spec: JobSpec
    data: dict[str, bytes]
    circuits: int

    @property
    def tasks(self) -> list[list[Segment]]:
        return self.spec.tasks


def gradient_factor(method: str | None, num_parameters: int) -> float:
    if not method:
        return 1.0
    if method == "parameter-shift":
        return 2.0 * num_parameters + 1.0
    return 3.0 + 0.1 * num_parameters  # adjoint: a few passes, and a P-wide reduction


def row_seconds(pub: ParsedPub, mode: str, qubit_cap: int = COST_QUBIT_CAP, size: int | None = None) -> float:
    terms = sum(len(o) for o in pub.observables)
    per_row_terms = terms if mode == "product" else terms / max(1, len(pub.observables))
    amps = 2.0 ** min(pub.num_qubits, qubit_cap)
    size = pub.circuit.size() if size is None else size
    seconds = _ROW_FIXED_S + _ROW_PER_AMP_OP_S * amps * (size + per_row_terms)
    if pub.shots:
        seconds = seconds * _AER_FACTOR + _SHOT_S * pub.shots * max(1.0, per_row_terms)
    return float(seconds * gradient_factor(pub.gradient, pub.num_parameters))


def choose_mode(pub: ParsedPub) -> str:
    size = int(np.prod(pub.shape)) if pub.shape else 1
    return "product" if len(pub.observables) * len(pub.values) <= 2 * size else "zip"


def plan_job(
    pubs: list[ParsedPub],
    task_target_s: float,
    qubit_cap: int = COST_QUBIT_CAP,
    *,
    seed: int | None = None,
    noise: bool = True,
    priority: str = "normal",
) -> Plan:
    """Shard PUBs into tasks. ``qubit_cap`` bounds the 2^n in the cost model: device models
    simulate wide circuits as matrix-product states, whose cost does not grow as 2^n."""
    pub_specs: list[PubSpec] = []
    data: dict[str, bytes] = {}
    tasks: list[list[Segment]] = []
    current: list[Segment] = []
    current_s = 0.0
    cost_units = 0.0
    circuits = 0
    # PUBs that share a circuit (or observables) share one payload blob, and one compiled
    # program in the workers: a training step's thousands of one-row PUBs cost about one PUB.
    first_circuit: dict[bytes, int] = {}
    first_obs: dict[bytes, int] = {}
    sizes: dict[int, tuple[Any, int, int]] = {}
    for i, pub in enumerate(pubs):
        mode = choose_mode(pub)
        if mode == "product":
            rows = len(pub.values)
        else:
            obs_idx = np.broadcast_to(np.arange(len(pub.observables)).reshape(pub.obs_shape), pub.shape)
            par_idx = np.broadcast_to(np.arange(len(pub.values)).reshape(pub.par_shape), pub.shape)
            pairs = np.stack([obs_idx.ravel(), par_idx.ravel()], axis=1).astype("<i8")
            rows = len(pairs)
            data[f"x{i}"] = pairs.tobytes()
        c = first_circuit.setdefault(pub.qpy, i)
        if c == i:
            data[f"c{i}"] = pub.qpy
        obs_bytes = _json_bytes(pub.observables)
        o = first_obs.setdefault(obs_bytes, i)
        if o == i:
            data[f"o{i}"] = obs_bytes
        data[f"p{i}"] = np.ascontiguousarray(pub.values, dtype="<f8").tobytes()
        # depth and size once per circuit object: PUBs sharing a circuit share the parsed object
        shared = sizes.get(id(pub.circuit))
        if shared is None or shared[0] is not pub.circuit:
            shared = sizes[id(pub.circuit)] = (pub.circuit, pub.circuit.depth(), pub.circuit.size())
        _, depth, size = shared
        pub_specs.append(
            PubSpec(
                num_qubits=pub.num_qubits,
                num_parameters=pub.num_parameters,
                num_observables=len(pub.observables),
                num_values=len(pub.values),
                rows=rows,
                mode=mode,
                shape=tuple(pub.shape),
                obs_shape=tuple(pub.obs_shape),
                par_shape=tuple(pub.par_shape),
                precision=pub.precision,
                shots=pub.shots,
                depth=depth,
                gradient=pub.gradient,
                circuit=c,
                obs=o,
                primitive=pub.primitive,
                clbits=int(pub.circuit.num_clbits),
                registers=pub.registers,
            )
        )
        circuits += rows
        cost_units += rows * 2.0 ** min(pub.num_qubits, COST_QUBIT_CAP) * max(1, depth)
        row_s = row_seconds(pub, mode, qubit_cap, size)
        chunks = max(1, math.ceil(rows * row_s / task_target_s))
        chunk = math.ceil(rows / chunks)
        for start in range(0, rows, chunk):
            stop = min(rows, start + chunk)
            seconds = (stop - start) * row_s
            if current and current_s + seconds > task_target_s:
                tasks.append(current)
                current, current_s = [], 0.0
            current.append(Segment(i, start, stop))
            current_s += seconds
    if current:
        tasks.append(current)
    spec = JobSpec(pubs=pub_specs, tasks=tasks, seed=seed, noise=noise, priority=priority, cost_units=cost_units)
    return Plan(spec=spec, data=data, circuits=circuits)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()

"""Pricing a job and sharding it into tasks: parsed PUBs in, a complete
:class:`~qfleet_server.tasks.JobSpec` and its payload blobs out.

Product mode (every observable on each parameter set) is the usual training case,
observables (K, 1) against parameters (B, P); zip mode is chosen when a product would
compute much more than the broadcast shape needs. Tasks are priced to run for about
``task_target_s`` (the row layout is described in :mod:`qfleet_server.tasks`); a job of less
than that per worker is still cut into one task per worker, each at least ``min_task_s``, so
that a training step's forward pass runs on every idle worker at once.
"""

from __future__ import annotations

import hashlib
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
# Noisy device PUBs of up to this many qubits are priced from measured runs (learns_price), at
# this multiple of what a row took: runs of one structure vary with load and chunk size.
LEARNED_PRICE_QUBITS = 12
MEASURED_MARGIN = 2.0
_SLACK = 1e-9  # a job of exactly N targets is N tasks, whatever the float rounding


@dataclass
class Price:
    """What a job will cost, computed before anything is stored or queued; admission holds
    each figure against a limit."""

    evaluations: int = 0  # expectation values computed: broadcast size K×M, times 2G+1 shifts for gradients
    executions: int = 0  # circuit runs: rows, times the shifted copies
    shots: int = 0  # executions × shots
    result_bytes: int = 0  # float64 evs, stds and gradients the job stores (it returns at most as many)
    payload_bytes: int = 0  # circuits, parameter rows and observables stored for the workers
    seconds: float = 0.0  # estimated compute on one core
    max_row_seconds: float = 0.0  # the costliest single row: no task can be shorter than this


@dataclass
class Plan:
    spec: JobSpec
    data: dict[str, bytes]
    price: Price

    @property
    def tasks(self) -> list[list[Segment]]:
        return self.spec.tasks


def fan_out(pub: ParsedPub) -> int:
    """Circuits run per row: the row itself, and for parameter shift two per shifted rotation angle."""
    return 2 * pub.info.shift_terms + 1 if pub.gradient == "parameter-shift" else 1


def gradient_factor(pub: ParsedPub) -> float:
    if pub.gradient == "adjoint":
        return 3.0 + 0.1 * pub.num_parameters  # a few passes, and a P-wide reduction
    return float(fan_out(pub))


def learns_price(pub: ParsedPub, device: bool, noise: bool) -> bool:
    """Whether a device PUB is priced from what the same work measured before: noisy runs of
    up to LEARNED_PRICE_QUBITS qubits. The worker's density-matrix engine runs them; its cost
    follows the transpiled circuit's light cones, which the API cannot see, and not the parameter
    values, so an earlier run of the same circuit, observables and shots measures it. (Aer's
    matrix-product states, for wider circuits, cost what the values entangle: not learned.)"""
    return device and noise and pub.num_qubits <= LEARNED_PRICE_QUBITS


def cost_key(pub: ParsedPub, mode: str) -> str:
    """What a row's cost depends on besides the parameter values: the circuit, the observables,
    shots, gradient, mode and primitive (only noisy runs are learned; the backend and tenant
    are in the Redis key)."""
    digest = hashlib.sha256(pub.qpy)
    digest.update(_json_bytes([pub.observables, pub.shots, pub.gradient, mode, pub.primitive]))
    return digest.hexdigest()[:32]


def row_seconds(pub: ParsedPub, mode: str, device: bool = False, noise: bool = True) -> float:
    """Estimated seconds of one row (with its gradient) on one core."""
    terms = sum(len(o) for o in pub.observables)
    per_row_terms = terms if mode == "product" else terms / max(1, len(pub.observables))
    if device:
        # the device estimator measures each group of qubit-wise commuting terms once: count the
        # measurement bases (an identity fits any basis), a row's share of them in zip mode
        bases = {label.replace("I", "Z") for o in pub.observables for label in o}
        groups = len(bases) if mode == "product" else len(bases) / max(1, len(pub.observables))
        seconds = device_run_seconds(pub.num_qubits, pub.info.size, pub.shots, noise) * max(1.0, groups)
        seconds *= gradient_factor(pub)
        if pub.measured_row_s is not None and learns_price(pub, device, noise):
            # what the same work took before, with a margin; never above the model's figure
            seconds = min(seconds, MEASURED_MARGIN * pub.measured_row_s)
        return float(seconds)
    amps = 2.0 ** min(pub.num_qubits, COST_QUBIT_CAP)
    seconds = _ROW_FIXED_S + _ROW_PER_AMP_OP_S * amps * (pub.info.size + per_row_terms)
    if pub.shots:
        seconds = seconds * _AER_FACTOR + _SHOT_S * pub.shots * max(1.0, per_row_terms)
    return float(seconds * gradient_factor(pub))


def device_run_seconds(num_qubits: int, ops: int, shots: int, noise: bool) -> float:
    """One run of a circuit on the device model, for one group of commuting observables, by the
    method the device engine picks (worker/engines/device.py). Fitted on the training ansatz on a
    loaded 2-core machine: noisy n=8 density matrix ~1 s at 1024 shots, n=12 statevector
    trajectories ~1.7 s. Matrix-product-state trajectories cost what the entanglement does: at
    72 qubits 0.06-0.1 s a shot with random angles, some ms with small ones; the figure here is a
    typical one, not a bound (admission refuses what is far over the limit even so)."""
    sampling = _SHOT_S * shots
    if not noise:
        if num_qubits <= 20:
            return _ROW_FIXED_S + _AER_FACTOR * _ROW_PER_AMP_OP_S * 2.0**num_qubits * ops + sampling
        return 1e-4 * ops + sampling  # one matrix-product-state pass
    if num_qubits <= 10:
        return 0.05 + 3e-7 * 4.0**num_qubits * ops + sampling  # density matrix
    if num_qubits <= 20:
        return 6e-9 * shots * 2.0**num_qubits * ops  # a statevector trajectory per shot
    return 3e-5 * shots * ops  # a matrix-product-state trajectory per shot


def choose_mode(pub: ParsedPub) -> str:
    return "product" if len(pub.observables) * len(pub.values) <= 2 * pub.size else "zip"


def plan_job(
    pubs: list[ParsedPub],
    task_target_s: float,
    device: bool = False,
    *,
    seed: int | None = None,
    noise: bool = True,
    priority: str = "normal",
    cache: bool = True,
    workers: int = 1,
    min_task_s: float = 0.0,
) -> Plan:
    """Shard PUBs into tasks priced with the simulators' or the device model's cost (``device``).

    Tasks aim at ``task_target_s`` each. A job that computes less than ``workers`` such tasks
    is cut into equal shares, one per worker, or fewer where a share would be under
    ``min_task_s``: a task costs its worker a few ms of queue and Redis work, which a share
    worth ``min_task_s`` repays."""
    pub_specs: list[PubSpec] = []
    data: dict[str, bytes] = {}
    tasks: list[list[Segment]] = []
    current: list[Segment] = []
    current_s = 0.0
    cost_units = 0.0
    # PUBs that share a circuit (or observables) share one payload blob, and one compiled
    # program in the workers: a training step's thousands of one-row PUBs cost about one PUB.
    first_circuit: dict[bytes, int] = {}
    first_obs: dict[bytes, int] = {}
    obs_blobs: dict[int, bytes] = {}  # id of a PUB's observables list (alive in pubs) -> its JSON
    modes = [choose_mode(pub) for pub in pubs]
    row_s_of = [row_seconds(pub, mode, device, noise) for pub, mode in zip(pubs, modes)]
    if workers > 1 and min_task_s > 0:
        total = sum((len(p.values) if m == "product" else p.size) * r for p, m, r in zip(pubs, modes, row_s_of))
        shares = min(workers, int(total / min_task_s + _SLACK))
        if shares > 1:
            task_target_s = min(task_target_s, total / shares)
    for i, pub in enumerate(pubs):
        mode = modes[i]
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
        # parse_pub hands PUBs with equal observables one list: serialized once per list
        obs_bytes = obs_blobs.get(id(pub.observables)) or obs_blobs.setdefault(
            id(pub.observables), _json_bytes(pub.observables)
        )
        o = first_obs.setdefault(obs_bytes, i)
        if o == i:
            data[f"o{i}"] = obs_bytes
        data[f"p{i}"] = np.ascontiguousarray(pub.values, dtype="<f8").tobytes()
        depth = pub.info.depth
        row_s = row_s_of[i]
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
                row_seconds=row_s,
                circuit=c,
                obs=o,
                primitive=pub.primitive,
                clbits=pub.info.num_clbits,
                registers=pub.registers,
                cost_key=cost_key(pub, mode) if learns_price(pub, device, noise) else "",
            )
        )
        cost_units += rows * 2.0 ** min(pub.num_qubits, COST_QUBIT_CAP) * max(1, depth)
        chunks = max(1, math.ceil(rows * row_s / task_target_s - _SLACK))
        chunk = math.ceil(rows / chunks)
        for start in range(0, rows, chunk):
            stop = min(rows, start + chunk)
            seconds = (stop - start) * row_s
            if current and current_s + seconds > task_target_s * (1 + _SLACK):
                tasks.append(current)
                current, current_s = [], 0.0
            current.append(Segment(i, start, stop))
            current_s += seconds
    if current:
        tasks.append(current)
    spec = JobSpec(
        pubs=pub_specs, tasks=tasks, seed=seed, noise=noise, priority=priority, cost_units=cost_units, cache=cache
    )
    return Plan(spec=spec, data=data, price=price_job(pubs, device, noise))


def price_job(pubs: list[ParsedPub], device: bool = False, noise: bool = True) -> Price:
    """The job's price from its parsed PUBs alone: cheap, and computed before planning builds
    anything whose size the price bounds."""
    price = Price()
    for pub in pubs:
        mode = choose_mode(pub)
        rows = len(pub.values) if mode == "product" else pub.size
        row_s = row_seconds(pub, mode, device, noise)
        price.evaluations += pub.size * fan_out(pub)
        price.executions += rows * fan_out(pub)
        price.shots += rows * fan_out(pub) * pub.shots
        # stored slices: a product row holds every observable, even where the broadcast needs fewer
        values = len(pub.observables) * len(pub.values) if mode == "product" else pub.size
        price.result_bytes += values * 8 * (2 + (pub.num_parameters if pub.gradient else 0))
        if pub.primitive == "sampler":  # shots of packed clbits per register (at most the memory, per register)
            price.result_bytes += rows * pub.shots * sum((len(b) + 7) // 8 for _, b in pub.info.registers)
        observables = sum(len(o) * (len(next(iter(o), "")) + 28) + 3 for o in pub.observables)
        pairs = 16 * pub.size if mode == "zip" else 0
        price.payload_bytes += len(pub.qpy) + pub.values.nbytes + observables + pairs
        price.seconds += rows * row_s
        price.max_row_seconds = max(price.max_row_seconds, row_s)
    return price


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()

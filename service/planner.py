"""Pricing a job, sharding it into tasks, and putting task results back together.

A PUB's work is a list of rows. In *product* mode a row is one parameter set and a task
computes every observable on it, giving a (K, rows) block; this is the usual training
case (observables (K, 1) against parameters (B, P)). In *zip* mode, used when a product
would compute much more than the broadcast shape needs, a row is one (observable,
parameter set) pair of the broadcast result. A task is a list of segments
``[pub, start, stop]``: a slice of one big PUB, or several small PUBs together, priced
to run for about ``task_target_s``.

The result bytes of a task are, per segment: evs, then stds, then (with gradients) the
gradient, all float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .pubs import ParsedPub

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
    spec: dict[str, Any]
    data: dict[str, bytes]
    tasks: list[list[list[int]]]
    cost_units: float
    circuits: int


def gradient_factor(method: str | None, num_parameters: int) -> float:
    if not method:
        return 1.0
    if method == "parameter-shift":
        return 2.0 * num_parameters + 1.0
    return 3.0 + 0.1 * num_parameters  # adjoint: a few passes, and a P-wide reduction


def row_seconds(pub: ParsedPub, mode: str, qubit_cap: int = COST_QUBIT_CAP) -> float:
    terms = sum(len(o) for o in pub.observables)
    per_row_terms = terms if mode == "product" else terms / max(1, len(pub.observables))
    amps = 2.0 ** min(pub.num_qubits, qubit_cap)
    seconds = _ROW_FIXED_S + _ROW_PER_AMP_OP_S * amps * (pub.circuit.size() + per_row_terms)
    if pub.shots:
        seconds = seconds * _AER_FACTOR + _SHOT_S * pub.shots * max(1.0, per_row_terms)
    return float(seconds * gradient_factor(pub.gradient, pub.num_parameters))


def choose_mode(pub: ParsedPub) -> str:
    size = int(np.prod(pub.shape)) if pub.shape else 1
    return "product" if len(pub.observables) * len(pub.values) <= 2 * size else "zip"


def plan_job(
    pubs: list[ParsedPub], task_target_s: float, gradient: str | None = None, qubit_cap: int = COST_QUBIT_CAP
) -> Plan:
    """Shard PUBs into tasks. ``qubit_cap`` bounds the 2^n in the cost model: device models
    simulate wide circuits as matrix-product states, whose cost does not grow as 2^n."""
    pub_specs: list[dict[str, Any]] = []
    data: dict[str, bytes] = {}
    tasks: list[list[list[int]]] = []
    current: list[list[int]] = []
    current_s = 0.0
    cost_units = 0.0
    circuits = 0
    # PUBs that share a circuit (or observables) share one payload blob, and one compiled
    # program in the workers: a training step's thousands of one-row PUBs cost about one PUB.
    first_circuit: dict[bytes, int] = {}
    first_obs: dict[bytes, int] = {}
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
        pub_specs.append(
            {
                "n": pub.num_qubits,
                "P": pub.num_parameters,
                "K": len(pub.observables),
                "M": len(pub.values),
                "rows": rows,
                "mode": mode,
                "shape": list(pub.shape),
                "obs_shape": list(pub.obs_shape),
                "par_shape": list(pub.par_shape),
                "precision": pub.precision,
                "shots": pub.shots,
                "depth": pub.circuit.depth(),
                "gradient": pub.gradient,
                "circuit": c,
                "obs": o,
                **_sampler_fields(pub),
            }
        )
        circuits += rows
        cost_units += rows * 2.0 ** min(pub.num_qubits, COST_QUBIT_CAP) * max(1, pub.circuit.depth())
        row_s = row_seconds(pub, mode, qubit_cap)
        chunks = max(1, math.ceil(rows * row_s / task_target_s))
        chunk = math.ceil(rows / chunks)
        for start in range(0, rows, chunk):
            stop = min(rows, start + chunk)
            seconds = (stop - start) * row_s
            if current and current_s + seconds > task_target_s:
                tasks.append(current)
                current, current_s = [], 0.0
            current.append([i, start, stop])
            current_s += seconds
    if current:
        tasks.append(current)
    spec = {"pubs": pub_specs, "tasks": tasks, "gradient": gradient}
    return Plan(spec=spec, data=data, tasks=tasks, cost_units=cost_units, circuits=circuits)


def _json_bytes(value: Any) -> bytes:
    import json

    return json.dumps(value, separators=(",", ":")).encode()


def segment_width(pub: dict[str, Any], rows: int) -> int:
    """Number of float64 values per result part (evs or stds) for ``rows`` rows."""
    return pub["K"] * rows if pub["mode"] == "product" else rows


def pack_segment(evs: np.ndarray, stds: np.ndarray, gradient: np.ndarray | None) -> bytes:
    parts = [np.ascontiguousarray(evs, "<f8").tobytes(), np.ascontiguousarray(stds, "<f8").tobytes()]
    if gradient is not None:
        parts.append(np.ascontiguousarray(gradient, "<f8").tobytes())
    return b"".join(parts)


def assemble(spec: dict[str, Any], results: dict[int, bytes]) -> list[dict[str, np.ndarray | None]]:
    """Put task results back in request order: per PUB, evs and stds of its broadcast shape."""
    pubs = spec["pubs"]
    with_grad = bool(spec.get("gradient"))
    blocks: list[list[tuple[int, np.ndarray, np.ndarray, np.ndarray | None]]] = [[] for _ in pubs]
    for t, segments in enumerate(spec["tasks"]):
        raw = np.frombuffer(results[t], dtype="<f8")
        pos = 0
        for i, start, stop in segments:
            pub = pubs[i]
            width = segment_width(pub, stop - start)
            evs = raw[pos : pos + width]
            stds = raw[pos + width : pos + 2 * width]
            pos += 2 * width
            grad = None
            if with_grad:
                grad = raw[pos : pos + width * pub["P"]]
                pos += width * pub["P"]
            blocks[i].append((start, evs, stds, grad))
    out = []
    for pub, pieces in zip(pubs, blocks):
        pieces.sort(key=lambda b: b[0])
        P = pub["P"]
        shape = tuple(pub["shape"])
        if pub["mode"] == "product":
            K, M = pub["K"], pub["M"]
            evs = np.concatenate([p[1].reshape(K, -1) for p in pieces], axis=1)
            stds = np.concatenate([p[2].reshape(K, -1) for p in pieces], axis=1)
            obs_idx = np.arange(K).reshape(pub["obs_shape"])
            par_idx = np.arange(M).reshape(pub["par_shape"])
            o, r = np.broadcast_arrays(obs_idx, par_idx)
            grad = None
            if with_grad:
                g = np.concatenate([p[3].reshape(K, -1, P) for p in pieces], axis=1)  # type: ignore[union-attr]
                grad = g[o, r].reshape(shape + (P,))
            out.append({"evs": evs[o, r].reshape(shape), "stds": stds[o, r].reshape(shape), "gradient": grad})
        else:
            evs = np.concatenate([p[1] for p in pieces]).reshape(shape)
            stds = np.concatenate([p[2] for p in pieces]).reshape(shape)
            grad = None
            if with_grad:
                grad = np.concatenate([p[3] for p in pieces]).reshape(shape + (P,))
            out.append({"evs": evs, "stds": stds, "gradient": grad})
    return out


def _sampler_fields(pub: ParsedPub) -> dict[str, Any]:
    if pub.primitive != "sampler":
        return {}
    return {"primitive": "sampler", "clbits": int(pub.circuit.num_clbits), "registers": pub.registers}


def sample_bytes(pub: dict[str, Any]) -> int:
    """Bytes a sampler row gives: shots x the clbits packed (Qiskit's BitArray layout)."""
    return int(pub["shots"]) * ((int(pub["clbits"]) + 7) // 8)


def assemble_samples(spec: dict[str, Any], results: dict[int, bytes]) -> list[dict[str, tuple[np.ndarray, int]]]:
    """Sampler jobs: per PUB, per classical register, (uint8 (*shape, shots, bytes), num_bits)."""
    pubs = spec["pubs"]
    pieces: list[list[tuple[int, bytes]]] = [[] for _ in pubs]
    for t, segments in enumerate(spec["tasks"]):
        raw = results[t]
        pos = 0
        for i, start, stop in segments:
            width = (stop - start) * sample_bytes(pubs[i])
            pieces[i].append((start, raw[pos : pos + width]))
            pos += width
    out = []
    for pub, parts in zip(pubs, pieces):
        parts.sort(key=lambda p: p[0])
        nbytes = (int(pub["clbits"]) + 7) // 8
        memory = np.frombuffer(b"".join(p[1] for p in parts), dtype=np.uint8)
        memory = memory.reshape(tuple(pub["par_shape"]) + (int(pub["shots"]), nbytes))
        out.append({name: (register_bits(memory, clbits), len(clbits)) for name, clbits in pub["registers"]})
    return out


def register_bits(memory: np.ndarray, clbits: list[int]) -> np.ndarray:
    """One register's bits out of packed clbit memory (both big-endian bytes, bit 0 last)."""
    unpacked = np.unpackbits(memory, axis=-1, bitorder="big")  # clbit k at position -1-k
    width = unpacked.shape[-1]
    bits = unpacked[..., [width - 1 - k for k in reversed(clbits)]]  # most significant first
    pad = -len(clbits) % 8
    if pad:
        bits = np.concatenate([np.zeros(bits.shape[:-1] + (pad,), np.uint8), bits], axis=-1)
    return np.packbits(bits, axis=-1, bitorder="big")

"""The task contract between the API and the workers: what a job's spec holds, and the
byte layout of a task's result slice. Imports only numpy, so a worker loads no API code.

A PUB's work is a list of rows. In *product* mode a row is one parameter set and a task
computes every observable on it, giving a (K, rows) block; in *zip* mode a row is one
(observable, parameter set) pair of the broadcast result. A task is a list of
:class:`Segment` s: a slice of one big PUB, or several small PUBs together.

The result bytes of a task are, per segment: evs, then stds, then (for a PUB with a
gradient) the gradient, all little-endian float64.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class Segment(NamedTuple):
    """Rows ``start:stop`` of PUB ``pub``."""

    pub: int
    start: int
    stop: int


@dataclass(frozen=True)
class PubSpec:
    num_qubits: int
    num_parameters: int
    num_observables: int  # K: observables, flattened
    num_values: int  # M: parameter sets, flattened
    rows: int  # units of work: M in product mode, K×M broadcast pairs in zip mode
    mode: str  # "product" | "zip"
    shape: tuple[int, ...]  # the broadcast shape of the PUB's result
    obs_shape: tuple[int, ...]
    par_shape: tuple[int, ...]
    precision: float
    shots: int  # 0: exact
    depth: int
    gradient: str | None  # the resolved method ("parameter-shift" | "adjoint"), or None
    row_seconds: float = 0.0  # estimated compute per row: workers check for a cancel about this often
    # PUBs sharing a circuit or observables name the first one's payload blob (c{circuit}, o{obs})
    circuit: int = -1
    obs: int = -1
    primitive: str = "estimator"  # "sampler": a row gives shots of packed clbit memory
    clbits: int = 0
    registers: list[tuple[str, list[int]]] | None = None  # sampler: (name, clbit indices) per register
    cost_key: str = ""  # device PUBs whose price can be learned: the key workers record its cost under

    def sample_bytes(self, rows: int) -> int:
        """Sampler PUBs: bytes for ``rows`` rows, shots x the clbits packed (Qiskit's BitArray layout)."""
        return rows * self.shots * ((self.clbits + 7) // 8)

    def width(self, rows: int) -> int:
        """float64 values per result part (evs or stds) for ``rows`` rows of this PUB."""
        return self.num_observables * rows if self.mode == "product" else rows


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to run any task of a job, besides the payload blobs."""

    pubs: list[PubSpec]
    tasks: list[list[Segment]]
    seed: int | None = None
    noise: bool = True
    priority: str = "normal"
    cost_units: float = 0.0
    cache: bool = True  # reuse (and store) identical chunks of results across jobs

    def to_json(self) -> str:
        # vars(), not asdict(): asdict deep-copies every field, seconds for a job of 100k PUBs
        data = {**vars(self), "pubs": [vars(p) for p in self.pubs]}
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> JobSpec:
        data = json.loads(raw)
        pubs = [
            PubSpec(
                **{
                    **p,
                    "shape": tuple(p["shape"]),
                    "obs_shape": tuple(p["obs_shape"]),
                    "par_shape": tuple(p["par_shape"]),
                }
            )
            for p in data.pop("pubs")
        ]
        tasks = [[Segment(*s) for s in segments] for segments in data.pop("tasks")]
        return cls(pubs=pubs, tasks=tasks, **data)

    def circuits(self, task: int) -> int:
        return sum(s.stop - s.start for s in self.tasks[task])

    def task_seconds(self, task: int) -> float:
        """A task's estimated compute: what its tenant is charged when a worker takes it."""
        return sum((s.stop - s.start) * self.pubs[s.pub].row_seconds for s in self.tasks[task])


def pack_segment(evs: np.ndarray, stds: np.ndarray, gradient: np.ndarray | None) -> bytes:
    parts = [np.ascontiguousarray(evs, "<f8").tobytes(), np.ascontiguousarray(stds, "<f8").tobytes()]
    if gradient is not None:
        parts.append(np.ascontiguousarray(gradient, "<f8").tobytes())
    return b"".join(parts)


def assemble(spec: JobSpec, results: dict[int, bytes]) -> list[dict[str, np.ndarray | None]]:
    """Put task results back in request order: per PUB, evs and stds of its broadcast shape
    (and the gradient, shape + (P,), for a PUB with one)."""
    pubs = spec.pubs
    blocks: list[list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray | None]]] = [[] for _ in pubs]
    for t, segments in enumerate(spec.tasks):
        raw = np.frombuffer(results[t], dtype="<f8")
        pos = 0
        for i, start, stop in segments:
            pub = pubs[i]
            width = pub.width(stop - start)
            evs = raw[pos : pos + width]
            stds = raw[pos + width : pos + 2 * width]
            pos += 2 * width
            grad = None
            if pub.gradient:
                grad = raw[pos : pos + width * pub.num_parameters]
                pos += width * pub.num_parameters
            blocks[i].append((start, stop, evs, stds, grad))
    out = []
    for pub, pieces in zip(pubs, blocks):
        pieces.sort(key=lambda b: b[0])
        P = pub.num_parameters
        shape = pub.shape
        grad = None
        if pub.mode == "product":
            K, M = pub.num_observables, pub.num_values
            evs = np.concatenate([p[2].reshape(K, p[1] - p[0]) for p in pieces], axis=1)
            stds = np.concatenate([p[3].reshape(K, p[1] - p[0]) for p in pieces], axis=1)
            o, r = np.broadcast_arrays(np.arange(K).reshape(pub.obs_shape), np.arange(M).reshape(pub.par_shape))
            if pub.gradient:
                g = np.concatenate([p[4].reshape(K, p[1] - p[0], P) for p in pieces], axis=1)  # type: ignore[union-attr]
                grad = g[o, r].reshape(shape + (P,))
            out.append({"evs": evs[o, r].reshape(shape), "stds": stds[o, r].reshape(shape), "gradient": grad})
        else:
            evs = np.concatenate([p[2] for p in pieces]).reshape(shape)
            stds = np.concatenate([p[3] for p in pieces]).reshape(shape)
            if pub.gradient:
                grad = np.concatenate([p[4] for p in pieces]).reshape(shape + (P,))  # type: ignore[misc]
            out.append({"evs": evs, "stds": stds, "gradient": grad})
    return out


def result_bytes(spec: JobSpec, task: int) -> int:
    """The length of a task's result slice."""
    size = 0
    for i, start, stop in spec.tasks[task]:
        pub = spec.pubs[i]
        if pub.primitive == "sampler":
            size += pub.sample_bytes(stop - start)
        else:
            size += 8 * pub.width(stop - start) * (2 + (pub.num_parameters if pub.gradient else 0))
    return size


def fill_missing(spec: JobSpec, results: dict[int, bytes]) -> dict[int, bytes]:
    """Every task's slice: the finished ones, and for the others NaN (estimator) or zero bits (sampler)."""
    nan = np.full(1, np.nan, "<f8").tobytes()
    out = dict(results)
    for t in range(len(spec.tasks)):
        if t not in out:
            sampler = bool(spec.tasks[t]) and spec.pubs[spec.tasks[t][0].pub].primitive == "sampler"
            size = result_bytes(spec, t)
            out[t] = bytes(size) if sampler else nan * (size // 8)
    return out


def ready_masks(spec: JobSpec, done: set[int]) -> list[np.ndarray]:
    """Per PUB, a bool array of its result's shape (a sampler PUB: its parameter sets' shape), True
    where the tasks in ``done`` computed the value."""
    rows = [np.zeros(pub.rows, dtype=bool) for pub in spec.pubs]
    for t in done:
        for i, start, stop in spec.tasks[t]:
            rows[i][start:stop] = True
    masks = []
    for pub, ready in zip(spec.pubs, rows):
        if pub.primitive == "sampler":
            masks.append(ready.reshape(pub.par_shape))
        elif pub.mode == "product":  # a row is one parameter set, for every observable
            o, r = np.broadcast_arrays(
                np.arange(pub.num_observables).reshape(pub.obs_shape), np.arange(pub.num_values).reshape(pub.par_shape)
            )
            masks.append(ready[r].reshape(pub.shape))
        else:
            masks.append(ready.reshape(pub.shape))
    return masks


def assemble_samples(spec: JobSpec, results: dict[int, bytes]) -> list[dict[str, tuple[np.ndarray, int]]]:
    """Sampler jobs: per PUB, per classical register, (uint8 (*shape, shots, bytes), num_bits)."""
    pieces: list[list[tuple[int, bytes]]] = [[] for _ in spec.pubs]
    for t, segments in enumerate(spec.tasks):
        raw = results[t]
        pos = 0
        for i, start, stop in segments:
            width = spec.pubs[i].sample_bytes(stop - start)
            pieces[i].append((start, raw[pos : pos + width]))
            pos += width
    out = []
    for pub, parts in zip(spec.pubs, pieces):
        parts.sort(key=lambda p: p[0])
        memory = np.frombuffer(b"".join(p[1] for p in parts), dtype=np.uint8)
        memory = memory.reshape(pub.par_shape + (pub.shots, (pub.clbits + 7) // 8))
        out.append({name: (register_bits(memory, clbits), len(clbits)) for name, clbits in pub.registers or []})
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

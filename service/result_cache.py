"""What the result cache across jobs is keyed by, on both sides: the engine version (the
libraries that compute), and a whole job's key for the API's fast path, where a job whose
every result is cached is created done and never queued. The workers' per-chunk keys are in
``worker/cache.py``; the entries live in Redis (``service/store/cache.py``)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version

from . import __version__
from .tasks import JobSpec

FORMAT = 1  # bump when cached bytes, or an engine's numbers, change without a version change
_DISTRIBUTIONS = ("qiskit", "qiskit-aer", "pennylane-lightning")


@lru_cache(maxsize=64)
def engine_version(*extra: str) -> str:
    """The versions of everything that computes, so an upgrade never serves an older engine's numbers."""
    parts = [f"qfleet={__version__}", f"format={FORMAT}", *extra]
    for name in _DISTRIBUTIONS:
        try:
            parts.append(f"{name}={version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name}=none")
    return ";".join(parts)


def job_digest(tenant: str, backend: str, engine: str, spec: JobSpec, data: dict[str, bytes]) -> str:
    """A whole job's key: the tenant, backend and engine version, its plan (PUB shapes, options,
    seed and task layout; not its priority) and every payload blob (canonical circuit QPY,
    observables, parameter rows)."""
    h = hashlib.sha256()
    for part in (tenant, backend, engine, replace(spec, priority="").to_json()):
        h.update(part.encode())
        h.update(b"\0")
    for name in sorted(data):
        blob = data[name]
        h.update(f"{name}:{len(blob)}:".encode())
        h.update(blob)
    return h.hexdigest()


def cacheable(spec: JobSpec, is_qpu: bool) -> bool:
    """Whether a job's results may be reused: asked for, reproducible (exact, or shot-based with a
    seed), and not from a real QPU."""
    return spec.cache and not is_qpu and (spec.seed is not None or not any(p.shots for p in spec.pubs))

"""The worker's side of the result cache across jobs: what a chunk of results is keyed by,
and its bytes. A chunk is one engine call of a task (about a task quantum of rows).

The key is the SHA-256 of the tenant, the backend, the engine version, the canonical circuit
and observables bytes (the program's digest), the chunk's parameter rows (and, in zip mode,
which observable each row pairs with), the gradient method, shots, precision, noise and seed.
Identical work in a later job of the same tenant finds it; a changed row changes only its
chunk's key. Shot-based chunks are cached only when the job gave a seed (they are then
reproducible); real QPUs are never cached.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from qfleet_server.tasks import pack_segment

from .engines import Block


def chunk_digest(
    engine: str,
    tenant: str,
    backend: str,
    program_digest: str,
    block: Block,
    *,
    primitive: str,
    gradient: str | None,
    precision: float,
) -> str:
    h = hashlib.sha256()
    values = np.ascontiguousarray(block.values, dtype="<f8")
    fields = (
        engine,
        tenant,
        backend,
        program_digest,
        primitive,
        gradient or "",
        str(block.shots),
        repr(float(precision)),
        str(block.noise),
        str(block.seed),
        str(values.shape),
        "product" if block.obs_index is None else "zip",
    )
    for field in fields:
        h.update(field.encode())
        h.update(b"\0")
    h.update(values.tobytes())
    if block.obs_index is not None:
        h.update(b"\0")
        h.update(np.ascontiguousarray(block.obs_index, dtype="<i8").tobytes())
    return h.hexdigest()


def pack_chunk(evs: np.ndarray, stds: np.ndarray, gradient: np.ndarray | None) -> bytes:
    """A chunk's estimates: a JSON line of the shapes, then the bytes of :func:`qfleet_server.tasks.pack_segment`."""
    head = json.dumps([list(evs.shape), None if gradient is None else list(gradient.shape)])
    return head.encode() + b"\n" + pack_segment(evs, stds, gradient)


def unpack_chunk(raw: bytes, rows: int) -> list[np.ndarray | None] | None:
    """[evs, stds, gradient] of :func:`pack_chunk`, or None when the bytes do not hold ``rows`` rows."""
    head, _, body = raw.partition(b"\n")
    try:
        shape, grad_shape = json.loads(head)
    except ValueError:
        return None
    data = np.frombuffer(body, dtype="<f8")
    n = int(np.prod(shape))
    g = 0 if grad_shape is None else int(np.prod(grad_shape))
    if not shape or shape[-1] != rows or len(data) != 2 * n + g:
        return None
    evs = data[:n].reshape(shape)
    stds = data[n : 2 * n].reshape(shape)
    grad = None if grad_shape is None else data[2 * n :].reshape(grad_shape)
    return [evs, stds, grad]

"""The result cache's key and chunk bytes (worker/cache.py): pure logic, no Redis."""

from __future__ import annotations

import numpy as np

from service.result_cache import engine_version
from worker.cache import chunk_digest, pack_chunk, unpack_chunk
from worker.engines import Block


def digest(block: Block, tenant: str = "a", **kw: object) -> str:
    options = {"primitive": "estimator", "gradient": None, "precision": 0.0, **kw}
    return chunk_digest("v1", tenant, "aer", "circuit-digest", block, **options)  # type: ignore[arg-type]


def test_a_chunk_round_trips_its_bytes() -> None:
    rng = np.random.default_rng()
    K, rows, P = 3, 5, 4
    evs, stds, grad = rng.normal(size=(K, rows)), rng.normal(size=(K, rows)), rng.normal(size=(K, rows, P))
    got = unpack_chunk(pack_chunk(evs, stds, grad), rows)
    assert got is not None
    for a, b in zip(got, (evs, stds, grad)):
        np.testing.assert_array_equal(a, b)  # type: ignore[arg-type]
    zip_evs = rng.normal(size=rows)
    got = unpack_chunk(pack_chunk(zip_evs, zip_evs, None), rows)
    assert got is not None and got[2] is None
    np.testing.assert_array_equal(got[0], zip_evs)  # type: ignore[arg-type]


def test_bytes_that_do_not_fit_the_chunk_are_a_miss() -> None:
    raw = pack_chunk(np.zeros((2, 3)), np.zeros((2, 3)), None)
    assert unpack_chunk(raw, 4) is None  # another row count
    assert unpack_chunk(raw[:-8], 3) is None  # truncated
    assert unpack_chunk(b"not json\n", 3) is None


def test_the_key_covers_tenant_rows_options_and_seed() -> None:
    values = np.random.default_rng().uniform(0, 1, (4, 2))
    base = digest(Block(values))
    assert digest(Block(values.copy())) == base  # content, not identity
    changed = values.copy()
    changed[2, 1] += 1e-12
    others = {
        digest(Block(values), tenant="b"),
        digest(Block(changed)),
        digest(Block(values, shots=100)),
        digest(Block(values, shots=100, seed=7)),
        digest(Block(values, noise=False)),
        digest(Block(values), gradient="adjoint"),
        digest(Block(values), gradient="parameter-shift"),
        digest(Block(values), precision=0.01),
        digest(Block(values), primitive="sampler"),
        digest(Block(values, obs_index=np.zeros(4, dtype=np.int64))),
        digest(Block(values, obs_index=np.array([0, 1, 0, 1]))),
        digest(Block(values.reshape(2, 4))),
        chunk_digest(
            "v2", "a", "aer", "circuit-digest", Block(values), primitive="estimator", gradient=None, precision=0
        ),
        chunk_digest(
            "v1", "a", "lightning", "circuit-digest", Block(values), primitive="estimator", gradient=None, precision=0
        ),
        chunk_digest(
            "v1", "a", "aer", "other-circuit", Block(values), primitive="estimator", gradient=None, precision=0
        ),
    }
    assert base not in others and len(others) == 15


def test_the_engine_version_names_the_libraries_that_compute() -> None:
    v = engine_version("calibration=x")
    assert "qiskit-aer=" in v and "pennylane-lightning=" in v and "calibration=x" in v

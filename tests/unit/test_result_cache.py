"""The result cache's key and chunk bytes (worker/cache.py): pure logic, no Redis."""

from __future__ import annotations

import numpy as np

from qfleet_server.result_cache import cacheable, engine_version, job_digest
from qfleet_server.tasks import JobSpec, PubSpec, Segment
from qfleet_server.worker.cache import chunk_digest, pack_chunk, unpack_chunk
from qfleet_server.worker.engines import Block


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


def spec(**kw: object) -> JobSpec:
    pub = PubSpec(
        num_qubits=2, num_parameters=1, num_observables=1, num_values=3, rows=3, mode="product",
        shape=(3,), obs_shape=(), par_shape=(3,), precision=0.0, shots=int(kw.pop("shots", 0)),  # type: ignore[call-overload]
        depth=2, gradient=None,
    )  # fmt: skip
    return JobSpec(pubs=[pub], tasks=[[Segment(0, 0, 3)]], **kw)  # type: ignore[arg-type]


def test_a_jobs_key_covers_tenant_plan_and_payloads_but_not_priority() -> None:
    data = {"c0": b"qpy", "o0": b'[{"ZZ":1.0}]', "p0": np.arange(3.0).tobytes()}
    base = job_digest("a", "aer", "v1", spec(), data)
    assert job_digest("a", "aer", "v1", spec(priority="high"), dict(data)) == base
    others = {
        job_digest("b", "aer", "v1", spec(), data),
        job_digest("a", "lightning", "v1", spec(), data),
        job_digest("a", "aer", "v2", spec(), data),
        job_digest("a", "aer", "v1", spec(seed=3), data),
        job_digest("a", "aer", "v1", spec(), {**data, "p0": np.array([0.0, 1.0, 2.5]).tobytes()}),
        job_digest("a", "aer", "v1", spec(), {**data, "o0": b'[{"XX":1.0}]'}),
    }
    assert base not in others and len(others) == 6


def test_only_reproducible_jobs_are_cacheable() -> None:
    assert cacheable(spec(), is_qpu=False)
    assert not cacheable(spec(cache=False), is_qpu=False)
    assert not cacheable(spec(shots=100), is_qpu=False)
    assert cacheable(spec(shots=100, seed=1), is_qpu=False)
    assert not cacheable(spec(shots=100, seed=1), is_qpu=True)

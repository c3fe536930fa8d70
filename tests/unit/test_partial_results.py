"""Partial results, pure logic: task slices that exist are placed where ``assemble`` puts them,
the others read NaN (sampler: zero bits), and the mask says which is which, for both row
layouts (product and zip), with a gradient, and for sampler PUBs."""

from __future__ import annotations

import numpy as np

from qfleet_server.tasks import (
    JobSpec,
    PubSpec,
    Segment,
    assemble,
    assemble_samples,
    fill_missing,
    pack_segment,
    ready_masks,
)


def pub(**kw: object) -> PubSpec:
    base: dict[str, object] = dict(
        num_qubits=2, num_parameters=3, precision=0.0, shots=0, depth=1, gradient=None, obs_shape=(), par_shape=()
    )
    return PubSpec(**{**base, **kw})  # type: ignore[arg-type]


def test_product_and_zip_pubs_with_missing_tasks() -> None:
    rng = np.random.default_rng()
    K, M, P = 3, 10, 3
    # product: observables (3, 1) against values (10,) -> shape (3, 10); a row is one parameter set
    product = pub(
        num_observables=K,
        num_values=M,
        rows=M,
        mode="product",
        shape=(K, M),
        obs_shape=(K, 1),
        par_shape=(M,),
        gradient="adjoint",
    )
    # zip: observables (6,) against values (6,) -> shape (6,); a row is one (observable, set) pair
    zipped = pub(num_observables=6, num_values=6, rows=6, mode="zip", shape=(6,), obs_shape=(6,), par_shape=(6,))
    tasks = [[Segment(0, 0, 4)], [Segment(0, 4, 7)], [Segment(0, 7, 10), Segment(1, 0, 2)], [Segment(1, 2, 6)]]
    spec = JobSpec(pubs=[product, zipped], tasks=tasks)
    evs0, grad0 = rng.normal(size=(K, M)), rng.normal(size=(K, M, P))
    evs1 = rng.normal(size=6)
    results = {}
    for t, segments in enumerate(tasks):
        parts = []
        for i, start, stop in segments:
            if i == 0:
                parts.append(pack_segment(evs0[:, start:stop], evs0[:, start:stop] * 0, grad0[:, start:stop]))
            else:
                parts.append(pack_segment(evs1[start:stop], evs1[start:stop] * 0, None))
        results[t] = b"".join(parts)
    full = assemble(spec, results)

    done = {0, 2}
    some = {t: results[t] for t in done}
    part = assemble(spec, fill_missing(spec, some))
    masks = ready_masks(spec, done)
    expected0 = np.zeros((K, M), bool)
    expected0[:, 0:4] = expected0[:, 7:10] = True
    expected1 = np.array([True, True, False, False, False, False])
    assert masks[0].shape == (K, M) and (masks[0] == expected0).all()
    assert (masks[1] == expected1).all()
    for arrays, whole, mask in zip(part, full, masks):
        for name in ("evs", "stds", "gradient"):
            got, want = arrays[name], whole[name]
            if want is None:
                assert got is None
                continue
            assert got is not None and got.shape == want.shape
            assert np.array_equal(got[mask], want[mask])
            assert np.isnan(got[~mask]).all()
    assert np.array_equal(full[0]["evs"], evs0) and np.array_equal(full[0]["gradient"], grad0)

    everything = ready_masks(spec, set(range(len(tasks))))
    assert all(m.all() for m in everything)
    assert not any(m.any() for m in ready_masks(spec, set()))


def test_sampler_pub_with_missing_tasks() -> None:
    rng = np.random.default_rng()
    shots, clbits = 5, 3
    sampler = pub(
        num_observables=0,
        num_values=6,
        rows=6,
        mode="product",
        shape=(2, 3),
        par_shape=(2, 3),
        primitive="sampler",
        shots=shots,
        clbits=clbits,
        registers=[("meas", [0, 1, 2])],
    )
    tasks = [[Segment(0, 0, 2)], [Segment(0, 2, 5)], [Segment(0, 5, 6)]]
    spec = JobSpec(pubs=[sampler], tasks=tasks)
    memory = rng.integers(1, 8, size=(6, shots, 1), dtype=np.uint8)  # never all zero: missing rows tell
    results = {t: memory[s.start : s.stop].tobytes() for t, (s,) in enumerate(tasks)}
    full = assemble_samples(spec, results)[0]["meas"][0]
    part = assemble_samples(spec, fill_missing(spec, {1: results[1]}))[0]["meas"][0]
    (mask,) = ready_masks(spec, {1})
    assert mask.shape == (2, 3) and mask.reshape(-1).tolist() == [False, False, True, True, True, False]
    assert np.array_equal(part[mask], full[mask]) and not part[~mask].any() and full[~mask].all()

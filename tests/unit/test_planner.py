"""Sharding and assembly are inverse: whatever the shapes, each result lands where Qiskit's
broadcasting puts it."""

import numpy as np
import pytest
from qiskit.circuit import ParameterVector, QuantumCircuit

from qfleet_server.parsing import describe
from qfleet_server.planner import plan_job
from qfleet_server.pubs import ParsedPub
from qfleet_server.tasks import JobSpec, assemble, pack_segment


def make_pub(obs_shape: tuple[int, ...], par_shape: tuple[int, ...], n: int = 2, P: int = 2) -> ParsedPub:
    qc = QuantumCircuit(n)
    for j, p in enumerate(ParameterVector("a", P)):
        qc.ry(p, j % n)
    K = int(np.prod(obs_shape)) if obs_shape else 1
    M = int(np.prod(par_shape)) if par_shape else 1
    values = np.arange(M * P, dtype=float).reshape(M, P)
    observables = [{"Z" * n: float(k + 1)} for k in range(K)]
    return ParsedPub(
        describe(qc),
        observables,
        obs_shape,
        values,
        par_shape,
        tuple(np.broadcast_shapes(obs_shape, par_shape)),
        0.0,
        0,
    )


def fake_value(k: np.ndarray, m: np.ndarray) -> np.ndarray:
    return 1000.0 * k + m  # distinct for every (observable, parameter row) pair


def run_fake_tasks(plan, pubs) -> dict[int, bytes]:  # type: ignore[no-untyped-def]
    results = {}
    for t, segments in enumerate(plan.tasks):
        parts = []
        for i, start, stop in segments:
            spec = plan.spec.pubs[i]
            if spec.mode == "product":
                k, m = np.meshgrid(np.arange(spec.num_observables), np.arange(start, stop), indexing="ij")
            else:
                pairs = np.frombuffer(plan.data[f"x{i}"], dtype="<i8").reshape(-1, 2)[start:stop]
                k, m = pairs[:, 0], pairs[:, 1]
            evs = fake_value(k, m)
            parts.append(pack_segment(evs, -evs, None))
        results[t] = b"".join(parts)
    return results


@pytest.mark.parametrize(
    "obs_shape, par_shape",
    [
        ((), ()),
        ((4, 1), (7,)),
        ((3,), (3,)),
        ((2, 1), (1, 5)),
        ((), (6, 2)),
        ((5,), ()),
        ((50,), (50,)),
        ((2, 3, 1), (4,)),
    ],
)
@pytest.mark.parametrize("target_s", [1e-9, 1e-4, 10.0])
def test_assembly_inverts_sharding(obs_shape, par_shape, target_s) -> None:  # type: ignore[no-untyped-def]
    pubs = [make_pub(obs_shape, par_shape), make_pub((2,), (2,), n=3, P=1)]
    plan = plan_job(pubs, target_s)
    out = assemble(plan.spec, run_fake_tasks(plan, pubs))
    for pub, res in zip(pubs, out):
        k = np.broadcast_to(np.arange(len(pub.observables)).reshape(pub.obs_shape), pub.shape)
        m = np.broadcast_to(np.arange(len(pub.values)).reshape(pub.par_shape), pub.shape)
        assert res["evs"].shape == pub.shape
        assert np.array_equal(res["evs"], fake_value(k, m))
        assert np.array_equal(res["stds"], -fake_value(k, m))


def test_big_pubs_split_and_small_pubs_share_tasks() -> None:
    big = make_pub((8, 1), (4096,), n=12)
    smalls = [make_pub((), (), n=2) for _ in range(20)]
    plan = plan_job([big, *smalls], 0.02)
    big_tasks = [t for t in plan.tasks if any(seg[0] == 0 for seg in t)]
    assert len(big_tasks) > 1
    assert len(plan.tasks) - len(big_tasks) < 5  # twenty tiny PUBs packed into few tasks
    covered = sorted((s, e) for t in plan.tasks for i, s, e in t if i == 0)
    assert covered[0][0] == 0 and covered[-1][1] == 4096
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:]))


def test_zip_mode_when_product_would_waste_work() -> None:
    plan = plan_job([make_pub((64,), (64,))], 1.0)
    assert plan.spec.pubs[0].mode == "zip"
    plan = plan_job([make_pub((8, 1), (64,))], 1.0)
    assert plan.spec.pubs[0].mode == "product"


def test_spec_survives_its_json_round_trip() -> None:
    pubs = [make_pub((4, 1), (7,)), make_pub((3,), (3,), n=3, P=1)]
    plan = plan_job(pubs, 1e-4, seed=7, noise=False, priority="high")
    again = JobSpec.from_json(plan.spec.to_json())
    assert again == plan.spec
    assert all(isinstance(s.pub, int) for t in again.tasks for s in t)

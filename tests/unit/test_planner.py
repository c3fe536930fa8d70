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


def _training_pub(rows: int, n: int = 12) -> ParsedPub:
    qc = QuantumCircuit(n)
    params = iter(ParameterVector("t", 2 * n))
    for q in range(n):
        qc.ry(next(params), q)
        qc.rz(next(params), q)
    qc.cx(range(n - 1), range(1, n))
    values = np.random.default_rng(0).uniform(0, 1, (rows, 2 * n))
    observables = [{"I" * (n - 1 - q) + "Z" + "I" * q: 1.0} for q in range(n)]
    return ParsedPub(describe(qc), observables, (n, 1), values, (rows,), (n, rows), 0.0, 0)


def test_a_job_below_one_task_per_worker_is_shared_by_the_workers() -> None:
    pub = _training_pub(256)
    total = plan_job([pub], 10.0).price.seconds
    assert len(plan_job([pub], 10.0).tasks) == 1  # one worker: one task, as before
    assert len(plan_job([pub], 10.0, workers=2, min_task_s=total / 10).tasks) == 2
    assert len(plan_job([pub], 10.0, workers=4, min_task_s=total / 10).tasks) == 4
    # never a task under min_task_s: two tasks at most when a quarter of the job is below it
    assert len(plan_job([pub], 10.0, workers=4, min_task_s=total / 2.5).tasks) == 2
    assert len(plan_job([pub], 10.0, workers=4, min_task_s=2 * total).tasks) == 1
    # a job worth many tasks per worker is cut by the target alone
    big = plan_job([pub], total / 8, workers=2, min_task_s=total / 100)
    assert len(big.tasks) == len(plan_job([pub], total / 8).tasks) == 8


@pytest.mark.parametrize("workers", [2, 3, 7])
def test_assembly_inverts_sharding_over_workers(workers: int) -> None:
    pubs = [make_pub((4, 1), (7,)), make_pub((3,), (3,)), make_pub((2,), (2,), n=3, P=1)]
    plan = plan_job(pubs, 10.0, workers=workers, min_task_s=1e-12)
    assert len(plan.tasks) >= workers
    out = assemble(plan.spec, run_fake_tasks(plan, pubs))
    for pub, res in zip(pubs, out):
        k = np.broadcast_to(np.arange(len(pub.observables)).reshape(pub.obs_shape), pub.shape)
        m = np.broadcast_to(np.arange(len(pub.values)).reshape(pub.par_shape), pub.shape)
        assert np.array_equal(res["evs"], fake_value(k, m))


def test_noisy_device_pubs_are_priced_from_measured_runs() -> None:
    from dataclasses import replace

    from qfleet_server.planner import MEASURED_MARGIN, cost_key, learns_price, price_job, row_seconds

    pub = replace(make_pub((3, 1), (16,), n=8, P=4), shots=1024)
    model = row_seconds(pub, "product", device=True, noise=True)
    assert learns_price(pub, True, True)
    assert not learns_price(pub, True, False)  # noise off: Aer, priced by its model
    assert not learns_price(pub, False, True)  # simulators: not device work
    assert not learns_price(replace(pub, info=describe(QuantumCircuit(13))), True, True)  # MPS costs follow values

    measured = replace(pub, measured_row_s=0.0004)
    assert row_seconds(measured, "product", device=True, noise=True) == pytest.approx(MEASURED_MARGIN * 0.0004)
    assert row_seconds(measured, "product", device=True, noise=False) == row_seconds(
        pub, "product", device=True, noise=False
    )
    assert row_seconds(replace(pub, measured_row_s=1e6), "product", device=True, noise=True) == model  # never above
    assert price_job([measured], device=True).seconds == pytest.approx(16 * MEASURED_MARGIN * 0.0004)
    plan = plan_job([measured], 0.1, device=True)
    assert len(plan.tasks) == 1 and plan.spec.pubs[0].cost_key == cost_key(pub, "product")
    assert len(plan_job([pub], 0.1, device=True).tasks) == 16  # the model: a row is a task
    assert plan_job([pub], 0.1, device=True, noise=False).spec.pubs[0].cost_key == ""

    # the key follows what the cost depends on, not the parameter values
    assert cost_key(replace(pub, values=pub.values + 1), "product") == cost_key(pub, "product")
    assert cost_key(replace(pub, shots=2048), "product") != cost_key(pub, "product")
    assert cost_key(replace(pub, observables=[{"X" * 8: 1.0}] * 3), "product") != cost_key(pub, "product")
    assert cost_key(pub, "zip") != cost_key(pub, "product")

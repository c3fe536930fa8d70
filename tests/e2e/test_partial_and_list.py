"""End to end: partial results while a job computes, streams of them, and reattaching to a
job from another process by its id (found by its tags). Real redis-server, uvicorn and
`qfleet worker` processes; values checked against a direct Aer EstimatorV2 call."""

from __future__ import annotations

import io
import subprocess
import sys
import time

import numpy as np
import pytest
from qfleet import Client, JobResult
from qiskit import transpile
from qiskit_aer import AerSimulator
from qiskit_aer.primitives import EstimatorV2
from redis import Redis

from qfleet_server.stack import Stack
from qfleet_server.store import Store
from tests.conftest import training_ansatz

pytestmark = pytest.mark.e2e


def direct_aer(circuit, observables, values):  # type: ignore[no-untyped-def]
    native = transpile(circuit, AerSimulator(), optimization_level=0)
    return EstimatorV2().run([(native, observables, values)]).result()[0].data.evs


def check_partial(part: JobResult, final: JobResult) -> None:
    """Ready values are the final ones, bit for bit; the others are NaN."""
    for p, f in zip(part, final):
        assert p.mask is not None and p.mask.shape == f.evs.shape == p.evs.shape
        assert np.array_equal(p.evs[p.mask], f.evs[p.mask]) and np.array_equal(p.stds[p.mask], f.stds[p.mask])
        assert np.isnan(p.evs[~p.mask]).all() and np.isnan(p.stds[~p.mask]).all()


def test_partial_results_of_a_running_job_then_its_final_result(stack: Stack, client: Client) -> None:
    rng = np.random.default_rng()
    n = 12
    circuit = training_ansatz(n)
    observables = [["Z" + "I" * (n - 1)], ["I" * (n - 1) + "Z"]]  # (2, 1) against (B,): product rows
    values = rng.uniform(-np.pi, np.pi, (10000, circuit.num_parameters))
    zipped_obs = ["Z" * n, "X" + "I" * (n - 1), "I" * (n - 2) + "YY"]  # (3,) against (3,): zip rows
    zipped_values = rng.uniform(-np.pi, np.pi, (3, circuit.num_parameters))
    store = Store(Redis.from_url(stack.redis_url or ""))
    job = client.estimate(
        [(circuit, observables, values), (circuit, zipped_obs, zipped_values)], tags={"test": "partial"}
    )
    parts: list[JobResult] = []
    paused_part = None
    try:
        for part in job.stream(timeout=300, results=True):
            parts.append(part)
            if paused_part is None and not part.complete:
                # hold the rest: tasks already taken finish, the others wait
                store.set_paused("aer", True)
                time.sleep(2.0)
                first, second = job.partial(), None
                while second is None or second.progress != first.progress:
                    time.sleep(1.0)
                    first, second = job.partial(), first
                paused_part = first
                assert paused_part.status == "running" and paused_part.progress is not None
                assert 0 < paused_part.progress.tasks_done < paused_part.progress.tasks_total
                store.set_paused("aer", False)
    finally:
        store.set_paused("aer", False)
    final = job.result(timeout=120)
    assert paused_part is not None, "the job finished before a partial result could be read"
    ready = paused_part[0].mask
    assert ready is not None and 0 < ready.sum() < ready.size
    assert (ready == ready[:1]).all()  # a row (parameter set) is ready for every observable at once
    check_partial(paused_part, final)

    # the stream: masks only grow, each partial agrees with the end, the last is complete
    assert len(parts) >= 2 and not parts[0].complete and parts[-1].complete
    for earlier, later in zip(parts, parts[1:]):
        for a, b in zip(earlier, later):
            assert a.mask is not None and b.mask is not None and (b.mask >= a.mask).all()
    for part in parts:
        check_partial(part, final)
    assert all(np.array_equal(p.evs, f.evs) for p, f in zip(parts[-1], final))

    np.testing.assert_allclose(final[0].evs, direct_aer(circuit, observables, values), atol=1e-8)
    np.testing.assert_allclose(final[1].evs, direct_aer(circuit, zipped_obs, zipped_values), atol=1e-8)
    done = job.partial()  # a finished job's partial result is the whole result
    assert done.status == "done" and done.complete
    assert all(np.array_equal(p.evs, f.evs) for p, f in zip(done, final))


def test_another_process_finds_jobs_by_tag_and_reattaches(stack: Stack, client: Client) -> None:
    rng = np.random.default_rng()
    circuit = training_ansatz(4)
    values = rng.uniform(-np.pi, np.pi, (4, 8, circuit.num_parameters))
    run = f"exp-{rng.integers(1 << 30)}"
    # step 0: three PUBs sharing a circuit, which the client sends stacked as one
    pubs = [[(circuit, "ZIII", values[k]) for k in range(3)], [(circuit, "IIZI", values[3])]]
    jobs = [client.estimate(pubs[i], tags={"run": run, "step": str(i)}) for i in range(2)]
    script = (
        "import sys, numpy as np; from qfleet import Client\n"
        "client = Client(sys.argv[1], api_key=sys.argv[2])\n"
        f"found = list(client.jobs(tag='run:{run}'))\n"
        "print(' '.join(j.id for j in found))\n"
        "for info in found:\n"
        "    result = client.job(info.id).result(timeout=120, progress=False)\n"
        "    np.save(sys.stdout.buffer, np.stack([r.evs for r in result]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, stack.url, stack.api_key], capture_output=True, check=True, timeout=120
    ).stdout
    ids, _, arrays = out.partition(b"\n")
    assert ids.decode().split() == [jobs[1].id, jobs[0].id]  # newest first
    buf = io.BytesIO(arrays)
    got = {1: np.load(buf), 0: np.load(buf)}
    assert got[0].shape == (3, 8) and got[1].shape == (1, 8)  # one result per PUB sent, as the submitter sees
    for i in (0, 1):
        mine = jobs[i].result(timeout=60, progress=False)
        assert np.array_equal(got[i], np.stack([r.evs for r in mine]))
        for k, (c, obs, vals) in enumerate(pubs[i]):
            np.testing.assert_allclose(got[i][k], direct_aer(c, obs, vals), atol=1e-8)
    assert [j.tags["step"] for j in client.jobs(tag={"run": run}, status="done")] == ["1", "0"]


def test_qiskit_primitives_read_partial_results(stack: Stack, client: Client) -> None:
    from qfleet.qiskit import Estimator, Sampler

    rng = np.random.default_rng()
    circuit = training_ansatz(4)
    values = rng.uniform(-np.pi, np.pi, (5, circuit.num_parameters))
    measured = circuit.copy()
    measured.measure_all()
    store = Store(Redis.from_url(stack.redis_url or ""))
    store.set_paused("aer", True)  # nothing runs: the partial results hold no values yet
    try:
        estimate = Estimator(client, backend="aer").run([(circuit, ["ZIII", "IIXI"], values[:, None, :])])
        sample = Sampler(client, backend="aer", seed=11).run([(measured, values)], shots=64)
        time.sleep(1.0)
        held = estimate.partial_result()
        data = held[0].data
        assert data.mask.shape == data.evs.shape == (5, 2) and not data.mask.any() and np.isnan(data.evs).all()
        assert held.qfleet.metadata["progress"][0] == 0 and held.qfleet.metadata["status"] in ("queued", "running")
        bits = sample.partial_result()[0].data
        assert bits.mask.shape == (5,) and not bits.mask.any() and not bits.meas.array.any()
    finally:
        store.set_paused("aer", False)
    final = estimate.result()[0].data
    part = estimate.partial_result()[0].data
    assert part.mask.all() and np.array_equal(part.evs, final.evs)
    np.testing.assert_allclose(final.evs, direct_aer(circuit, ["ZIII", "IIXI"], values[:, None, :]), atol=1e-8)
    sampled = sample.result()[0].data.meas
    done = sample.partial_result()[0].data
    assert done.mask.all() and np.array_equal(done.meas.array, sampled.array)

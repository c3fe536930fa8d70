"""Nothing acknowledged is lost: workers killed mid-task, Redis and the API restarted
mid-job, retries exhausted, and small jobs that keep moving past a huge one. Real
processes throughout; results checked against direct Aer."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from qfleet import Client, JobFailedError
from qiskit_aer.primitives import EstimatorV2
from redis import Redis
from rq import Worker

from qfleet_server.bench.workloads import training_ansatz, z_observables
from qfleet_server.stack import Stack, free_port
from qfleet_server.store import Store

pytestmark = pytest.mark.e2e
N = 16  # wide enough that a task runs for a good fraction of a second on one core


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"QFLEET_LEASE_S": "1.5", "QFLEET_TASK_RETRIES": "3", "QFLEET_TASK_TARGET_S": "0.1"}
    with Stack(  # simulators only: a device worker would just compete for the cores
        port=free_port(),
        workers=2,
        threads_per_worker=1,
        env=env,
        device_worker=False,
        log_dir=tmp_path_factory.mktemp("faults"),
    ) as stack:
        yield stack


@pytest.fixture
def fclient(fault_stack: Stack) -> Iterator[Client]:
    with Client(fault_stack.url, api_key=fault_stack.api_key) as c:
        yield c


def store_of(stack: Stack) -> Store:
    return Store(Redis.from_url(stack.redis_url or ""))


def check_rows_against_aer(evs: np.ndarray, values: np.ndarray, rows: int = 6) -> None:
    circuit, obs = training_ansatz(N), z_observables(N)
    pick = np.random.default_rng().choice(values.shape[0], rows, replace=False)
    want = EstimatorV2().run([(circuit, obs, values[pick])]).result()[0].data.evs
    np.testing.assert_allclose(evs[:, pick], want, atol=1e-8)


def done_events(stack: Stack, job_id: str) -> tuple[list[str], threading.Event]:
    """Collect this job's events from the channel; the list fills in a background thread."""
    seen: list[str] = []
    stop = threading.Event()
    pubsub = Redis.from_url(stack.redis_url or "").pubsub()
    pubsub.subscribe(store_of(stack).keys.events)

    def listen() -> None:
        while not stop.is_set():
            message = pubsub.get_message(timeout=0.2)
            if message and message["type"] == "message" and message["data"].decode().startswith(job_id):
                seen.append(message["data"].decode())
        pubsub.close()

    threading.Thread(target=listen, daemon=True).start()
    return seen, stop


def busy_worker(stack: Stack) -> tuple[str, int] | None:
    """A (process name, pid) of a worker that is running a task right now."""
    redis = Redis.from_url(stack.redis_url or "")
    busy = {w.name for w in Worker.all(connection=redis) if w.get_current_job_id()}
    for name, proc in stack.procs.items():
        if name.startswith("worker") and proc.poll() is None:
            args = proc.args if isinstance(proc.args, list) else []
            if args and args[-1] in busy:
                return name, proc.pid
    return None


def test_workers_killed_mid_task_lose_nothing(fault_stack: Stack, fclient: Client) -> None:
    rng = np.random.default_rng()
    circuit, obs = training_ansatz(N), z_observables(N)
    values = rng.uniform(0, 2 * np.pi, (3000, circuit.num_parameters))  # ~60 tasks: kills spread over many
    bystander_values = rng.uniform(0, 2 * np.pi, (40, circuit.num_parameters))
    job = fclient.estimate([(circuit, obs, values)])
    bystander = fclient.estimate([(circuit, obs, bystander_values)])
    seen, stop = done_events(fault_stack, job.id)
    kills = 0
    next_index = len([n for n in fault_stack.procs if n.startswith("worker")])
    deadline = time.monotonic() + 120
    while kills < 5 and time.monotonic() < deadline and job.status().status != "done":
        victim = busy_worker(fault_stack)
        if victim is None:
            time.sleep(0.05)
            continue
        name, pid = victim
        os.kill(pid, signal.SIGKILL)
        fault_stack.procs[name].wait(10)
        del fault_stack.procs[name]
        kills += 1
        fault_stack.start_worker(next_index, 1)  # a replacement, as an orchestrator would start
        next_index += 1
        time.sleep(0.8)
    assert kills == 5, "the job finished before five workers could be killed mid-task"
    result = job.result(timeout=300)[0]
    assert result.evs.shape == (N, 3000)
    check_rows_against_aer(result.evs, values)
    check_rows_against_aer(bystander.result(timeout=120)[0].evs, bystander_values)
    attempts = store_of(fault_stack).attempts(job.id)
    assert sum(attempts.values()) >= 1  # abandoned tasks were detected and run again
    time.sleep(0.5)
    stop.set()
    assert [e for e in seen if e.endswith(" done")] == [f"{job.id} done"]  # completed exactly once


def test_redis_restart_mid_job(fault_stack: Stack, fclient: Client) -> None:
    circuit, obs = training_ansatz(N), z_observables(N)
    values = np.random.default_rng().uniform(0, 2 * np.pi, (200, circuit.num_parameters))
    job = fclient.estimate([(circuit, obs, values)])
    while job.status().progress.tasks_done < 2:
        time.sleep(0.05)
    fault_stack.restart_redis()
    result = job.result(timeout=300)[0]  # the client rides out the outage with retries
    check_rows_against_aer(result.evs, values)
    after = fclient.estimate([(circuit, obs, values[:4])]).result(timeout=120)[0]
    check_rows_against_aer(after.evs, values[:4], rows=4)


def live_workers(stack: Stack) -> dict[str, int]:
    return {n: p.pid for n, p in stack.procs.items() if n.startswith("worker") and p.poll() is None}


def test_workers_outlive_a_redis_outage(fault_stack: Stack, fclient: Client) -> None:
    """Redis away for longer than redis-py's own retries while a job runs: RQ's loop ends on the
    error, and its teardown raises again while Redis is away. No worker process may exit on it:
    nothing in this test starts them again (as `qfleet up` would), so the job finishing proves it."""
    circuit, obs = training_ansatz(N), z_observables(N)
    values = np.random.default_rng().uniform(0, 2 * np.pi, (200, circuit.num_parameters))
    before = live_workers(fault_stack)
    job = fclient.estimate([(circuit, obs, values)])
    while job.status().progress.tasks_done < 2:
        time.sleep(0.05)
    fault_stack.restart_redis(hard=True, down_s=12)
    check_rows_against_aer(job.result(timeout=240)[0].evs, values)
    assert live_workers(fault_stack) == before


def test_api_restart_mid_job(fault_stack: Stack, fclient: Client) -> None:
    circuit, obs = training_ansatz(N), z_observables(N)
    values = np.random.default_rng().uniform(0, 2 * np.pi, (120, circuit.num_parameters))
    job = fclient.estimate([(circuit, obs, values)])
    waiting: dict[str, object] = {}
    waiter = threading.Thread(target=lambda: waiting.setdefault("result", job.result(timeout=300)))
    waiter.start()  # a client already in its long-poll when the API goes away
    time.sleep(0.3)
    fault_stack.restart_api()
    waiter.join(300)
    result = waiting["result"][0]  # type: ignore[index]
    check_rows_against_aer(result.evs, values)


def test_retries_exhausted_fail_the_job_with_the_reason(fault_stack: Stack, fclient: Client) -> None:
    wide = training_ansatz(N)
    # fills the low lane: distinct rows, which the result cache cannot answer (zeros ran as cache hits,
    # so the lane emptied within the small job's submit-and-wait and it could finish before its payload went)
    rows = np.random.default_rng().uniform(0, 1, (2000, wide.num_parameters))
    blocker = fclient.estimate([(wide, z_observables(N), rows)])
    circuit, obs = training_ansatz(4), z_observables(4)
    store = store_of(fault_stack)
    job = fclient.estimate([(circuit, obs, np.zeros((2, circuit.num_parameters)))], priority="low")  # queued behind it
    store.redis.delete(store.keys.job_data(job.id))  # its payload is gone, as after an expiry
    blocker.cancel()
    with pytest.raises(JobFailedError) as err:
        job.result(timeout=120)
    assert err.value.code == "task_failed" and "payload" in err.value.message
    assert job.status().error is not None


def test_small_jobs_pass_a_huge_one(fault_stack: Stack, fclient: Client) -> None:
    circuit, obs = training_ansatz(N), z_observables(N)
    huge = fclient.estimate([(circuit, obs, np.random.default_rng().uniform(0, 1, (3000, circuit.num_parameters)))])
    small_circuit = training_ansatz(3)
    time.sleep(0.3)
    for _ in range(3):
        small = fclient.estimate([(small_circuit, "ZII", np.zeros((1, small_circuit.num_parameters)))])
        small.result(timeout=60)
        status = huge.status()
        assert status.status == "running" and status.progress.tasks_done < status.progress.tasks_total
    huge.cancel()


def test_redis_killed_9_mid_run_loses_no_acknowledged_job(fault_stack: Stack, fclient: Client) -> None:
    """SIGKILL of redis-server (no clean shutdown) while a big job runs and small jobs keep arriving:
    every job the API acknowledged finishes with the right numbers once Redis is back. With
    appendfsync everysec, a write Redis has answered is already in the kernel's page cache, so a
    crash of the Redis process alone loses none (the README says what a host crash can lose)."""
    rng = np.random.default_rng()
    circuit, obs = training_ansatz(N), z_observables(N)
    values = rng.uniform(0, 2 * np.pi, (300, circuit.num_parameters))
    big = fclient.estimate([(circuit, obs, values)])
    small_circuit, small_obs = training_ansatz(4), z_observables(4)
    acknowledged: list[tuple[object, np.ndarray]] = []
    refused: list[str] = []
    stop = threading.Event()

    client = Client(fault_stack.url, api_key=fault_stack.api_key)  # the job handles use it after the thread

    def submit() -> None:
        while not stop.is_set():
            v = rng.uniform(0, 2 * np.pi, (3, small_circuit.num_parameters))
            try:
                acknowledged.append((client.estimate([(small_circuit, small_obs, v)]), v))
            except Exception as exc:  # not acknowledged: the client saw the outage
                refused.append(type(exc).__name__)
            time.sleep(0.01)

    submitter = threading.Thread(target=submit)
    submitter.start()
    workers = live_workers(fault_stack)
    try:
        deadline = time.monotonic() + 120
        while big.status().progress.tasks_done < 2:
            assert time.monotonic() < deadline, f"the job did not start: {big.status()} (logs {fault_stack.log_dir})"
            time.sleep(0.05)
        time.sleep(float(rng.uniform(0, 0.5)))
        before = len(acknowledged)
        fault_stack.restart_redis(hard=True)
        deadline = time.monotonic() + 60
        while len(acknowledged) < before + 5 and time.monotonic() < deadline:
            time.sleep(0.1)  # submissions resume after the restart
    finally:
        stop.set()
        submitter.join(120)
    try:
        assert len(acknowledged) >= before + 5, f"submissions did not resume: {refused[-3:]}"
        check_rows_against_aer(big.result(timeout=300)[0].evs, values)
        assert live_workers(fault_stack) == workers  # none died on the crash (nothing here restarts them)
        want = EstimatorV2()
        for job, v in acknowledged:
            evs = job.result(timeout=120)[0].evs  # type: ignore[attr-defined]
            np.testing.assert_allclose(evs, want.run([(small_circuit, small_obs, v)]).result()[0].data.evs, atol=1e-8)
    finally:
        client.close()

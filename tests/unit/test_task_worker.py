"""The worker's RQ bookkeeping before a task in one transaction, and after it in another: an
in-process TaskWorker in burst mode, with a stand-in runner, against a real redis-server. RQ's
records of the task end as RQ's own steps leave them, and the task's first step comes with the
transaction's reply."""

from __future__ import annotations

from typing import Any

from redis import Redis
from rq import Worker
from rq.job import Job as RQJob
from rq.registry import FinishedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from qfleet_server import queueing
from qfleet_server.settings import Settings
from qfleet_server.store import Store
from qfleet_server.tasks import JobSpec
from qfleet_server.worker import runner as runner_module

FIELDS = ["status", "backend", "tenant"]


class StandIn:
    """What the worker calls of its runner: the lease, the first step queued early, the run."""

    def __init__(self, store: Store, early: bool = True) -> None:
        self.store = store
        self.early = early
        self.lease: str | None = None
        self.begun: dict[tuple[str, int], Any] = {}
        self.runs: list[tuple[str, int, Any, bool]] = []

    def begin_with(self, pipe: Any, job_id: str, task: int) -> Any:
        if not self.early:
            return lambda reply: None
        self.store.queue_begin(pipe, job_id, FIELDS)
        return lambda reply: self.begun.__setitem__((job_id, task), self.store.begun(reply))

    def run_leased(self, job_id: str, task: int) -> int:
        early = self.begun.pop((job_id, task), None)
        self.runs.append((job_id, task, early, self.lease is not None))
        self.lease = None
        if job_id.startswith("bad"):
            raise ValueError("this task fails")
        return 1


def work(url: str, stand_in: StandIn, jobs: list[str], failing: int = 0) -> Store:
    settings = Settings(redis_url=url, dev_mode=True, task_retries=0)
    store = Store(Redis.from_url(url), settings.key_prefix)
    stand_in.store = store
    queue = store.keys.queue("aer", "normal")
    for job_id in jobs:
        store.create_job(job_id, "t", "aer", JobSpec(pubs=[], tasks=[[]]), {"c0": b"x"}, 1, queue)
        queueing.enqueue(store, settings, queue, job_id, [0], tenant="t", seconds=[0.01])
    runner_module.install(stand_in)  # type: ignore[arg-type]
    try:
        worker = queueing.make_worker(store, ["aer"], "w-test", holder=stand_in)
        queueing.work(worker, burst=True)
    finally:
        runner_module._runner = None
    worker.refresh()
    assert worker.successful_job_count == len(jobs) - failing and worker.failed_job_count == failing
    return store


def commands(store: Store) -> dict[str, int]:
    """Redis's count of each command it ran since its stats were last reset."""
    stats = store.redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def test_a_task_runs_after_one_transaction_that_brings_its_first_step(clean_redis: str) -> None:
    stand_in = StandIn(None)  # type: ignore[arg-type]
    store = work(clean_redis, stand_in, ["j1", "j2"])
    assert [(j, t, lease) for j, t, _, lease in stand_in.runs] == [("j1", 0, True), ("j2", 0, True)]
    for job_id, _, early, _ in stand_in.runs:
        fields, paused, spec, _ = early  # read in the transaction, before the job was marked running
        assert fields == ["queued", "aer", "t"] and not paused and spec is not None
        assert store.job_field(job_id, "status") == "running" and store.job_field(job_id, "started_at")
    for job_id in ("j1", "j2"):  # RQ's own records, as its separate steps leave them
        rq_job = RQJob.fetch(store.keys.rq_job_id(job_id, 0), connection=store.redis, serializer=JSONSerializer)
        assert rq_job.get_status() == "finished" and rq_job.worker_name == "w-test" and rq_job.started_at
    queue = store.keys.queue("aer", "normal")
    started = StartedJobRegistry(queue, connection=store.redis, serializer=JSONSerializer)
    assert started.get_job_ids() == []


def test_a_runner_that_does_not_queue_its_first_step_still_runs(clean_redis: str) -> None:
    stand_in = StandIn(None, early=False)  # type: ignore[arg-type]
    work(clean_redis, stand_in, ["j3"])
    assert [(j, t, early) for j, t, early, _ in stand_in.runs] == [("j3", 0, None)]


def test_after_a_task_rq_records_it_in_one_transaction(clean_redis: str) -> None:
    """RQ's own handle_job_success watches and reads the task's dependents and writes its
    heartbeat first, each a round trip: a task never has dependents, so none of that is sent,
    and RQ's records end as its own steps leave them."""
    Redis.from_url(clean_redis).config_resetstat()
    store = work(clean_redis, StandIn(None), ["j4", "j5"])  # type: ignore[arg-type]
    counts = commands(store)
    assert "watch" not in counts  # RQ's own sends one per task (with a read of its dependents)
    queue = store.keys.queue("aer", "normal")
    for job_id in ("j4", "j5"):
        rq_job = RQJob.fetch(store.keys.rq_job_id(job_id, 0), connection=store.redis, serializer=JSONSerializer)
        assert rq_job.get_status() == "finished" and rq_job.last_heartbeat and rq_job.ended_at
        assert rq_job.latest_result() is not None and rq_job.latest_result().return_value == 1  # type: ignore[union-attr]
        assert rq_job.id in FinishedJobRegistry(queue, connection=store.redis).get_job_ids()
        assert not store.redis.exists(f"rq:executions:{rq_job.id}") or not store.redis.zcard(
            f"rq:executions:{rq_job.id}"
        )
    worker = Worker.find_by_key("rq:worker:w-test", connection=store.redis)
    assert worker is not None and worker.get_state() == "idle" and worker.get_current_job_id() is None
    assert worker.total_working_time > 0


def test_a_task_that_raises_is_recorded_as_rq_records_it(clean_redis: str) -> None:
    store = work(clean_redis, StandIn(None), ["bad1", "j6"], failing=1)  # type: ignore[arg-type]
    bad = RQJob.fetch(store.keys.rq_job_id("bad1", 0), connection=store.redis, serializer=JSONSerializer)
    assert bad.get_status() == "failed" and bad.last_heartbeat and "this task fails" in (bad.exc_info or "")
    good = RQJob.fetch(store.keys.rq_job_id("j6", 0), connection=store.redis, serializer=JSONSerializer)
    assert good.get_status() == "finished"

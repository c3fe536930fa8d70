"""Leases without a gap: a task is leased in the same step that takes it off its queue, so a
worker that dies at any instant leaves it queued or leased, and the reaper puts a lapsed one
back. A late result from a worker stopped past its lease never rewrites a counted slice.
Against a real redis-server; a "dead worker" here is one that took a task and does nothing more."""

from __future__ import annotations

import time

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from qfleet_server.jobs import JobService
from qfleet_server.queueing import enqueue
from qfleet_server.settings import Settings
from qfleet_server.store import Store
from qfleet_server.tasks import JobSpec


def service(url: str, **overrides: object) -> JobService:
    settings = Settings(redis_url=url, dev_mode=True, lease_s=0.3, task_retries=2, **overrides)  # type: ignore[arg-type]
    return JobService(settings, Store(Redis.from_url(url), settings.key_prefix))


def make_job(jobs: JobService, job_id: str, tasks: int, queue: str) -> None:
    jobs.store.create_job(job_id, "t", "aer", JobSpec(pubs=[], tasks=[[]] * tasks), {"c0": b"x"}, tasks, queue)
    enqueue(jobs.store, jobs.settings, queue, job_id, range(tasks))


def queued(jobs: JobService, queue: str) -> list[str]:
    return Queue(queue, connection=jobs.store.redis, serializer=JSONSerializer).get_job_ids()


def test_a_task_is_leased_in_the_step_that_takes_it(clean_redis: str) -> None:
    jobs = service(clean_redis)
    keys = jobs.store.keys
    lanes = [keys.queue("aer", lane) for lane in ("high", "normal", "low")]
    make_job(jobs, "jlow", 1, lanes[2])
    make_job(jobs, "jnorm", 2, lanes[1])
    rq_keys = [Queue(q, connection=jobs.store.redis).key for q in lanes]
    taken = jobs.store.take_task(rq_keys, lanes, "w1", 5.0, Job.redis_job_namespace_prefix)
    assert taken is not None
    queue_key, rq_id, lease, rq_hash = taken
    assert (queue_key, rq_id) == (rq_keys[1], "jnorm_t0")  # first non-empty lane, oldest task first
    assert rq_hash == jobs.store.redis.hgetall(f"rq:job:{rq_id}") and rq_hash[b"status"] == b"queued"  # RQ's own record
    assert lease == "jnorm_t0|w1" and set(jobs.store.leases()) == {lease}  # no instant without a lease
    assert jobs.store.lease_task(lease) == ("jnorm", 0)
    assert jobs.store.redis.llen(keys.bell(lanes[1])) == 1  # one bell token per task still queued
    assert jobs.store.take_task(rq_keys, lanes, "w1", 5.0)[1] == "jnorm_t1"  # type: ignore[index]
    assert jobs.store.take_task(rq_keys, lanes, "w1", 5.0)[1] == "jlow_t0"  # type: ignore[index]
    assert jobs.store.take_task(rq_keys, lanes, "w1", 5.0) is None
    assert not any(jobs.store.redis.exists(keys.bell(q)) for q in lanes)  # an empty set of queues rings no bell


def test_a_worker_dead_right_after_the_take_loses_nothing(clean_redis: str) -> None:
    jobs = service(clean_redis)
    lane = jobs.store.keys.queue("aer", "normal")
    make_job(jobs, "j1", 2, lane)
    rq_key = Queue(lane, connection=jobs.store.redis).key
    _, rq_id, lease, _ = jobs.store.take_task([rq_key], [lane], "doomed", jobs.settings.lease_s)  # type: ignore[misc]
    assert queued(jobs, lane) == ["j1_t1"]  # the task is in no queue now: only its lease remembers it
    assert jobs.reap() == 0  # not lapsed yet
    time.sleep(jobs.settings.lease_s + 0.05)
    assert jobs.reap() == 1
    assert queued(jobs, lane) == ["j1_t1", "j1_t0_a1"]  # back on its queue, under a fresh RQ id
    assert jobs.store.leases() == {} and jobs.store.attempts("j1") == {0: 1}
    assert jobs.store.wait_bell([lane], 0.1)  # and idle workers are woken for it
    assert jobs.reap() == 0  # claimed once


def test_a_reaper_that_stops_between_claim_and_requeue_loses_nothing(clean_redis: str) -> None:
    """The claim is itself a lease: a reaper killed after claiming (or whose reply was lost, so a
    retry of the claim answers 'taken') leaves a lease that lapses, and the next reap re-queues."""
    jobs = service(clean_redis)
    lane = jobs.store.keys.queue("aer", "normal")
    make_job(jobs, "j6", 1, lane)
    rq_key = Queue(lane, connection=jobs.store.redis).key
    _, _, lease, _ = jobs.store.take_task([rq_key], [lane], "doomed", jobs.settings.lease_s)  # type: ignore[misc]
    time.sleep(jobs.settings.lease_s + 0.05)
    claim = jobs.store.claim_expired(lease, jobs.settings.lease_s)  # a reaper that dies right here
    assert claim is not None and jobs.store.claim_expired(lease, jobs.settings.lease_s) is None
    assert jobs.reap() == 0 and queued(jobs, lane) == []  # the claim holds the task for now
    time.sleep(jobs.settings.lease_s + 0.05)
    assert jobs.reap() == 1
    assert queued(jobs, lane) == ["j6_t0_a1"] and jobs.store.leases() == {}


def test_a_renewed_lease_is_not_reaped_and_a_claimed_one_is_not_revived(clean_redis: str) -> None:
    jobs = service(clean_redis)
    lane = jobs.store.keys.queue("aer", "normal")
    make_job(jobs, "j2", 1, lane)
    rq_key = Queue(lane, connection=jobs.store.redis).key
    _, _, lease, _ = jobs.store.take_task([rq_key], [lane], "w", jobs.settings.lease_s)  # type: ignore[misc]
    for _ in range(4):
        time.sleep(jobs.settings.lease_s / 3)
        assert jobs.store.renew_lease(lease, jobs.settings.lease_s)
        assert jobs.reap() == 0
    time.sleep(jobs.settings.lease_s + 0.05)  # stopped (SIGSTOP) past its lease
    assert jobs.reap() == 1
    assert not jobs.store.renew_lease(lease, jobs.settings.lease_s)  # waking up late does not take it back
    assert jobs.store.leases() == {}


def test_finished_tasks_and_final_jobs_are_not_requeued(clean_redis: str) -> None:
    jobs = service(clean_redis)
    lane = jobs.store.keys.queue("aer", "normal")
    make_job(jobs, "j3", 2, lane)
    rq_key = Queue(lane, connection=jobs.store.redis).key
    _, _, done_lease, _ = jobs.store.take_task([rq_key], [lane], "w", jobs.settings.lease_s)  # type: ignore[misc]
    jobs.store.complete_task("j3", 0, b"slice")  # stored, then the worker died before dropping its lease
    _, _, other, _ = jobs.store.take_task([rq_key], [lane], "w", jobs.settings.lease_s)  # type: ignore[misc]
    jobs.store.finish("j3", "cancelled")
    time.sleep(jobs.settings.lease_s + 0.05)
    assert jobs.reap() == 0
    assert queued(jobs, lane) == [] and jobs.store.leases() == {}


def test_a_task_lost_too_often_fails_its_job(clean_redis: str) -> None:
    jobs = service(clean_redis)
    lane = jobs.store.keys.queue("aer", "normal")
    make_job(jobs, "j4", 1, lane)
    rq_key = Queue(lane, connection=jobs.store.redis).key
    for _ in range(jobs.settings.task_retries + 1):
        assert jobs.store.take_task([rq_key], [lane], "w", jobs.settings.lease_s) is not None
        time.sleep(jobs.settings.lease_s + 0.05)
        jobs.reap()
    assert jobs.store.job_field("j4", "status") == "failed"
    assert "lost its worker" in (jobs.store.job_field("j4", "error") or "")


def test_a_late_duplicate_never_rewrites_a_counted_slice(clean_redis: str) -> None:
    store = Store(Redis.from_url(clean_redis))
    store.create_job("j5", "t", "aer", JobSpec(pubs=[], tasks=[[], []]), {"c0": b"x"}, 2)
    assert store.complete_task("j5", 0, b"from the worker that took over") == 1
    assert store.complete_task("j5", 1, b"b") == 2
    assert store.complete_task("j5", 0, b"late, from the stopped worker") == 0
    assert store.results("j5") == {0: b"from the worker that took over", 1: b"b"}

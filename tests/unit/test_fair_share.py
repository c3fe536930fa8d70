"""Fair share by cost within a lane: the take script serves the tenant with the fewest seconds
of estimated work served so far, and charges each task's seconds as it is taken. Against a
real redis-server, through the same enqueue and take the API and the workers use."""

from __future__ import annotations

from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from qfleet_server.jobs import JobService
from qfleet_server.queueing import TASK_FUNCTION, enqueue, remove
from qfleet_server.settings import Settings
from qfleet_server.store import Store
from qfleet_server.tasks import JobSpec, PubSpec, Segment


def service(url: str) -> JobService:
    settings = Settings(redis_url=url, dev_mode=True, task_retries=2)  # type: ignore[call-arg]
    return JobService(settings, Store(Redis.from_url(url), settings.key_prefix))


def submit(jobs: JobService, job_id: str, tenant: str, seconds: list[float], lane: str) -> None:
    """A job of ``len(seconds)`` tasks, queued as submit queues one (tenant and costs given)."""
    spec = JobSpec(pubs=[], tasks=[[]] * len(seconds))
    jobs.store.create_job(job_id, tenant, "aer", spec, {"c0": b"x"}, len(seconds), lane)
    enqueue(jobs.store, jobs.settings, lane, job_id, range(len(seconds)), tenant=tenant, seconds=seconds)


def take_all(jobs: JobService, lanes: list[str]) -> list[str]:
    keys = [Queue(q, connection=jobs.store.redis).key for q in lanes]
    order = []
    while (taken := jobs.store.take_task(keys, lanes, "w", 5.0)) is not None:
        order.append(taken[1])
    return order


def test_tenants_in_a_lane_interleave_by_cost(clean_redis: str) -> None:
    jobs = service(clean_redis)
    lane = jobs.store.keys.queue("aer", "normal")
    submit(jobs, "A", "alice", [1.0] * 4, lane)  # queued first: 4 s of work in 1 s tasks
    submit(jobs, "B", "bob", [0.5] * 6, lane)  # then 3 s of work in 0.5 s tasks
    # equal seconds served in turn (ties to the tenant that sorts first): two of bob's tasks per alice's
    assert take_all(jobs, [lane]) == [
        "A_t0", "B_t0", "B_t1", "A_t1", "B_t2", "B_t3", "A_t2", "B_t4", "B_t5", "A_t3",
    ]  # fmt: skip
    assert jobs.store.redis.llen(Queue(lane, connection=jobs.store.redis).key) == 0
    assert jobs.store.fair_shares(lane) == {}  # no tenant waits
    assert len(jobs.store.leases()) == 10  # each task was leased as it was taken


def test_a_small_job_queued_behind_a_big_one_goes_next(clean_redis: str) -> None:
    jobs = service(clean_redis)
    lane = jobs.store.keys.queue("aer", "normal")
    keys = [Queue(lane, connection=jobs.store.redis).key]
    submit(jobs, "A", "alice", [2.0] * 50, lane)
    assert jobs.store.take_task(keys, [lane], "w", 5.0)[1] == "A_t0"  # type: ignore[index]
    submit(jobs, "B", "bob", [0.01], lane)
    # bob joins at the lane's clock, behind only the task alice already holds
    assert jobs.store.take_task(keys, [lane], "w", 5.0)[1] == "B_t0"  # type: ignore[index]
    assert jobs.store.fair_shares(lane) == {"alice": 2.0}


def test_a_tenant_that_comes_back_keeps_what_it_was_served(clean_redis: str) -> None:
    jobs = service(clean_redis)
    lane = jobs.store.keys.queue("aer", "normal")
    submit(jobs, "A1", "alice", [3.0], lane)
    assert take_all(jobs, [lane]) == ["A1_t0"]
    submit(jobs, "A2", "alice", [1.0], lane)  # alice has had 3 s; bob none
    submit(jobs, "B", "bob", [1.0, 1.0], lane)
    assert take_all(jobs, [lane]) == ["B_t0", "B_t1", "A2_t0"]


def test_a_cancelled_job_is_skipped_and_not_charged(clean_redis: str) -> None:
    jobs = service(clean_redis)
    lane = jobs.store.keys.queue("aer", "normal")
    submit(jobs, "A1", "alice", [5.0] * 3, lane)
    submit(jobs, "A2", "alice", [1.0], lane)
    submit(jobs, "B", "bob", [1.0, 1.0], lane)
    remove(jobs.store, lane, "A1", range(3))  # what cancel does
    assert take_all(jobs, [lane]) == ["A2_t0", "B_t0", "B_t1"]


def test_lanes_come_first_and_rqs_own_requeues_are_taken(clean_redis: str) -> None:
    jobs = service(clean_redis)
    high, normal = (jobs.store.keys.queue("aer", lane) for lane in ("high", "normal"))
    submit(jobs, "A", "alice", [1.0] * 3, normal)
    submit(jobs, "H", "bob", [9.0], high)
    # RQ's scheduler puts a retried task back on the plain queue list, in no tenant's sub-queue
    Queue(normal, connection=jobs.store.redis, serializer=JSONSerializer).enqueue(
        TASK_FUNCTION, args=("R", 0), job_id="R_t0"
    )
    submit(jobs, "B", "bob", [1.0], normal)
    order = take_all(jobs, [high, normal])
    assert order[0] == "H_t0"  # the high lane first, whatever bob was charged there
    assert sorted(order) == ["A_t0", "A_t1", "A_t2", "B_t0", "H_t0", "R_t0"]  # nothing lost
    assert order.index("R_t0") < order.index("A_t2")  # taken within the lane's turn, not last


def test_a_requeued_task_is_charged_its_spec_seconds(clean_redis: str) -> None:
    """Tasks queued again (reaper, admin re-queue, a paused backend) read their cost from the spec."""
    jobs = service(clean_redis)
    lane = jobs.store.keys.queue("aer", "normal")
    pub = PubSpec(1, 0, 1, 10, 10, "product", (10,), (), (10,), 0.0, 0, 1, None, row_seconds=0.25)
    spec = JobSpec(pubs=[pub], tasks=[[Segment(0, 0, 4)], [Segment(0, 4, 10)]])
    assert (spec.task_seconds(0), spec.task_seconds(1)) == (1.0, 1.5)
    jobs.store.create_job("S", "carol", "aer", spec, {"c0": b"x"}, 2, lane)
    enqueue(jobs.store, jobs.settings, lane, "S", [1], "requeue")
    keys = [Queue(lane, connection=jobs.store.redis).key]
    taken = jobs.store.take_task(keys, [lane], "w", 5.0)
    assert taken is not None and taken[1].startswith("S_t1_r")
    submit(jobs, "D", "dave", [0.1], lane)
    assert jobs.store.redis.hget(jobs.store.keys.fair_state(lane), "carol") == b"1.5"


def test_a_device_slot_is_time_sliced_between_chunks(clean_redis: str) -> None:
    """A long device task takes the slot for each chunk of its work; a worker that asked for the
    device meanwhile gets it at the next chunk boundary, not after the whole task."""
    import threading
    import time

    store = Store(Redis.from_url(clean_redis))
    log: list[str] = []
    first_chunk = threading.Event()

    def long_task() -> None:
        for c in range(8):
            with store.device_slot("wukong72", 1):
                log.append(f"long{c}")
                first_chunk.set()
                time.sleep(0.1)

    def short_task() -> None:
        first_chunk.wait(5)
        with store.device_slot("wukong72", 1):
            log.append("short")

    threads = [threading.Thread(target=long_task), threading.Thread(target=short_task)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert log.index("short") <= 2, log  # one chunk (two, if it asked just as the first ended)
    assert len(log) == 9


def test_a_waiter_that_stops_asking_leaves_the_line(clean_redis: str) -> None:
    import time

    store = Store(Redis.from_url(clean_redis))
    keys = store.keys
    with store.device_slot("wukong72", 1):
        now = time.time()
        # a worker killed while waiting: it asked once and never again
        assert not store._acquire(
            keys=[keys.device_slots("wukong72"), keys.device_line("wukong72"), keys.device_seen("wukong72"),
                  keys.device_tickets("wukong72")],
            args=[1, "killed", now, now + 600, now - 2],
        )  # fmt: skip
    t0 = time.monotonic()
    with store.device_slot("wukong72", 1):  # behind the dead waiter until it counts as gone (2 s)
        waited = time.monotonic() - t0
    assert 1.5 < waited < 5.0, waited
    assert store.redis.zcard(keys.device_line("wukong72")) == 0

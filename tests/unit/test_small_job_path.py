"""The small-job path's parts against a real redis-server: a worker's one-step begin, a
tenant's in-flight sum in one script, the event loop's reads, the QPY version a client
writes, and the turns a tenant's submissions wait for."""

from __future__ import annotations

import asyncio

import pytest
from qfleet._base import QPY_WIRE_VERSION, qpy_version
from qiskit import qpy
from redis import Redis

from qfleet_server.errors import RateLimited
from qfleet_server.guards import TenantTurns
from qfleet_server.store import Reads, Store, TaskStats, connect_async, whole
from qfleet_server.store.cache import CacheWrite
from qfleet_server.store.keys import EVENT_RESULT_BYTES
from qfleet_server.store.reads import AsyncReads, DoneNews, job_event
from qfleet_server.tasks import JobSpec

FIELDS = ["status", "backend", "tenant"]


def make_job(store: Store, job_id: str, tasks: int, tenant: str = "t") -> None:
    store.create_job(job_id, tenant, "aer", JobSpec(pubs=[], tasks=[[]] * tasks), {"c0": b"x"}, tasks)


def test_begin_task_reads_the_job_and_marks_it_running_once(clean_redis: str) -> None:
    store = Store(Redis.from_url(clean_redis))
    make_job(store, "j1", 2)
    fields, paused, spec, payload = store.begin_task("j1", FIELDS, data=True)
    assert payload is None  # two tasks: each reads only its own part of the payload
    assert fields == ["queued", "aer", "t"]  # as it was before this step
    assert not paused and spec is not None and JobSpec.from_json(spec).tasks == [[], []]
    assert store.job_field("j1", "status") == "running" and store.job_field("j1", "started_at")
    started = store.job_field("j1", "started_at")
    fields, _, spec, _ = store.begin_task("j1", FIELDS, spec=False)
    assert fields[0] == "running" and spec is None
    assert store.job_field("j1", "started_at") == started  # the second task does not move it


def test_begin_task_leaves_a_job_of_a_paused_backend_queued(clean_redis: str) -> None:
    store = Store(Redis.from_url(clean_redis))
    make_job(store, "j2", 1)
    store.set_paused("aer", True)
    fields, paused, _, payload = store.begin_task("j2", FIELDS, data=True)
    assert paused and fields[0] == "queued" and store.job_field("j2", "status") == "queued"
    assert payload is None  # the task goes back to its queue
    fields, paused, spec, payload = store.begin_task("gone", FIELDS, data=True)
    assert fields == [None, None, None] and not paused and spec is None and payload is None


def test_begin_task_brings_a_one_task_jobs_whole_payload(clean_redis: str) -> None:
    store = Store(Redis.from_url(clean_redis))
    make_job(store, "j4", 1)
    assert store.begin_task("j4", FIELDS)[3] is None  # not asked
    fields, _, _, payload = store.begin_task("j4", FIELDS, data=True)
    assert fields[0] == "running" and payload == {"c0": b"x"}
    store.finish("j4", "cancelled")
    assert store.begin_task("j4", FIELDS, data=True)[3] is None  # nothing to run


def test_inflight_sums_open_jobs_and_names_the_final_ones(clean_redis: str) -> None:
    store = Store(Redis.from_url(clean_redis))
    for job_id, tasks in (("a", 3), ("b", 2), ("c", 1), ("d", 4)):
        make_job(store, job_id, tasks, tenant="ten")
    store.complete_task("a", 0, b"r")  # a: 2 of 3 left
    store.complete_task("c", 0, b"r")  # c: done
    store.finish("d", "cancelled")
    wait, reads = store.admit("ten", 1000.0, 10)
    assert wait == 0 and reads is not None
    assert (reads.jobs, reads.tasks, sorted(reads.finished)) == (2, 4, ["c", "d"])
    jobs, tasks, finished = store.inflight("ten", ["a", "b", "c", "d"], prune=False)
    assert (jobs, tasks, sorted(finished)) == (2, 4, ["c", "d"])
    again = store.admit("ten", 1000.0, 10)[1]
    assert again is not None and len(again.finished) == 2  # not pruned: the caller does it with its write
    pipe = store.redis.pipeline()
    store.prune_inflight(pipe, "ten", reads.finished)
    pipe.execute()
    assert store.inflight("ten") == (2, 4, [])


def test_admit_reads_inflight_and_claims_the_key_in_the_step_that_takes_the_token(clean_redis: str) -> None:
    store = Store(Redis.from_url(clean_redis))
    for job_id, tasks in (("a", 3), ("c", 1)):
        make_job(store, job_id, tasks, tenant="ten")
    store.complete_task("c", 0, b"r")
    wait, first = store.admit("ten", 1000.0, 10, "new1", "key-1")
    assert wait == 0 and first == Reads(1, 3, ["c"], True)
    assert (first.jobs, first.tasks, first.finished) == store.inflight("ten", prune=False)
    _, again = store.admit("ten", 1000.0, 10, "new2", "key-1")  # the key is taken: claim_idempotency decides
    assert again is not None and not again.claimed
    assert store.claim_idempotency("ten", "key-1", "new2") is None  # bound to a job never created: taken over
    assert store.admit("other", 1000.0, 10, "new4", "key-1") == (0.0, Reads(0, 0, [], True))
    assert store.admit("other", 1000.0, 10, "new5")[1] == Reads(0, 0, [], True)  # no key: nothing to claim
    wait, refused = store.admit("slow", 1.0, 1, "x1", "key-2")
    assert wait == 0 and refused is not None
    wait, refused = store.admit("slow", 1.0, 1, "x2", "key-3")  # over the rate: nothing read, nothing claimed
    assert wait > 0 and refused is None and store.redis.get(store.keys.idempotency("slow", "key-3")) is None


def test_the_whole_job_cache_entry_is_read_by_its_key(clean_redis: str) -> None:
    store = Store(Redis.from_url(clean_redis))
    assert store.cached_job_entry("ten", "digest-1") == {}
    store.redis.hset(store.keys.job_cache("ten", "digest-1"), mapping={"r0": b"x", "m0": b"{}"})
    entry = store.cached_job_entry("ten", "digest-1")
    assert whole(entry, 1) == {b"r0": b"x", b"m0": b"{}"} and whole(entry, 2) is None
    assert store.cached_job_entry("other", "digest-1") == {}


def test_a_one_task_jobs_done_event_carries_its_result(clean_redis: str) -> None:
    store = Store(Redis.from_url(clean_redis))
    listener = store.redis.pubsub()
    listener.subscribe(store.keys.events)
    assert listener.get_message(timeout=1) is not None  # the subscription's own reply
    make_job(store, "j7", 1)
    store.begin_task("j7", FIELDS)
    started = store.job_field("j7", "started_at")
    assert store.complete_task("j7", 0, b"\x00slice\n", whole=True) == 2
    message = listener.get_message(timeout=1)
    assert message is not None
    job_id, what, news = job_event(message["data"])
    assert (job_id, what) == ("j7", "done") and news is not None
    assert news == DoneNews(started or "", store.job_field("j7", "finished_at") or "", b"\x00slice\n")
    make_job(store, "j8", 1)  # with metadata, or of several tasks, or large: the event names the news only
    assert store.complete_task("j8", 0, b"slice", meta={"0": {"seed": 1}}, whole=True) == 2
    make_job(store, "j9", 1)
    assert store.complete_task("j9", 0, b"x" * (EVENT_RESULT_BYTES + 1), whole=True) == 2
    make_job(store, "j10", 2)
    assert store.complete_task("j10", 0, b"slice", whole=False) == 1
    for job_id, what in (("j8", "done"), ("j9", "done"), ("j10", "progress")):
        message = listener.get_message(timeout=1)
        assert message is not None and job_event(message["data"]) == (job_id, what, None)
    listener.close()


def test_complete_task_writes_cache_chunks_and_meta_with_the_result(clean_redis: str) -> None:
    store = Store(Redis.from_url(clean_redis))
    make_job(store, "j5", 1)
    chunks = {"d1": b"chunk"}
    cache = CacheWrite("t", chunks, hits=2, misses=1, ttl_s=60, max_share=0.9)
    stats = TaskStats("aer", "t", 0.002, 0.001, 1)
    assert store.complete_task("j5", 0, b"slice", stats, meta={"0": {"seed": 1}}, cache=cache) == 2
    assert store.cached_chunks("t", ["d1", "d2"]) == [b"chunk", None]
    assert store.task_meta("j5") == {0: {"0": {"seed": 1}}} and store.results("j5") == {0: b"slice"}
    counters = store.redis.hgetall(store.keys.counters)
    assert counters[b"result_cache_hits"] == b"2" and counters[b"result_cache_misses"] == b"1"
    assert store.task_seconds_by_backend()["aer"]["count"] == 1.0  # the by-backend histogram, in the same step
    assert store.complete_task("j5", 0, b"late", stats) == 0  # a duplicate is not counted again
    assert store.task_seconds_by_backend()["aer"]["count"] == 1.0
    make_job(store, "j6", 1)
    store.redis.hset(store.keys.counters, "result_cache_hits", "not a number")  # its HINCRBY fails
    assert store.complete_task("j6", 0, b"kept", stats, cache=cache) == 2  # the result lands all the same
    assert store.results("j6") == {0: b"kept"}


def test_the_event_loop_reads_a_done_job_in_one_go(clean_redis: str) -> None:
    from qfleet_server.settings import Settings

    store = Store(Redis.from_url(clean_redis))
    make_job(store, "j3", 1)
    store.add_api_key("qf_test_key", tenant="t", role="user")
    store.complete_task("j3", 0, b"slice", meta={"0": {"engine": "x"}})

    async def read() -> tuple[object, ...]:
        reads = AsyncReads(connect_async(Settings(redis_url=clean_redis)))
        try:
            key = await reads.api_key("qf_test_key")
            parts = await reads.result_parts("j3", FIELDS)
            return key, parts, await reads.tasks_done("j3"), await reads.job_fields("nope", FIELDS)
        finally:
            await reads.close()

    key, parts, done, missing = asyncio.run(read())
    assert getattr(key, "tenant", None) == "t"
    assert parts.record == {"status": "done", "backend": "aer", "tenant": "t"}  # type: ignore[attr-defined]
    assert parts.results == {0: b"slice"} and parts.meta == {0: {"0": {"engine": "x"}}}  # type: ignore[attr-defined]
    assert parts.spec is not None and done == 1 and missing == {}  # type: ignore[attr-defined]


def test_a_client_writes_the_qpy_version_both_sides_read() -> None:
    assert qpy_version(None) == max(QPY_WIRE_VERSION, qpy.QPY_COMPATIBILITY_VERSION)
    assert qpy_version(qpy.QPY_VERSION + 5) == qpy.QPY_VERSION  # a newer service: this client's newest
    assert qpy_version(qpy.QPY_VERSION - 1) == qpy.QPY_VERSION - 1
    assert qpy_version(1) == qpy.QPY_COMPATIBILITY_VERSION  # never below what qiskit can write


def test_submissions_over_the_limit_wait_for_a_turn_then_get_429() -> None:
    async def scenario() -> tuple[list[str], str]:
        turns = TenantTurns(limit=2, wait_s=0.3)
        order: list[str] = []
        release = asyncio.Event()

        async def submission(name: str, hold: bool) -> None:
            async with turns.turn("t"):
                order.append(f"{name} in")
                if hold:
                    await release.wait()
                order.append(f"{name} out")

        first = [asyncio.create_task(submission(n, True)) for n in ("a", "b")]
        await asyncio.sleep(0.01)
        third = asyncio.create_task(submission("c", False))  # waits: two turns are taken
        other = asyncio.create_task(turns_of_another_tenant(turns))
        await asyncio.sleep(0.05)
        assert "c in" not in order and await other == "other in"  # another tenant has its own turns
        release.set()
        await asyncio.gather(*first, third)
        assert turns.busy == {}
        # now hold both turns past the wait: the next submission is refused
        release.clear()
        held = [asyncio.create_task(submission(n, True)) for n in ("d", "e")]
        await asyncio.sleep(0.01)
        with pytest.raises(RateLimited) as refused:
            await submission("f", False)
        release.set()
        await asyncio.gather(*held)
        return order, refused.value.code

    async def turns_of_another_tenant(turns: TenantTurns) -> str:
        async with turns.turn("other"):
            return "other in"

    order, code = asyncio.run(scenario())
    assert order.index("c in") > min(order.index("a out"), order.index("b out"))
    assert code == "too_many_concurrent_submissions" and "f in" not in order


def test_a_tasks_lease_is_dropped_with_its_result(clean_redis: str) -> None:
    store = Store(Redis.from_url(clean_redis))
    make_job(store, "j11", 2)
    lease = store.take_lease("j11", 0, 30.0)
    other = store.take_lease("j11", 1, 30.0)
    assert store.complete_task("j11", 0, b"slice", lease=lease) == 1
    assert list(store.leases()) == [other] and store.results("j11") == {0: b"slice"}
    store.finish("j11", "cancelled")
    assert store.complete_task("j11", 1, b"late", lease=other) == -1  # dropped as well when the result is
    assert store.leases() == {}

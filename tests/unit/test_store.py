"""Completion is idempotent and counts distinct tasks; late results never revive a final job.
Runs against a real redis-server."""

from __future__ import annotations

from redis import Redis

from qfleet_server.store import Store
from qfleet_server.tasks import JobSpec


def make_job(store: Store, job_id: str, tasks: int) -> None:
    store.create_job(job_id, "t", "aer", JobSpec(pubs=[], tasks=[[]] * tasks), {"c0": b"x"}, tasks)


def test_a_task_that_runs_twice_completes_the_job_once(clean_redis: str) -> None:
    store = Store(Redis.from_url(clean_redis))
    pubsub = store.redis.pubsub()
    pubsub.subscribe(store.keys.events)
    make_job(store, "j1", 3)
    assert store.complete_task("j1", 0, b"a") == 1
    assert store.complete_task("j1", 0, b"a") == 0  # duplicate: not counted
    assert store.complete_task("j1", 1, b"b") == 1
    assert store.job_field("j1", "status") == "queued"
    assert store.complete_task("j1", 2, b"c") == 2  # the last distinct task completes the job
    assert store.complete_task("j1", 2, b"c") == 0  # a late duplicate is not counted again
    assert store.job_field("j1", "status") == "done"
    assert store.results("j1") == {0: b"a", 1: b"b", 2: b"c"}
    events = []
    while (message := pubsub.get_message(timeout=0.2)) is not None:
        if message["type"] == "message":
            events.append(message["data"].decode())
    assert events.count("j1 done") == 1


def test_cancelled_jobs_drop_late_results(clean_redis: str) -> None:
    store = Store(Redis.from_url(clean_redis))
    make_job(store, "j2", 2)
    store.mark_started("j2")
    assert store.job_field("j2", "status") == "running"
    assert store.finish("j2", "cancelled")
    assert not store.finish("j2", "failed", "x", "y")  # final stays final
    assert store.complete_task("j2", 0, b"a") == -1
    assert store.complete_task("j2", 1, b"b") == -1
    assert store.job_field("j2", "status") == "cancelled"
    assert store.results("j2") == {}


def test_api_keys_are_stored_as_hashes(clean_redis: str) -> None:
    store = Store(Redis.from_url(clean_redis))
    store.add_api_key("qf_secret_value_123", tenant="alpha", role="user")
    raw = store.redis.hgetall(store.keys.api_keys)
    assert all(b"qf_secret_value_123" not in k + v for k, v in raw.items())
    assert store.api_key("qf_secret_value_123").tenant == "alpha"  # type: ignore[union-attr]
    assert store.revoke_api_key("qf_secret_") == 1  # the prefix that `qfleet keys list` shows
    assert store.api_key("qf_secret_value_123") is None


def test_sentinel_configuration_finds_the_master(redis_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import time
    from urllib.parse import urlsplit

    from qfleet_server.settings import Settings
    from qfleet_server.stack import free_port
    from qfleet_server.store import connect

    master = urlsplit(redis_url)
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\nsentinel monitor qfleet 127.0.0.1 {master.port} 1\n"
        f"sentinel auth-pass qfleet {master.password}\n"
    )
    proc = subprocess.Popen(
        ["redis-server", str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        # the master's password comes from the URL, whose host Sentinel replaces
        settings = Settings(
            redis_url=f"redis://:{master.password}@unused:1/0",
            redis_sentinels=f"127.0.0.1:{port}",
            redis_sentinel_master="qfleet",
        )
        for _ in range(100):
            try:
                client = connect(settings)
                client.set("qfleet:sentinel-check", "ok")
                break
            except Exception:
                time.sleep(0.05)
        assert Redis.from_url(redis_url).get("qfleet:sentinel-check") == b"ok"  # the write reached the master
    finally:
        proc.terminate()
        proc.wait(10)

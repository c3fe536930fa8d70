"""The one boundary with RQ: every RQ call of qfleet, API and worker side, is here.

RQ jobs carry ids only (JSON serializer); payloads live under our own keys (service/store.py).
The RQ job id of a task is ``Keys.rq_job_id(job, task)`` plus a suffix that says why it was
queued again (:data:`REASONS`), minted only here.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any, Literal

from rq import Queue, SimpleWorker, Worker
from rq.command import send_shutdown_command
from rq.exceptions import AbandonedJobError
from rq.job import Callback, Retry
from rq.job import Job as RQJob
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from .settings import Settings
from .store import LANES, Store

# The worker-side functions RQ runs, by dotted path (RQ imports them in the worker process).
# tests/unit/test_queueing.py checks that they resolve.
TASK_FUNCTION = "worker.runner.run_task"
FAILURE_CALLBACK = "worker.runner.on_task_failed"

Reason = Literal["first", "retry", "paused", "requeue"]
REASONS: tuple[Reason, ...] = ("first", "retry", "paused", "requeue")


def _suffix(reason: Reason, attempt: int) -> str:
    if reason == "first":
        return ""
    if reason == "retry":
        return f"_a{attempt}"
    if reason == "paused":
        return f"_p{uuid.uuid4().hex[:8]}"
    return f"_r{int(time.time() * 1000)}"


def _queue(store: Store, name: str) -> Queue:
    return Queue(name, connection=store.redis, serializer=JSONSerializer)


def enqueue(
    store: Store,
    settings: Settings,
    queue_name: str,
    job_id: str,
    tasks: Iterable[int],
    reason: Reason = "first",
    attempt: int = 0,
) -> None:
    """Put tasks of a job on a lane queue; ``reason`` keeps RQ job ids unique when a task is queued again."""
    # 1 s, then 2 s between tries (RQ's scheduler wakes once a second, so finer steps would not hold)
    retry = Retry(max=settings.task_retries, interval=[1, 2]) if settings.task_retries else None
    suffix = _suffix(reason, attempt)
    queue = _queue(store, queue_name)
    with store.redis.pipeline() as pipe:
        queue.enqueue_many(
            [
                Queue.prepare_data(
                    TASK_FUNCTION,
                    args=(job_id, t),
                    job_id=store.keys.rq_job_id(job_id, t) + suffix,
                    timeout=settings.task_timeout_s,
                    result_ttl=0,
                    failure_ttl=settings.result_ttl_s,
                    retry=retry,
                    on_failure=Callback(FAILURE_CALLBACK),
                )
                for t in tasks
            ],
            pipeline=pipe,
        )
        pipe.execute()


def remove(store: Store, queue_name: str, job_id: str, tasks: Iterable[int]) -> None:
    """Take a job's queued tasks off its queue (first enqueues; workers skip any other copy)."""
    queue = _queue(store, queue_name)
    for t in tasks:
        queue.remove(store.keys.rq_job_id(job_id, t))


def depth(store: Store, backend: str) -> dict[str, int]:
    """Queued tasks per lane of a backend."""
    return {lane: int(_queue(store, store.keys.queue(backend, lane)).count) for lane in LANES}


def workers_on(store: Store, backend: str) -> int:
    return int(Worker.count(connection=store.redis, queue=_queue(store, store.keys.queue(backend, "normal"))))


def worker_count(store: Store) -> int:
    return int(Worker.count(connection=store.redis))


def is_abandoned(exc_type: Any) -> bool:
    """Whether RQ failed a task because its worker vanished (the lease reaper re-queues those)."""
    return exc_type is not None and issubclass(exc_type, AbandonedJobError)


def make_worker(store: Store, backends: list[str], name: str | None = None) -> SimpleWorker:
    """A warm, non-forking RQ worker on the backends' lane queues, high lane first."""
    queues = [_queue(store, store.keys.queue(b, lane)) for lane in LANES for b in backends]
    # Short maintenance and TTL so RQ's own recovery (tasks stuck between dequeue and start, when
    # a worker dies in that window, which our leases cannot see) runs within a minute or two.
    return SimpleWorker(
        queues, connection=store.redis, serializer=JSONSerializer, name=name, maintenance_interval=15, worker_ttl=45
    )


def stop_requested(worker: SimpleWorker) -> bool:
    """Whether the worker's loop ended because it was asked to stop (not because Redis went away)."""
    return bool(worker._stop_requested or worker._shutdown_requested_date is not None)


def workers(store: Store) -> list[dict[str, Any]]:
    """Every registered worker: name, host, the backends it serves, state, current task, counts."""
    rows = []
    for w in sorted(Worker.all(connection=store.redis, serializer=JSONSerializer), key=lambda w: w.name):
        rows.append(
            {
                "name": w.name,
                "host": w.hostname,
                "backends": sorted({store.keys.backend_of_queue(q.name) for q in w.queues}),
                "state": w.state,
                "task": w.get_current_job_id() or "",
                "heartbeat": w.last_heartbeat,
                "done": w.successful_job_count,
                "failed": w.failed_job_count,
            }
        )
    return rows


def failures(store: Store, queue_name: str, job_id: str) -> list[dict[str, str]]:
    """The failed tasks of a job still in RQ's failed registry, with their tracebacks."""
    registry = FailedJobRegistry(queue_name, connection=store.redis, serializer=JSONSerializer)
    prefix = store.keys.rq_job_prefix(job_id)
    out = []
    for rq_id in registry.get_job_ids():
        if rq_id.startswith(prefix):
            rq_job = RQJob.fetch(rq_id, connection=store.redis, serializer=JSONSerializer)
            out.append({"id": rq_id, "traceback": rq_job.exc_info or ""})
    return out


def drain(store: Store, worker_name: str) -> None:
    """RQ's warm shutdown: the worker finishes its task, then exits."""
    send_shutdown_command(store.redis, worker_name)

"""Putting tasks on RQ: ids only, JSON serializer, retries, timeouts. Used by the API
(submit, re-queue of abandoned tasks) and by workers (tasks put back while a backend is paused)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timezone

from rq import Queue
from rq.job import Callback, Retry
from rq.serializers import JSONSerializer

from .settings import Settings
from .store import LANES, Store

TASK_FUNCTION = "worker.runner.run_task"
FAILURE_CALLBACK = "worker.runner.on_task_failed"


def enqueue_tasks(
    store: Store, settings: Settings, queue_name: str, job_id: str, tasks: Iterable[int], suffix: str = ""
) -> None:
    """Enqueue tasks of a job; ``suffix`` keeps RQ job ids unique when a task is queued again."""
    # 1 s, then 2 s between tries (RQ's scheduler wakes once a second, so finer steps would not hold)
    retry = Retry(max=settings.task_retries, interval=[1, 2]) if settings.task_retries else None
    queue = Queue(queue_name, connection=store.redis, serializer=JSONSerializer)
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


# -- what the dashboard reads and does through RQ (appended) ----------------------------


@dataclass(frozen=True)
class WorkerInfo:
    """A worker as the dashboard shows it."""

    name: str
    host: str
    backends: tuple[str, ...]
    state: str
    task: str  # "job <id> task <n>", or "" when idle
    heartbeat: float | None  # UNIX time of its last heartbeat
    done: int
    failed: int


def workers(store: Store, backends: Iterable[str]) -> list[WorkerInfo]:
    """Every registered worker, by name, with the backends (not RQ queues) it serves."""
    from rq import Worker

    backend_of = {store.keys.queue(b, lane): b for b in backends for lane in LANES}
    out = []
    for w in Worker.all(connection=store.redis, serializer=JSONSerializer):
        current = w.get_current_job_id() or ""
        job_id, _, rest = current.partition("_t")
        task = f"job {job_id} task {rest.split('_')[0]}" if rest else current
        beat = w.last_heartbeat
        out.append(
            WorkerInfo(
                name=w.name,
                host=w.hostname or "",
                backends=tuple(sorted({backend_of.get(q.name, q.name) for q in w.queues})),
                state=str(w.state),
                task=task,
                heartbeat=beat.replace(tzinfo=timezone.utc).timestamp() if beat else None,
                done=w.successful_job_count,
                failed=w.failed_job_count,
            )
        )
    return sorted(out, key=lambda w: w.name)


def drain_worker(store: Store, name: str) -> bool:
    """RQ's warm shutdown: the worker finishes its task, then exits. False if no such worker."""
    from rq import Worker
    from rq.command import send_shutdown_command

    if Worker.find_by_key(Worker.redis_worker_namespace_prefix + name, connection=store.redis) is None:
        return False
    send_shutdown_command(store.redis, name)
    return True

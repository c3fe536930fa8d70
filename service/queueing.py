"""Putting tasks on RQ: ids only, JSON serializer, retries, timeouts. Used by the API
(submit, re-queue of abandoned tasks) and by workers (tasks put back while a backend is paused)."""

from __future__ import annotations

from collections.abc import Iterable

from rq import Queue
from rq.job import Callback, Retry
from rq.serializers import JSONSerializer

from .settings import Settings
from .store import Store

TASK_FUNCTION = "worker.runner.run_task"
FAILURE_CALLBACK = "worker.runner.on_task_failed"


def enqueue_tasks(
    store: Store, settings: Settings, queue_name: str, job_id: str, tasks: Iterable[int], suffix: str = ""
) -> None:
    """Enqueue tasks of a job; ``suffix`` keeps RQ job ids unique when a task is queued again."""
    # 1 s, then 2 s between tries (RQ's scheduler wakes once a second, so finer steps would not hold)
    retry = Retry(max=settings.task_retries, interval=[1, 2]) if settings.task_retries else None
    queue = Queue(queue_name, connection=store.redis, serializer=JSONSerializer)
    tasks = list(tasks)
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
        store.ring(pipe, queue_name, len(tasks))  # wakes idle workers (see Store.take_task)
        pipe.execute()

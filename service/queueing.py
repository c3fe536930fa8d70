"""The one boundary with RQ: every RQ call of qfleet, API and worker side, is here.

RQ jobs carry ids only (JSON serializer); payloads live under our own keys (service/store/keys.py).
The RQ job id of a task is ``Keys.rq_job_id(job, task)`` plus a suffix that says why it was
queued again (:data:`REASONS`), minted only here.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, Protocol

from rq import Queue, SimpleWorker, Worker
from rq.command import send_shutdown_command
from rq.exceptions import AbandonedJobError, DequeueTimeout
from rq.executions import Execution
from rq.job import Callback, Retry, _job_stack
from rq.job import Job as RQJob
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import now
from rq.worker import WorkerStatus

from .settings import Settings
from .store import LANES, REDIS_OUTAGES, Store

# The worker-side functions RQ runs, by dotted path (RQ imports them in the worker process).
# tests/unit/test_queueing.py checks that they resolve.
TASK_FUNCTION = "qfleet_server.worker.runner.run_task"
FAILURE_CALLBACK = "qfleet_server.worker.runner.on_task_failed"

# How long RQ keeps a finished task's own record (its job hash and result entry: a few hundred
# bytes, ids only). Not 0: RQ then deletes the record on the worker's critical path, a dozen
# Redis round trips one after another (its registries and executions) where a TTL costs none.
RQ_RECORD_TTL_S = 10

# A worker's heartbeat is not written again within this many seconds of the last one (RQ would
# write one three times between two tasks; the worker's key lives for its worker_ttl + 60 s).
HEARTBEAT_GAP_S = 1.0

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
    pipe: Any = None,
    tenant: str | None = None,
    seconds: Sequence[float] | None = None,
) -> None:
    """Put tasks of a job on a lane queue; ``reason`` keeps RQ job ids unique when a task is queued again.
    Within ``pipe`` (a transaction the caller executes) if given, else in one of its own.

    Each task also joins its tenant's sub-queue of the lane with its estimated seconds (``seconds``,
    by task index, else read from the job's spec), which is how workers share a lane by cost."""
    # 1 s, then 2 s between tries (RQ's scheduler wakes once a second, so finer steps would not hold)
    retry = Retry(max=settings.task_retries, interval=[1, 2]) if settings.task_retries else None
    suffix = _suffix(reason, attempt)
    queue = _queue(store, queue_name)
    tasks = list(tasks)
    if tenant is None or seconds is None:
        tenant, seconds = _share_of(store, job_id, tenant)
    ids = [store.keys.rq_job_id(job_id, t) + suffix for t in tasks]
    own = pipe is None
    pipe = store.redis.pipeline() if own else pipe
    try:
        queue.enqueue_many(
            [
                Queue.prepare_data(
                    TASK_FUNCTION,
                    args=(job_id, t),
                    job_id=rq_id,
                    timeout=settings.task_timeout_s,
                    result_ttl=RQ_RECORD_TTL_S,
                    failure_ttl=settings.result_ttl_s,
                    retry=retry,
                    on_failure=Callback(FAILURE_CALLBACK),
                )
                for t, rq_id in zip(tasks, ids)
            ],
            pipeline=pipe,
        )
        store.fair_put(
            pipe, queue_name, tenant, [(i, seconds[t] if t < len(seconds) else 0.0) for t, i in zip(tasks, ids)]
        )
        store.ring(pipe, queue_name, len(tasks))  # wakes idle workers (see LeasingQueue)
        if own:
            pipe.execute()
    finally:
        if own:
            pipe.reset()


def _share_of(store: Store, job_id: str, tenant: str | None) -> tuple[str, list[float]]:
    """(tenant, estimated seconds by task) of a stored job, for a task queued again."""
    if tenant is None:
        tenant = store.job_fields(job_id, ["tenant"])[0] or ""
    spec = store.spec(job_id)
    return tenant, [spec.task_seconds(t) for t in range(len(spec.tasks))] if spec is not None else []


def remove(store: Store, queue_name: str, job_id: str, tasks: Iterable[int]) -> None:
    """Take a job's queued tasks off its queue (first enqueues; workers skip any other copy)."""
    queue = _queue(store, queue_name)
    ids = [store.keys.rq_job_id(job_id, t) for t in tasks]
    for rq_id in ids:
        queue.remove(rq_id)
    store.fair_forget(queue_name, ids)


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


class LeaseHolder(Protocol):
    """Where a worker keeps the lease of the task it holds (the Runner); renewed while set."""

    lease: str | None

    def begin_with(self, pipe: Any, job_id: str, task: int) -> Callable[[Any], None]:
        """Queue the task's first step (its reads, the job marked running) in the transaction
        that prepares it; returns what takes that command's reply (or its error)."""
        ...


class LeasingQueue(Queue):
    """RQ's queue, but a worker takes a task and its lease in one Redis script (Store.take_task).

    RQ's own BLPOP leaves a popped task in no list and no registry until the worker records it
    (and RQ's abandoned-job check for a non-forking worker waits out the task timeout): a worker
    killed in between lost the task. Idle workers block on the queues' bells instead, and look
    again at least once a second for tasks RQ itself re-queued (retries)."""

    store: Store
    holder: LeaseHolder
    holder_name: str
    lease_s: float

    @classmethod
    def dequeue_any(  # type: ignore[override]
        cls,
        queues: list[Queue],
        timeout: int | None,
        connection: Any = None,
        job_class: Any = None,
        serializer: Any = None,
        death_penalty_class: Any = None,
    ) -> tuple[RQJob, Queue] | None:
        # a lease left by a take that never reached the task function is left to lapse (and be reaped)
        cls.holder.lease = None
        keys, names = [q.key for q in queues], [q.name for q in queues]
        prefix = queues[0].job_class.redis_job_namespace_prefix
        while True:
            taken = cls.store.take_task(keys, names, cls.holder_name, cls.lease_s, prefix)
            if taken is None:
                if timeout is None:
                    return None
                if not cls.store.wait_bell(names, min(timeout, 1)):
                    raise DequeueTimeout(timeout, keys)
                continue
            queue_key, rq_id, cls.holder.lease, raw = taken
            queue = next(q for q in queues if q.key == queue_key)
            if raw:  # RQ's Queue.fetch_job, from the hash the take brought
                rq_job = queue.job_class(rq_id, connection=queue.connection, serializer=queue.serializer)
                rq_job.restore(raw)
                if rq_job.origin == queue.name:
                    return rq_job, queue
            cls.store.drop_lease(cls.holder.lease)  # deleted while queued (expired): nothing to run
            cls.holder.lease = None


class TaskJob(RQJob):
    """RQ's job, whose key RQ's worker persists in the transaction that prepares it (TaskWorker)
    rather than with a command of its own as it starts the function."""

    prepared = False

    def perform(self) -> Any:
        if not self.prepared:
            return super().perform()
        # RQ's Job.perform without its PERSIST (sent already): the job on RQ's stack while it runs
        _job_stack.push(self)
        try:
            self._result = self._execute()
        finally:
            assert self is _job_stack.pop()
        return self._result


class TaskWorker(SimpleWorker):
    """RQ's non-forking worker, its writes before a task in one transaction.

    RQ sends them as four round trips one after another between taking a task and running it
    (its heartbeat, ``prepare_execution``, ``prepare_job_execution`` and the job's PERSIST),
    with the same writes; here :meth:`prepare_execution` sends them all at once, the heartbeat
    RQ sends right after the take goes with them, and so does the task's own first step (its
    ``holder``'s ``begin_with``). A heartbeat without a pipeline at hand sends its two writes
    in one round trip, with the idle state RQ sets just before it (after a task, and before
    each wait for one), which RQ sends as a round trip of its own.

    After a task that succeeded, RQ's four round trips (the task's heartbeat, a WATCH and read
    of its dependents, its finishing transaction) are one transaction, which also sets the
    worker idle and beats its heart: qfleet's tasks have no dependents (:func:`enqueue` queues
    none) and never repeat. RQ's further heartbeats, two more before its next wait for a task,
    are not sent again within :data:`HEARTBEAT_GAP_S` of the last (its key lives for minutes)."""

    _took = False  # a task was just taken: RQ's next heartbeat goes with the task's preparation
    _prepared: str | None = None  # the RQ job prepare_execution prepared fully
    holder: LeaseHolder | None = None  # its first step goes in the same transaction
    _idle = False  # RQ set the worker idle: the state is written with the next heartbeat
    _written_state: str | None = None  # the state last written
    _beat_at = float("-inf")  # time.monotonic() of the last heartbeat written
    _ended: RQJob | None = None  # a prepared task that ended: its heartbeat goes with its outcome

    def set_state(self, state: str, pipeline: Any = None) -> None:
        if pipeline is None and state == WorkerStatus.IDLE:
            # as RQ's set_state keeps it; written with the next heartbeat, unless it is already
            self._state, self._idle = state, self._written_state != state
            return
        self._idle = False  # a later state wins
        super().set_state(state, pipeline)
        self._written_state = state

    def reorder_queues(self, reference_queue: Queue) -> None:
        self._took = True  # RQ calls this right after a take, before its heartbeat
        super().reorder_queues(reference_queue)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            self._beat_at = time.monotonic()
            return
        if self._took:  # the one right after a take: prepare_execution, next, sends it in its transaction
            self._took = False
            return
        if not self._idle and timeout is None and time.monotonic() - self._beat_at < HEARTBEAT_GAP_S:
            return  # one was written just now
        with self.connection.pipeline() as pipe:
            if self._idle:
                self.set_state(WorkerStatus.IDLE, pipe)
            self.heartbeat(timeout, pipe)
            pipe.execute()

    def handle_execution_ended(self, job: RQJob, queue: Queue, heartbeat_ttl: int) -> None:
        if not (isinstance(job, TaskJob) and job.prepared):
            super().handle_execution_ended(job, queue, heartbeat_ttl)
            return
        job.ended_at = now()
        self._ended = job  # its heartbeat, RQ's next write, goes with the outcome

    def _ended_beat(self, job: RQJob, pipeline: Any = None) -> None:
        """The ended task's heartbeat that RQ's ``handle_execution_ended`` writes, if it was held."""
        if self._ended is job:
            self._ended = None
            job.heartbeat(now(), 0, pipeline=pipeline)  # (RQ's job heartbeat uses no TTL)

    def handle_job_success(self, job: RQJob, queue: Queue, started_job_registry: Any) -> None:
        """RQ's ``handle_job_success`` for a task, with the task's heartbeat before it and the
        worker idle after it, as one transaction. RQ's own (for other jobs) watches the job's
        dependents and reads them first, to queue them."""
        if self._ended is not job or job.func_name != TASK_FUNCTION or job.repeats_left:
            self._ended_beat(job)
            super().handle_job_success(job, queue, started_job_registry)
            return
        assert job.started_at and job.ended_at
        with self.connection.pipeline() as pipe:
            self._ended_beat(job, pipe)
            self.increment_successful_job_count(pipeline=pipe)
            self.increment_total_working_time(job.ended_at - job.started_at, pipe)
            result_ttl = job.get_result_ttl(self.default_result_ttl)
            if result_ttl != 0:
                execution = self.execution
                job._handle_success(
                    result_ttl,
                    pipeline=pipe,
                    worker_name=self.name,
                    execution_id=execution.id if execution else None,
                    execution_started_at=execution.created_at if execution else None,
                    execution_ended_at=job.ended_at,
                )
            job.cleanup(result_ttl, pipeline=pipe, remove_from_queue=False)
            self.cleanup_execution(job, pipeline=pipe)
            self.set_state(WorkerStatus.IDLE, pipe)  # what RQ sets next, and its next heartbeat
            self.heartbeat(None, pipe)
            pipe.execute()

    def handle_job_failure(
        self, job: RQJob, queue: Queue, started_job_registry: Any = None, exc_string: str = ""
    ) -> None:
        self._ended_beat(job)
        super().handle_job_failure(job, queue, started_job_registry, exc_string)

    def prepare_execution(self, job: RQJob) -> Execution:
        """RQ's ``prepare_execution`` and ``prepare_job_execution`` (the execution record, the
        worker busy on the job, both heartbeats, the job started) and the job's PERSIST, in one
        transaction."""
        self._took = False  # its heartbeat is in here, whether RQ asked for one since the take or not
        ttl = self.get_heartbeat_ttl(job)
        with self.connection.pipeline() as pipe:
            self.execution = Execution.create(job, ttl, pipeline=pipe, worker_name=self.name)
            self.set_state(WorkerStatus.BUSY, pipeline=pipe)
            self.set_current_job_id(job.id, pipeline=pipe)
            self.set_current_job_working_time(0, pipeline=pipe)
            self.heartbeat(ttl, pipeline=pipe)
            job.heartbeat(now(), ttl, pipeline=pipe)
            job.prepare_for_execution(self.name, pipeline=pipe)
            if len(self.queues) == 1:  # as RQ's perform_job asks of prepare_job_execution
                pipe.lrem(Queue(job.origin, connection=self.connection).intermediate_queue_key, 1, job.id)
            pipe.persist(job.key)
            took, at = None, len(pipe)
            if self.holder is not None and job.func_name == TASK_FUNCTION:
                took = self.holder.begin_with(pipe, *job.args)
                took = took if len(pipe) == at + 1 else None  # it queued its one command (or none)
            replies = pipe.execute(raise_on_error=False)
        for i, reply in enumerate(replies):
            if isinstance(reply, Exception) and (took is None or i != at):
                raise reply  # as RQ's own execute would
        if took is not None:
            took(replies[at])
        if isinstance(job, TaskJob):
            job.prepared = True
        self._prepared = job.id
        return self.execution

    def prepare_job_execution(self, job: RQJob, remove_from_intermediate_queue: bool = False) -> None:
        if self._prepared != job.id:
            super().prepare_job_execution(job, remove_from_intermediate_queue)
            return
        self._prepared = None  # done by prepare_execution; RQ's procline as it would set it
        self.procline(f"Processing {job.func_name} from {job.origin} since {time.time()}")


def make_worker(
    store: Store, backends: list[str], name: str, holder: LeaseHolder | None = None, lease_s: float = 5.0
) -> TaskWorker:
    """A warm, non-forking RQ worker on the backends' lane queues, high lane first. With a
    ``holder``, each task is leased as it is taken (LeasingQueue), under the worker's name."""
    queue_class: type[Queue] = Queue
    if holder is not None:
        queue_class = type(
            "LeasingQueue", (LeasingQueue,), {"store": store, "holder": holder, "holder_name": name, "lease_s": lease_s}
        )
    queues = [
        queue_class(store.keys.queue(b, lane), connection=store.redis, serializer=JSONSerializer, job_class=TaskJob)
        for lane in LANES
        for b in backends
    ]
    worker = TaskWorker(
        queues,
        connection=store.redis,
        serializer=JSONSerializer,
        job_class=TaskJob,
        name=name,
        queue_class=queue_class,
        maintenance_interval=15,
        worker_ttl=45,
    )
    worker.holder = holder
    return worker


def local_workers(store: Store, host: str) -> list[Any]:
    """Workers registered from this host (container)."""
    return [w for w in Worker.all(connection=store.redis) if w.hostname == host]


def work(worker: SimpleWorker, burst: bool = False) -> None:
    """Run RQ's worker loop until it ends: stopped, drained, or Redis lost. RQ's loop ends on an
    error it does not handle (a Redis command failing mid-task, after redis-py's own retries)
    and then reports its death to Redis, which raises again while Redis is away; that second
    error is swallowed here, so the caller can wait for Redis and start a fresh loop."""
    try:
        worker.work(burst=burst, with_scheduler=True, logging_level="WARNING")
    except REDIS_OUTAGES:
        with contextlib.suppress(Exception):  # the command channel's thread, left by the failed teardown
            worker.pubsub_thread and worker.pubsub_thread.stop()


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

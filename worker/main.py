"""The worker process: warm engines, then take tasks from RQ until stopped."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time


def run_worker(
    settings: object, backends: list[str] | None = None, burst: bool = False, name: str | None = None
) -> None:
    """Start a non-forking RQ worker on the backends' queues (blocks until stopped).

    Engine thread counts are fixed before the engines are imported, so each worker uses
    ``settings.worker_threads`` cores and several workers do not oversubscribe the host.
    Queues are read high lane first. If the RQ loop ends on a lost Redis connection, the
    worker waits for Redis and starts a fresh loop with the same warm engines.
    """
    from service.settings import Settings

    assert isinstance(settings, Settings)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(settings.worker_threads)

    # numpy's BLAS and Lightning's OpenMP size their thread pools when first imported: only now
    from rq import Queue, SimpleWorker
    from rq.exceptions import DequeueTimeout
    from rq.serializers import JSONSerializer

    from service.backends import served_backends
    from service.store import LANES, Store, connect

    from . import runner as runner_module

    log = logging.getLogger("qfleet.worker")
    backends = backends or served_backends(settings)
    redis = connect(settings)
    store = Store(redis, settings.key_prefix, settings.result_ttl_s)
    runner = runner_module.Runner(settings, store)
    runner.warm_up()
    runner_module.install(runner)
    threading.Thread(target=runner.renew_leases_forever, name="lease-renewal", daemon=True).start()
    lease_s = settings.lease_s

    class LeasingQueue(Queue):
        """RQ's queue, but a task is leased by the same Redis script that pops it (Store.take_task):
        RQ's own BLPOP leaves a popped task in no list and no registry until the worker records
        it, so a worker killed in between lost the task for good. Idle workers block on the
        queues' bells, and look again at least once a second for tasks RQ itself re-queued."""

        @classmethod
        def dequeue_any(  # type: ignore[override]
            cls,
            queues: list[Queue],
            timeout: int | None,
            connection: object = None,
            job_class: object = None,
            serializer: object = None,
            death_penalty_class: object = None,
        ) -> tuple[object, Queue] | None:
            # a lease left from a take that never ran (the loop broke before run_task) is left to lapse
            runner.lease = None
            keys, names = [q.key for q in queues], [q.name for q in queues]
            while True:
                taken = store.take_task(keys, names, holder, lease_s)
                if taken is None:
                    if timeout is None:
                        return None
                    if not store.wait_bell(names, min(timeout, 1)):
                        raise DequeueTimeout(timeout, keys)
                    continue
                queue_key, rq_id, runner.lease = taken
                queue = next(q for q in queues if q.key == queue_key)
                job = queue.fetch_job(rq_id)
                if job is not None:
                    return job, queue
                store.drop_lease(runner.lease)  # deleted while queued (expired): nothing to run
                runner.lease = None

    queues = [
        LeasingQueue(store.keys.queue(b, lane), connection=redis, serializer=JSONSerializer)
        for lane in LANES
        for b in backends
    ]
    while True:
        holder = name = name or f"{socket.gethostname()}.{os.getpid()}"
        worker = SimpleWorker(
            queues,
            connection=redis,
            serializer=JSONSerializer,
            name=name,
            queue_class=LeasingQueue,
            maintenance_interval=15,
            worker_ttl=45,
        )
        log.info("worker %s ready on %s", worker.name, ", ".join(q.name for q in queues))
        worker.work(burst=burst, with_scheduler=True, logging_level="WARNING")
        if burst or worker._stop_requested or worker._shutdown_requested_date is not None:  # asked to stop
            return
        log.warning("worker loop ended (Redis lost?); starting again once Redis answers")
        while True:
            try:
                redis.ping()
                break
            except Exception:
                time.sleep(0.5)
        name = f"{socket.gethostname()}.{os.getpid()}.{int(time.time())}"  # the old name may still be registered


def local_worker_problem(settings: object, max_age_s: float = 60.0) -> str | None:
    """Why no worker of this host (container) is alive, or None when one is: registered in RQ, its
    process running here, and either heartbeating (an idle worker does every second) or holding
    an unexpired lease (a busy one renews it every lease_s / 4). For compose healthchecks."""
    from rq import Worker

    from service.store import Store, connect

    redis = connect(settings)
    store = Store(redis, getattr(settings, "key_prefix", "qfleet"))
    host = socket.gethostname()
    mine = [w for w in Worker.all(connection=redis) if w.hostname == host and w.pid and _running(w.pid)]
    if not mine:
        return f"no worker of host {host} is registered"
    now = time.time()
    leases = store.leases()
    for w in mine:
        beat = w.last_heartbeat.timestamp() if w.last_heartbeat else 0.0
        if now - beat < max_age_s or any(m.endswith(f"|{w.name}") and d > now for m, d in leases.items()):
            return None
    return f"worker(s) {', '.join(w.name for w in mine)} of host {host} neither heartbeat nor hold a live lease"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

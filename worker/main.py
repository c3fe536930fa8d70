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
    from qfleet_server.settings import Settings

    assert isinstance(settings, Settings)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(settings.worker_threads)

    # numpy's BLAS and Lightning's OpenMP size their thread pools when first imported: only now
    from qfleet_server import queueing
    from qfleet_server.backends import served_backends
    from qfleet_server.store import REDIS_OUTAGES, Store, connect

    from . import runner as runner_module

    log = logging.getLogger("qfleet.worker")
    backends = backends or served_backends(settings)
    redis = connect(settings)
    store = Store(redis, settings.key_prefix, settings.result_ttl_s)
    runner = runner_module.Runner(settings, store)
    runner.warm_up()
    runner_module.install(runner)
    threading.Thread(target=runner.renew_leases_forever, name="lease-renewal", daemon=True).start()
    while True:
        name = name or f"{socket.gethostname()}.{os.getpid()}"
        worker = None
        try:
            worker = queueing.make_worker(store, backends, name, holder=runner, lease_s=settings.lease_s)
            log.info("worker %s ready on %s", worker.name, ", ".join(worker.queue_names()))
            queueing.work(worker, burst=burst)
        except REDIS_OUTAGES as exc:  # while registering: Redis is away
            log.warning("could not start the worker loop: %s", exc)
        if burst or (worker is not None and queueing.stop_requested(worker)):
            return
        log.warning("worker loop ended (Redis lost?); starting again once Redis answers")
        while True:
            try:
                redis.ping()
                break
            except Exception:
                time.sleep(0.5)
        name = f"{socket.gethostname()}.{os.getpid()}.{int(time.time())}"  # the old one may still be registered


def local_worker_problem(settings: object, max_age_s: float = 60.0) -> str | None:
    """Why no worker of this host (container) is alive, or None when one is: registered in RQ, its
    process running here, and either heartbeating (an idle worker does every second) or holding
    an unexpired lease (a busy one renews it every lease_s / 4). For compose healthchecks."""
    from qfleet_server import queueing
    from qfleet_server.store import Store, connect

    store = Store(connect(settings), getattr(settings, "key_prefix", "qfleet"))
    host = socket.gethostname()
    mine = [w for w in queueing.local_workers(store, host) if w.pid and pid_running(w.pid)]
    if not mine:
        return f"no worker of host {host} is registered"
    now = time.time()
    leases = store.leases()
    for w in mine:
        beat = w.last_heartbeat.timestamp() if w.last_heartbeat else 0.0
        if now - beat < max_age_s or any(m.endswith(f"|{w.name}") and d > now for m, d in leases.items()):
            return None
    return f"worker(s) {', '.join(w.name for w in mine)} of host {host} neither heartbeat nor hold a live lease"


def pid_running(pid: int) -> bool:
    """Whether a process of this pid runs on this host (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

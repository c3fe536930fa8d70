"""The worker process: warm engines, then take tasks from RQ until stopped."""

from __future__ import annotations

import logging
import os


def run_worker(settings: object, backends: list[str], burst: bool = False, name: str | None = None) -> None:
    """Start a non-forking RQ worker on the backends' queues (blocks until stopped).

    Engine thread counts are fixed before the engines are imported, so each worker uses
    ``settings.worker_threads`` cores and several workers do not oversubscribe the host.
    """
    from service.settings import Settings

    assert isinstance(settings, Settings)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(settings.worker_threads)

    from redis import Redis
    from rq import Queue, SimpleWorker
    from rq.serializers import JSONSerializer

    from service.store import Store

    from . import runner as runner_module

    redis = Redis.from_url(settings.redis_url)
    store = Store(redis, settings.key_prefix, settings.result_ttl_s)
    runner = runner_module.Runner(settings, store)
    runner.warm_up()
    runner_module.install(runner)
    queues = [Queue(store.keys.queue(b), connection=redis, serializer=JSONSerializer) for b in backends]
    worker = SimpleWorker(queues, connection=redis, serializer=JSONSerializer, name=name)
    logging.getLogger("qfleet.worker").info("worker %s ready on %s", worker.name, ", ".join(backends))
    worker.work(burst=burst, with_scheduler=True, logging_level="WARNING")

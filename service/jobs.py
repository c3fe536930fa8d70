"""Submitting, reading and cancelling jobs: what the routes call."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal, get_args

from qfleet.wire import (
    TERMINAL_STATUSES,
    BitArrayData,
    ErrorDetail,
    JobInfo,
    JobList,
    JobRequest,
    JobResultBody,
    JobStatus,
    Progress,
    PubResultBody,
    encode_array,
)

from . import queueing
from .admission import Admission
from .backends import Backend, all_backends
from .errors import Conflict, InvalidRequest, NotFound
from .parsing import shared_pool
from .planner import choose_mode, cost_key, learns_price, plan_job, price_job
from .pubs import CircuitCache, ObservablesCache, ParsedPub, parse_pub
from .result_cache import cacheable, engine_version, job_digest
from .settings import Settings, TenantLimits
from .store import Store, whole
from .store.reads import AsyncReads, DoneNews, ResultParts
from .tasks import JobSpec, assemble, assemble_samples, fill_missing, ready_masks

log = logging.getLogger("qfleet.api")
RECORD_FIELDS = (
    "tenant",
    "status",
    "backend",
    "tasks_total",
    "created_at",
    "started_at",
    "finished_at",
    "error",
    "queue",
    "cache_key",
    "tags",
)
LIST_SCAN = 500  # job records one listing request reads at most, whatever its filters drop


def new_job_id() -> str:
    return "j-" + uuid.uuid4().hex[:20]


@dataclass
class Written:
    """What a submission wrote of the job it queued: with what a one-task job's done event carries
    (its times and result), the whole answer, so the request that waits for it reads nothing back."""

    record: dict[str, str]  # the record's fields as a read gives them, less the spec
    spec: JobSpec
    layout: str | None

    def done(self, news: DoneNews) -> tuple[dict[str, str], ResultParts] | None:
        """The done job's record and result parts from its done event; None for a job of several tasks."""
        if self.record.get("tasks_total") != "1":
            return None
        record = {**self.record, "status": "done", "finished_at": news.finished_at}
        if news.started_at:
            record["started_at"] = news.started_at
        return record, ResultParts(record, None, {0: news.result}, {}, self.layout, parsed=self.spec)


class JobService:
    """The job lifecycle: submit, info, result, cancel, re-queue, and the lease reaper."""

    def __init__(self, settings: Settings, store: Store, reads: AsyncReads | None = None) -> None:
        self.settings = settings
        self.store = store
        self.reads = reads  # the event loop's reads (the app's); None outside an app
        self.backends: dict[str, Backend] = all_backends(settings)
        self.admission = Admission(settings, store, self.backends)
        self.circuits = CircuitCache()
        self.observables = ObservablesCache()
        self.parsers = shared_pool(settings.parsers, settings.parse_timeout_s, settings.parse_memory_bytes)

    def backend(self, name: str) -> Backend:
        return self.admission.backend(name)

    def limits(self, tenant: str) -> TenantLimits:
        return self.admission.limits(tenant)

    def forget_limits(self, tenant: str) -> None:
        self.admission.forget_limits(tenant)

    def _measured_costs(self, pubs: list[ParsedPub], tenant: str, backend: str, noise: bool) -> None:
        """Each device PUB's measured cost per row, where its price is learned (one round trip)."""
        learned = [(p, cost_key(p, choose_mode(p))) for p in pubs if learns_price(p, True, noise)]
        for (pub, _), seconds in zip(learned, self.store.measured_costs(tenant, backend, [k for _, k in learned])):
            pub.measured_row_s = seconds

    def submit(
        self, request: JobRequest, tenant: str, idempotency_key: str | None = None, job_id: str | None = None
    ) -> tuple[JobInfo, float, Written | None]:
        """Admit, parse, price, plan, store and queue a job: parse → admit → plan → store → enqueue.
        Returns its status, its estimated compute seconds (the price) and, for a job it queued,
        what it wrote of it. ``job_id`` (from :func:`new_job_id`) names the job; an idempotent
        retry answers with the earlier job's."""
        admission = self.admission
        limits = admission.limits(tenant)
        job_id = job_id or new_job_id()
        # one round trip: the rate, the work in flight, and the idempotency key claimed for this job
        reads = admission.check_rate(tenant, limits, job_id, idempotency_key)
        backend = admission.check_request(request, limits)
        memo = self.observables.memo()  # PUBs (and jobs) that share observables share their check
        pubs = [
            parse_pub(i, p, request, backend, self.settings, self.circuits, self.parsers, tenant, memo)
            for i, p in enumerate(request.pubs)
        ]
        options = request.options
        noise = True if options.noise is None else options.noise
        if backend.is_device:
            self._measured_costs(pubs, tenant, backend.name, noise)
        price = price_job(pubs, backend.is_device, noise)
        admission.check_price(price, limits, backend)
        plan = plan_job(
            pubs,
            self.settings.task_target_s * backend.task_scale,
            backend.is_device,
            seed=options.seed,
            noise=noise,
            priority=options.priority,
            cache=options.cache is not False and self.settings.result_cache_ttl_s > 0,
            workers=admission.workers(backend),
            min_task_s=self.settings.task_min_s * backend.task_scale,
        )
        if request.layout is not None:
            admission.check_layout(request.layout, [p.shape for p in pubs])
            plan.data["layout"] = json.dumps(request.layout, separators=(",", ":")).encode()
        admission.check_inflight(limits, len(plan.tasks), reads)
        digest = self._cache_key(plan.spec, plan.data, tenant, backend, price.result_bytes)
        entry = self.store.cached_job_entry(tenant, digest) if digest else {}
        if idempotency_key and not reads.claimed:
            existing = self.store.claim_idempotency(tenant, idempotency_key, job_id)
            if existing is not None:
                return self.info(existing, tenant), price.seconds, None
        queue_name = self.store.keys.queue(backend.name, admission.lane(options.priority, price))
        cached = whole(entry, len(plan.tasks)) if digest else None
        # the job and its tasks land in one transaction: a crash (API or Redis) between the two
        # would leave a job that a retried submission (same Idempotency-Key) finds but nothing runs
        with self.store.transaction() as pipe:
            record = self.store.create_job(
                job_id,
                tenant,
                backend.name,
                plan.spec,
                plan.data,
                len(plan.tasks),
                queue_name,
                shots=price.shots,
                pipe=pipe,
                tags=request.tags,
            )
            if cached is not None:  # every result is in the cache: done now, nothing queued
                self.store.serve_cached_job(job_id, cached, pipe)
            else:
                if digest:
                    self.store.mark_cacheable(job_id, digest, pipe)
                    self.store.count_job_cache_miss(pipe)
                task_s = [plan.spec.task_seconds(t) for t in range(len(plan.tasks))]
                queueing.enqueue(
                    self.store,
                    self.settings,
                    queue_name,
                    job_id,
                    range(len(plan.tasks)),
                    pipe=pipe,
                    tenant=tenant,
                    seconds=task_s,
                )
            self.store.prune_inflight(pipe, tenant, reads.finished)
            pipe.execute()
        log.info(
            "job submitted",
            extra={"job_id": job_id, "tenant": tenant, "backend": backend.name, "tasks": len(plan.tasks)},
        )
        done = cached is not None
        created = float(record["created_at"])
        info = JobInfo(
            id=job_id,
            status="done" if done else "queued",
            backend=backend.name,
            progress=Progress(tasks_done=len(plan.tasks) if done else 0, tasks_total=len(plan.tasks)),
            created_at=created,
            started_at=created if done else None,
            finished_at=created if done else None,
            tags=request.tags,
        )
        if done:
            return info, price.seconds, None
        if digest:
            record["cache_key"] = digest
        layout = plan.data.get("layout")
        return info, price.seconds, Written(record, plan.spec, None if layout is None else layout.decode())

    def _cache_key(
        self, spec: JobSpec, data: dict[str, bytes], tenant: str, backend: Backend, result_bytes: int
    ) -> str | None:
        """The job's result-cache key; None where it may not be kept whole."""
        settings = self.settings
        is_qpu = backend.is_device and backend.name != "wukong72"
        if not cacheable(spec, is_qpu) or result_bytes > settings.result_cache_max_job_bytes:
            return None
        calibration = (backend.calibration or {}).get("id", "")
        return job_digest(tenant, backend.name, engine_version(f"calibration={calibration}"), spec, data)

    def reap(self) -> int:
        """Re-queue tasks whose worker stopped renewing their lease (killed, stopped, lost); returns how many.

        A lease is taken in the same step that pops a task off its queue, so this covers a
        worker that dies at any instant after the pop, before the task even starts."""
        count = 0
        for lease in self.store.expired_leases():
            claim = self.store.claim_expired(lease, self.settings.lease_s)
            if claim is None:
                continue  # another API process took it
            count += self._requeue_lost(*self.store.lease_task(lease))
            self.store.drop_lease(claim)  # not on an error: then the claim lapses and the task is reaped again
        return count

    def _requeue_lost(self, job_id: str, task: int) -> int:
        record = self.store.job(job_id)
        if record is None or record["status"] in TERMINAL_STATUSES or self.store.task_done(job_id, task):
            return 0  # finished, or its worker died after storing the result
        attempt = self.store.bump_attempts(job_id, task)
        if attempt > self.settings.task_retries:
            message = f"task {task} lost its worker {attempt} times; giving up"
            self.store.record_failure(job_id, task, record["backend"], record["tenant"], "abandoned", message)
            self.store.finish(job_id, "failed", "task_abandoned", message)
            return 0
        log.warning("task %s of job %s lost its worker; re-queued (attempt %d)", task, job_id, attempt + 1)
        queueing.enqueue(self.store, self.settings, record["queue"], job_id, [task], "retry", attempt)
        return 1

    def _record(self, job_id: str, tenant: str) -> dict[str, str]:
        """The job's status fields, not its spec: long-polls and SSE read this at every task event."""
        values = self.store.job_fields(job_id, list(RECORD_FIELDS))
        record = {k: v for k, v in zip(RECORD_FIELDS, values) if v is not None}
        # Another tenant's job answers exactly as an unknown one.
        if record.get("tenant") != tenant:
            raise NotFound(f"no job '{job_id}'", code="job_not_found")
        return record

    def info(self, job_id: str, tenant: str, record: dict[str, str] | None = None, done: int | None = None) -> JobInfo:
        record = record or self._record(job_id, tenant)
        total = int(record["tasks_total"])
        if record["status"] == "done":
            done = total
        elif done is None:
            done = self.store.tasks_done(job_id)
        return _info(job_id, record, done)

    def list_jobs(
        self,
        tenant: str,
        *,
        status: str | None = None,
        backend: str | None = None,
        tags: list[str] | None = None,
        since: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobList:
        """A page of the tenant's jobs, newest first, that match every filter given (tags: ``key:value``)."""
        if status is not None and status not in JOB_STATUSES:
            raise InvalidRequest(
                f"status '{status}' is not one of {', '.join(JOB_STATUSES)}",
                code="invalid_status",
                allowed=list(JOB_STATUSES),
            )
        if backend is not None:
            self.backend(backend)  # unknown_backend, naming the ones there are
        wanted = [_tag_filter(t) for t in tags or []]
        position = _decode_cursor(cursor) if cursor else None
        page: list[JobInfo] = []
        scanned = 0
        exhausted = False
        while len(page) < limit and not exhausted and scanned < LIST_SCAN:
            count = min(max(limit, 50), LIST_SCAN - scanned)
            ids = self.store.tenant_job_ids(tenant, count, position, since)
            exhausted = len(ids) < count
            rows = {
                job_id: (record, done)
                for job_id, record, done in self.store.job_rows([i for i, _ in ids], list(RECORD_FIELDS))
            }
            for job_id, created in ids:
                scanned += 1
                position = (created, job_id)
                if job_id not in rows:
                    continue  # expired
                record, done = rows[job_id]
                clean = {k: v for k, v in record.items() if v is not None}
                if (
                    clean.get("tenant") != tenant
                    or (status is not None and clean.get("status") != status)
                    or (backend is not None and clean.get("backend") != backend)
                ):
                    continue
                job_tags = json.loads(clean.get("tags") or "{}")
                if any(job_tags.get(k) != v for k, v in wanted):
                    continue
                page.append(_info(job_id, clean, done))
                if len(page) == limit:
                    exhausted = exhausted and job_id == ids[-1][0]
                    break
        return JobList(jobs=page, next_cursor=None if exhausted or position is None else _encode_cursor(position))

    def status(self, job_id: str, tenant: str) -> tuple[str, dict[str, str]]:
        record = self._record(job_id, tenant)
        return record["status"], record

    async def poll(self, job_id: str, tenant: str, done_likely: bool) -> tuple[str, dict[str, str], ResultParts | None]:
        """A long-poll's look at a job from the event loop: (status, record, and for a done job
        the parts of its result). ``done_likely`` (its done event came) reads it all in one round trip."""
        assert self.reads is not None, "poll needs the app's event-loop reads"
        parts = None
        if done_likely:
            parts = await self.reads.result_parts(job_id, list(RECORD_FIELDS))
            record = parts.record
        else:
            record = await self.reads.job_fields(job_id, list(RECORD_FIELDS))
        if record.get("tenant") != tenant:  # another tenant's job answers exactly as an unknown one
            raise NotFound(f"no job '{job_id}'", code="job_not_found")
        if record["status"] == "done" and parts is None:
            parts = await self.reads.result_parts(job_id, list(RECORD_FIELDS))
        return record["status"], record, parts if record["status"] == "done" else None

    async def info_async(self, job_id: str, tenant: str, record: dict[str, str]) -> JobInfo:
        assert self.reads is not None
        done = None if record["status"] == "done" else await self.reads.tasks_done(job_id)
        return self.info(job_id, tenant, record, done)

    def result(
        self, job_id: str, record: dict[str, str], parts: ResultParts | None = None, partial: bool = False
    ) -> JobResultBody:
        """The job's results, from ``parts`` when read already (:meth:`poll`), else from the store;
        with ``partial``, those of its finished tasks (NaN elsewhere) and a mask per PUB."""
        if parts is not None and (parts.parsed is not None or parts.spec is not None):
            spec = parts.parsed if parts.parsed is not None else JobSpec.from_json(parts.spec or "")
            slices, task_meta, layout = parts.results, parts.meta, parts.layout
        else:
            loaded = self.store.spec(job_id)
            assert loaded is not None, "a job has its spec"
            spec, slices, task_meta = loaded, self.store.results(job_id), self.store.task_meta(job_id)
            (raw_layout,) = self.store.data(job_id, ["layout"])
            layout = None if raw_layout is None else raw_layout.decode()
        finished = len(slices)
        masks = ready_masks(spec, set(slices)) if partial else None
        if partial:
            slices = fill_missing(spec, slices)
        if spec.pubs and spec.pubs[0].primitive == "sampler":
            body = self._sampler_result(job_id, record, spec, slices, task_meta)
        else:
            body = self._estimator_result(job_id, record, spec, slices, task_meta)
        if masks is not None:
            for pub_result, mask in zip(body.results, masks):
                pub_result.mask = encode_array(mask, "uint8")
            body.status = record["status"]  # type: ignore[assignment]
            body.progress = Progress(tasks_done=finished, tasks_total=len(spec.tasks))
        if layout is not None:
            body.metadata["layout"] = json.loads(layout)
        return body

    def keep_cached(self, job_id: str, record: dict[str, str]) -> None:
        """After a done job's first read: keep its whole result under its cache key, for identical jobs
        (the route runs this once the answer is sent, off the request's path)."""
        if not record.get("cache_key") or record.get("status") != "done":
            return
        self.store.cache_job(
            job_id,
            record["tenant"],
            record["cache_key"],
            self.store.results(job_id),
            self.store.task_meta(job_id),
            self.settings.result_cache_ttl_s,
            self.settings.result_cache_max_share,
        )

    def _estimator_result(
        self,
        job_id: str,
        record: dict[str, str],
        spec: JobSpec,
        slices: dict[int, bytes],
        task_meta: dict[int, dict[str, Any]],
    ) -> JobResultBody:
        arrays = assemble(spec, slices)
        engine_meta = _engine_meta(task_meta)
        results = []
        for i, (pub, arr) in enumerate(zip(spec.pubs, arrays)):
            grad = arr["gradient"]
            results.append(
                PubResultBody(
                    evs=encode_array(arr["evs"]),
                    stds=encode_array(arr["stds"]),
                    gradient=None if grad is None else encode_array(grad),
                    metadata={
                        "shape": list(pub.shape),
                        "shots": pub.shots or None,
                        "precision": pub.precision,
                        "num_qubits": pub.num_qubits,
                        "mode": pub.mode,
                        **engine_meta.get(i, {}),
                    },
                )
            )
        return JobResultBody(
            id=job_id,
            status="done",
            results=results,
            metadata={
                "backend": record["backend"],
                "tasks": len(spec.tasks),
                "cost_units": spec.cost_units,
                **_timings(record),
            },
        )

    def _sampler_result(
        self,
        job_id: str,
        record: dict[str, str],
        spec: JobSpec,
        slices: dict[int, bytes],
        task_meta: dict[int, dict[str, Any]],
    ) -> JobResultBody:
        registers = assemble_samples(spec, slices)
        engine_meta = _engine_meta(task_meta)
        results = [
            PubResultBody(
                registers={
                    name: BitArrayData(num_bits=num_bits, bits=encode_array(bits, "uint8"))
                    for name, (bits, num_bits) in regs.items()
                },
                metadata={
                    "shape": list(pub.shape),
                    "shots": pub.shots,
                    "num_qubits": pub.num_qubits,
                    **engine_meta.get(i, {}),
                },
            )
            for i, (pub, regs) in enumerate(zip(spec.pubs, registers))
        ]
        return JobResultBody(
            id=job_id,
            status="done",
            results=results,
            metadata={
                "backend": record["backend"],
                "primitive": "sampler",
                "seed": spec.seed,
                "tasks": len(spec.tasks),
                **_timings(record),
            },
        )

    def cancel_any(self, job_id: str) -> JobInfo:
        """Cancel on an admin's behalf, whoever owns the job."""
        record = self.store.job(job_id)
        if record is None:
            raise NotFound(f"no job '{job_id}'", code="job_not_found")
        return self.cancel(job_id, record["tenant"])

    def cancel(self, job_id: str, tenant: str) -> JobInfo:
        record = self._record(job_id, tenant)
        if record["status"] not in TERMINAL_STATUSES and self.store.finish(job_id, "cancelled"):
            # workers skip any copy left queued: the job is final
            queueing.remove(self.store, record["queue"], job_id, range(int(record["tasks_total"])))
        return self.info(job_id, tenant)

    def queue_depth(self, backend: str) -> dict[str, int]:
        return queueing.depth(self.store, backend)

    def workers_on(self, backend: str) -> int:
        return queueing.workers_on(self.store, backend)

    def estimated_wait(self, backend: str, queued: int, workers: int) -> float:
        """Queued tasks times the backend's recent mean task time, shared among its workers."""
        recent = [t["seconds"] for t in self.store.recent_tasks(500) if t.get("backend") == backend]
        mean = sum(recent) / len(recent) if recent else self.settings.task_target_s
        return round(queued * mean / max(1, workers), 3)

    def worker_count(self) -> int:
        return queueing.worker_count(self.store)

    # -- what the backends route and the dashboard share (appended) ----------------
    def backend_status(self, name: str, paused: set[str] | None = None) -> tuple[BackendStatus, str | None, int]:
        """(status, reason, workers) of a backend, in the one vocabulary the API and the
        dashboard both show: ``online``; ``paused``; ``unavailable`` with the reason (missing
        credentials, or no worker serving it). The first cause found is the one given."""
        backend = self.backends[name]
        workers = self.workers_on(name)
        if backend.unavailable:
            return "unavailable", backend.unavailable, workers
        if name in (self.store.paused() if paused is None else paused):
            return "paused", "paused by an admin; queued tasks wait", workers
        if not workers:
            return "unavailable", "no workers: none serves this backend; its tasks wait in the queue", workers
        return "online", None, workers

    def requeue_can_help(self, job_id: str) -> bool:
        """Whether running a failed job's tasks again can succeed: only if what failed them was
        transient (a lost worker, a timeout, a connection); bad input fails the same way again."""
        record = self.store.job(job_id)
        if record is None or record["status"] != "failed":
            return False
        failures = self.store.job_failures(job_id)
        return bool(failures) and all(f["reason"] in TRANSIENT_FAILURES for f in failures)

    def requeue_failed(self, job_id: str) -> int:
        """Run a failed job's unfinished tasks again (its done tasks stay done); returns how many.
        Refused with 409 where the failure would only repeat."""
        record = self.store.job(job_id)
        if record is None:
            raise NotFound(f"no job '{job_id}'", code="job_not_found")
        if not self.requeue_can_help(job_id):
            raise Conflict(
                f"job '{job_id}' is {record['status']}; a re-queue only helps a job that failed for a transient "
                "reason (a lost worker, a timeout); fix its input and submit it again",
                code="requeue_not_useful",
            )
        if not self.store.reopen(job_id):
            return 0
        done = self.store.done_tasks(job_id)
        missing = [t for t in range(int(record["tasks_total"])) if t not in done]
        queueing.enqueue(self.store, self.settings, record["queue"], job_id, missing, "requeue")
        return len(missing)


BackendStatus = Literal["online", "paused", "unavailable"]

# What fails a task once may pass the next time; anything else (bad input, a bug) repeats.
TRANSIENT_FAILURES = frozenset(
    {"abandoned", "JobTimeoutException", "TimeoutError", "ConnectionError", "MemoryError", "BusyLoadingError"}
)


def _engine_meta(task_meta: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """What ran each PUB (device provenance), from the first task that recorded it."""
    engine_meta: dict[int, dict[str, Any]] = {}
    for _, per_pub in sorted(task_meta.items()):
        for pub_index, meta in per_pub.items():
            engine_meta.setdefault(int(pub_index), meta)
    return engine_meta


JOB_STATUSES: tuple[str, ...] = get_args(JobStatus)


def _info(job_id: str, record: dict[str, str], done: int) -> JobInfo:
    """A job's status from its record's fields and its count of finished tasks."""
    total = int(record["tasks_total"])
    error = json.loads(record["error"]) if record.get("error") else None
    return JobInfo(
        id=job_id,
        status=record["status"],  # type: ignore[arg-type]
        backend=record["backend"],
        progress=Progress(tasks_done=total if record["status"] == "done" else done, tasks_total=total),
        created_at=float(record["created_at"]),
        started_at=float(record["started_at"]) if record.get("started_at") else None,
        finished_at=float(record["finished_at"]) if record.get("finished_at") else None,
        error=ErrorDetail(**error) if error else None,
        tags=json.loads(record.get("tags") or "{}"),
    )


def _tag_filter(text: str) -> tuple[str, str]:
    key, sep, value = text.partition(":")
    if not sep or not key:
        raise InvalidRequest(
            f"tag filter {text[:80]!r} is not key:value (e.g. tag=run:exp7)", code="invalid_tag_filter", tag=text[:80]
        )
    return key, value


def _encode_cursor(position: tuple[float, str]) -> str:
    return base64.urlsafe_b64encode(f"{position[0]!r}|{position[1]}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    """The (created, id) position a cursor of :func:`_encode_cursor` holds; anything else is a 400."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, sep, job_id = raw.partition("|")
        if not sep or not job_id.startswith("j-") or not math.isfinite(float(created)):
            raise ValueError(raw)
        return float(created), job_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest(
            "cursor is not one this service gave: pass `next_cursor` of the previous page as it is, or omit it "
            "for the first page",
            code="invalid_cursor",
        ) from None


def _timings(record: dict[str, str]) -> dict[str, float]:
    """Seconds a job waited in the queue and then ran."""
    created = float(record["created_at"])
    started = float(record.get("started_at") or created)
    finished = float(record.get("finished_at") or time.time())
    return {"queued_s": round(started - created, 6), "running_s": round(finished - started, 6)}

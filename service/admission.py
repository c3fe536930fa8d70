"""Admission: whether a tenant may submit this job now, at what price, and in which lane.

Everything here is cheap and runs before the expensive parts of a submission: the rate and
option checks before any circuit is parsed, the price (service/planner.py ``price_job``)
before any payload is built, stored or queued. Each refusal has its own code.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace

from qfleet.wire import JobRequest

from . import queueing
from .backends import Backend
from .errors import InvalidRequest, RateLimited, Unavailable
from .planner import Price
from .settings import Settings, TenantLimits
from .store import LANES, Reads, Store

_OPTIONS = ("shots", "seed", "noise", "precision")
DEVICE_SLICE_FACTOR = 10.0
MAX_TAGS = 16
MAX_TAG_VALUE = 256
TAG_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,64}")  # no ':', which splits a `tag=key:value` filter


def check_tags(tags: dict[str, str]) -> None:
    """A job's tags are few and short: they live in every job record and every listing."""
    if len(tags) > MAX_TAGS:
        raise InvalidRequest(
            f"{len(tags)} tags; the limit is {MAX_TAGS}: keep the ones you filter by",
            code="too_many_tags",
            limit=MAX_TAGS,
        )
    for key, value in tags.items():
        if not TAG_KEY.fullmatch(key):
            raise InvalidRequest(
                f"tag key {key[:80]!r} is not 1-64 characters of letters, digits, '_', '.' or '-'",
                code="invalid_tag",
                key=key[:80],
            )
        if len(value) > MAX_TAG_VALUE:
            raise InvalidRequest(
                f"tag '{key}' has a value of {len(value)} characters; the limit is {MAX_TAG_VALUE}",
                code="invalid_tag",
                key=key,
                limit=MAX_TAG_VALUE,
            )


class Admission:
    def __init__(self, settings: Settings, store: Store, backends: dict[str, Backend]) -> None:
        self.settings = settings
        self.store = store
        self.backends = backends
        self._limits: dict[str, tuple[float, TenantLimits]] = {}
        self._memory: tuple[float, int, int] = (0.0, 0, 0)
        self._workers: dict[str, tuple[float, int]] = {}

    def cached_limits(self, tenant: str) -> TenantLimits | None:
        """A tenant's limits if read within the last second, else None (no Redis read)."""
        cached = self._limits.get(tenant)
        if cached is not None and time.monotonic() - cached[0] < 1.0:
            return cached[1]
        return None

    def limits(self, tenant: str) -> TenantLimits:
        """A tenant's limits, read at most once a second per API process (an admin's change applies within 1 s)."""
        cached = self.cached_limits(tenant)
        if cached is not None:
            return cached
        limits = TenantLimits.model_validate({**self.settings.tenant.model_dump(), **self.store.tenant_limits(tenant)})
        self._limits[tenant] = (time.monotonic(), limits)
        return limits

    def forget_limits(self, tenant: str) -> None:
        self._limits.pop(tenant, None)

    def workers(self, backend: Backend) -> int:
        """Workers that share a job of this backend's (the planner's ``workers``), counted at most once a
        second per API process. A device runs one batch at a time: its jobs are planned for one worker."""
        if backend.is_device:
            return 1
        cached = self._workers.get(backend.name)
        now = time.monotonic()
        if cached is None or now - cached[0] >= 1.0:
            cached = self._workers[backend.name] = (now, queueing.workers_on(self.store, backend.name))
        return max(1, cached[1])

    def check_rate(
        self, tenant: str, limits: TenantLimits, job_id: str = "", idempotency_key: str | None = None
    ) -> Reads:
        """Refuse a submission over the tenant's rate; returns the tenant's work in flight and
        whether ``idempotency_key`` is now ``job_id``'s (Store.admit: read in the same step)."""
        wait, reads = self.store.admit(tenant, limits.jobs_per_second, limits.burst, job_id, idempotency_key)
        if reads is None:
            raise RateLimited(
                f"more than {limits.jobs_per_second:g} submissions per second (burst {limits.burst}); retry after {wait:.2f} s",
                retry_after=wait,
            )
        return reads

    def backend(self, name: str) -> Backend:
        backend = self.backends.get(name)
        if backend is None:
            raise InvalidRequest(
                f"unknown backend '{name}'; GET /v1/backends lists them ({', '.join(sorted(self.backends))})",
                code="unknown_backend",
                backend=name,
            )
        return backend

    def check_request(self, request: JobRequest, limits: TenantLimits) -> Backend:
        """The backend as this tenant may use it (its width and shots capped by the tenant's limits),
        once the request's shape and options are acceptable there."""
        backend = self.backend(request.backend)
        check_tags(request.tags)
        if len(request.pubs) > self.settings.max_pubs:
            raise InvalidRequest(
                f"{len(request.pubs)} PUBs; the limit is {self.settings.max_pubs}", code="too_many_pubs"
            )
        options = request.options
        for name in _OPTIONS:
            if getattr(options, name) is not None and name not in backend.options:
                raise InvalidRequest(
                    f"backend '{backend.name}' does not accept option '{name}'; it accepts {list(backend.options)}",
                    code="option_not_supported",
                    option=name,
                )
        if backend.unavailable:
            raise InvalidRequest(
                f"backend '{backend.name}' is unavailable: {backend.unavailable}", code="backend_unavailable"
            )
        return replace(
            backend,
            num_qubits=min(backend.num_qubits, limits.max_qubits),
            max_shots=min(backend.max_shots, limits.max_shots),
        )

    def check_layout(self, layout: list[tuple[int, int | None]], shapes: list[tuple[int, ...]]) -> None:
        """A stacking client's layout must point into the job's PUBs: the results are split by it."""
        if len(layout) > self.settings.max_circuits:
            raise InvalidRequest(
                f"layout has {len(layout)} entries; the limit is {self.settings.max_circuits}", code="invalid_layout"
            )
        for n, (pub, row) in enumerate(layout):
            if not 0 <= pub < len(shapes) or (row is not None and not (shapes[pub] and 0 <= row < shapes[pub][0])):
                raise InvalidRequest(
                    f"layout[{n}] = [{pub}, {row}] names no PUB of the job, or no row along its first axis",
                    code="invalid_layout",
                    entry=n,
                )

    def check_price(self, price: Price, limits: TenantLimits, backend: Backend) -> None:
        """Refuse a job whose computed or stored size is over a limit, before anything is built."""
        max_circuits = min(self.settings.max_circuits, limits.max_circuits)
        if price.evaluations > max_circuits:
            raise InvalidRequest(
                f"the job computes {price.evaluations} expectation values (each PUB's broadcast size, times "
                f"2G+1 circuits for parameter-shift gradients); the limit is {max_circuits}: split it into jobs",
                code="too_many_circuits",
                circuits=price.evaluations,
                limit=max_circuits,
            )
        if price.shots > limits.max_job_shots:
            raise InvalidRequest(
                f"the job runs {price.shots} shots in all (circuit runs × shots); the limit is "
                f"{limits.max_job_shots}: fewer shots, fewer parameter sets, or several jobs",
                code="too_many_shots",
                shots=price.shots,
                limit=limits.max_job_shots,
            )
        if price.result_bytes > limits.max_result_bytes:
            raise InvalidRequest(
                f"the result would take {price.result_bytes} bytes; the limit is {limits.max_result_bytes}: "
                "broadcast fewer observables against fewer parameter sets, or split the job",
                code="result_too_large",
                result_bytes=price.result_bytes,
                limit=limits.max_result_bytes,
            )
        # A device runs one batch at a time and its circuits are slower: its bound is wider.
        max_circuit_s = limits.max_circuit_seconds * (DEVICE_SLICE_FACTOR if backend.is_device else 1.0)
        if price.max_row_seconds > max_circuit_s:
            raise InvalidRequest(
                f"one circuit run is estimated at {price.max_row_seconds:.3g} s on '{backend.name}'; the limit is "
                f"{max_circuit_s:g} s, so no task holds a worker longer: use fewer qubits, a shallower circuit, "
                "fewer shots, or ask an admin to raise max_circuit_seconds",
                code="circuit_too_costly",
                estimated_s=round(price.max_row_seconds, 3),
                limit_s=max_circuit_s,
            )
        self.check_storage(price)

    def check_storage(self, price: Price) -> None:
        """Refuse new work while Redis is near its memory cap: it never evicts job data (noeviction),
        so a full Redis would otherwise fail writes of jobs already acknowledged."""
        now = time.monotonic()
        need = price.payload_bytes + price.result_bytes
        at, used, cap = self._memory
        # Read at most once a second while far from the cap; near it, every time.
        if now - at > 1.0 or (cap and used + need > 0.5 * self.settings.storage_headroom * cap):
            used, cap = self.store.memory()
            self._memory = (now, used, cap)
        if cap and used + need > self.settings.storage_headroom * cap:
            raise Unavailable(
                f"the job store holds {used} of {cap} bytes and this job needs about "
                f"{need} more; retry when running jobs have finished",
                code="storage_full",
                retry_after=5.0,
            )

    def check_inflight(self, limits: TenantLimits, tasks: int, reads: Reads) -> None:
        """Refuse a job of ``tasks`` tasks over the tenant's in-flight limits (``reads``: what is in flight)."""
        if reads.jobs >= limits.max_jobs_in_flight or reads.tasks + tasks > limits.max_tasks_in_flight:
            raise RateLimited(
                f"{reads.jobs} jobs and {reads.tasks} tasks already in flight (limits {limits.max_jobs_in_flight} "
                f"and {limits.max_tasks_in_flight}); wait for some to finish",
                code="too_much_in_flight",
                retry_after=1.0,
            )

    def lane(self, priority: str, price: Price) -> str:
        """The queue lane: the asked priority, one lower for a job that computes long, so that a
        small job waits behind at most about one task of it."""
        if price.seconds > self.settings.fair_share_s:
            return LANES[min(LANES.index(priority) + 1, len(LANES) - 1)]
        return priority

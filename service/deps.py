"""FastAPI dependencies as Annotated aliases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from .errors import Forbidden, PayloadTooLarge, Unauthenticated
from .jobs import JobService


@dataclass(frozen=True)
class Tenant:
    name: str
    role: str
    prefix: str = ""  # of the API key, for the audit log

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


# The dependencies are async (no I/O, or the event loop's own reads): a sync one costs a thread hop.
async def get_jobs(request: Request) -> JobService:
    return request.app.state.jobs  # type: ignore[no-any-return]


JobsDep = Annotated[JobService, Depends(get_jobs)]


async def get_tenant(request: Request, jobs: JobsDep) -> Tenant:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key:
        raise Unauthenticated("send your API key as 'Authorization: Bearer <key>'", code="missing_api_key")
    # Keys are found by their SHA-256 digest: no stored key material is compared with
    # the presented key, so timing reveals nothing about how much of it matched.
    if jobs.reads is not None:
        record = await jobs.reads.api_key(key.strip())
    else:
        record = await run_in_threadpool(jobs.store.api_key, key.strip())
    if record is None:
        raise Unauthenticated("unknown or revoked API key", code="invalid_api_key")
    length = request.headers.get("content-length")
    if request.method in ("POST", "PUT", "PATCH") and length and length.isdigit():
        limits = jobs.admission.cached_limits(record.tenant)
        if limits is None:
            limits = await run_in_threadpool(jobs.limits, record.tenant)
        limit = limits.max_body_bytes
        if int(length) > limit:
            raise PayloadTooLarge(
                f"request body of {length} bytes is over this tenant's {limit}-byte limit", limit=limit
            )
    return Tenant(record.tenant, record.role, record.prefix)


TenantDep = Annotated[Tenant, Depends(get_tenant)]


async def get_admin(tenant: TenantDep) -> Tenant:
    if not tenant.is_admin:
        raise Forbidden("this needs an admin API key", code="admin_required")
    return tenant


AdminDep = Annotated[Tenant, Depends(get_admin)]

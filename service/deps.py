"""FastAPI dependencies as Annotated aliases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

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


def get_jobs(request: Request) -> JobService:
    return request.app.state.jobs  # type: ignore[no-any-return]


JobsDep = Annotated[JobService, Depends(get_jobs)]


def get_tenant(request: Request, jobs: JobsDep) -> Tenant:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key:
        raise Unauthenticated("send your API key as 'Authorization: Bearer <key>'", code="missing_api_key")
    # Keys are found by their SHA-256 digest: no stored key material is compared with
    # the presented key, so timing reveals nothing about how much of it matched.
    record = jobs.store.api_key(key.strip())
    if record is None:
        raise Unauthenticated("unknown or revoked API key", code="invalid_api_key")
    length = request.headers.get("content-length")
    if request.method in ("POST", "PUT", "PATCH") and length and length.isdigit():
        limit = jobs.limits(record.tenant).max_body_bytes
        if int(length) > limit:
            raise PayloadTooLarge(
                f"request body of {length} bytes is over this tenant's {limit}-byte limit", limit=limit
            )
    return Tenant(record.tenant, record.role, record.prefix)


TenantDep = Annotated[Tenant, Depends(get_tenant)]


def get_admin(tenant: TenantDep) -> Tenant:
    if not tenant.is_admin:
        raise Forbidden("this needs an admin API key", code="admin_required")
    return tenant


AdminDep = Annotated[Tenant, Depends(get_admin)]

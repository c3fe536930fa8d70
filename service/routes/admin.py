"""``/v1/admin``: API keys and tenant limits (admin role only)."""

from __future__ import annotations

import secrets

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ..audit import audit
from ..deps import AdminDep, JobsDep
from ..errors import NotFound, error_responses
from ..settings import TenantLimits

router = APIRouter(prefix="/v1/admin", tags=["admin"])
ERRORS = error_responses(401, 403)


class KeyRequest(BaseModel):
    tenant: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    role: str = Field(default="user", pattern="^(user|admin)$")


class KeyCreated(BaseModel):
    key: str = Field(description="Shown once; only its SHA-256 is stored.")
    tenant: str
    role: str
    prefix: str


class KeyInfo(BaseModel):
    prefix: str
    tenant: str
    role: str
    created_at: float


@router.post("/keys", status_code=201, response_model=KeyCreated, responses=ERRORS, summary="Create an API key")
def create_key(body: KeyRequest, jobs: JobsDep, admin: AdminDep) -> KeyCreated:
    key = "qf_" + secrets.token_urlsafe(32)
    record = jobs.store.add_api_key(key, tenant=body.tenant, role=body.role)
    audit(jobs.store, admin.prefix, "create key", record.prefix, "rest", tenant=record.tenant, role=record.role)
    return KeyCreated(key=key, tenant=record.tenant, role=record.role, prefix=record.prefix)


@router.get("/keys", response_model=list[KeyInfo], responses=ERRORS, summary="List API keys (prefixes only)")
def list_keys(jobs: JobsDep, admin: AdminDep) -> list[KeyInfo]:
    return [KeyInfo(**rec.__dict__) for rec in sorted(jobs.store.api_keys().values(), key=lambda r: r.created_at)]


@router.delete("/keys/{prefix}", status_code=204, responses=error_responses(401, 403, 404), summary="Revoke an API key")
def revoke_key(prefix: str, jobs: JobsDep, admin: AdminDep) -> None:
    if not jobs.store.revoke_api_key(prefix):
        raise NotFound(f"no key with prefix '{prefix}'", code="key_not_found")
    audit(jobs.store, admin.prefix, "revoke key", prefix, "rest")


@router.get("/tenants/{tenant}/limits", response_model=TenantLimits, responses=ERRORS, summary="A tenant's limits")
def get_limits(tenant: str, jobs: JobsDep, admin: AdminDep) -> TenantLimits:
    return jobs.limits(tenant)


@router.put("/tenants/{tenant}/limits", response_model=TenantLimits, responses=ERRORS, summary="Set a tenant's limits")
def set_limits(tenant: str, body: TenantLimits, jobs: JobsDep, admin: AdminDep) -> TenantLimits:
    before = jobs.limits(tenant).model_dump()
    jobs.store.set_tenant_limits(tenant, body.model_dump())
    jobs.forget_limits(tenant)
    changed = {k: [before[k], v] for k, v in body.model_dump().items() if before.get(k) != v}
    audit(jobs.store, admin.prefix, "set limits", tenant, "rest", changed=changed)
    return jobs.limits(tenant)

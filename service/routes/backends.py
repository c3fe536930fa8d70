"""``/v1/backends``: what can be named, and how busy it is."""

from __future__ import annotations

from fastapi import APIRouter
from qfleet.wire import BackendInfo

from ..backends import Backend
from ..deps import JobsDep, TenantDep
from ..errors import NotFound, error_responses
from ..jobs import JobService

router = APIRouter(prefix="/v1/backends", tags=["backends"])


def describe(jobs: JobService, backend: Backend) -> BackendInfo:
    status, reason, workers = jobs.backend_status(backend.name)
    depth = jobs.queue_depth(backend.name)
    return BackendInfo(
        name=backend.name,
        description=backend.description,
        num_qubits=backend.num_qubits,
        exact=backend.exact,
        supports_shots=backend.supports_shots,
        max_shots=backend.max_shots,
        max_circuits=jobs.settings.max_circuits,
        native_gates=list(backend.native_gates),
        coupling_map=backend.coupling_map,
        engines=list(backend.engines),
        options=list(backend.options),
        gradients=list(backend.gradients),
        status=status,
        status_reason=reason,
        queue_depth=sum(depth.values()),
        queue_depth_by_priority=depth,
        estimated_wait_s=jobs.estimated_wait(backend.name, sum(depth.values()), workers),
        calibration=backend.calibration,
        limits={
            "max_qubits": backend.num_qubits,
            "max_shots": backend.max_shots,
            "max_circuits": jobs.settings.max_circuits,
        },
        workers=workers,
    )


@router.get("", response_model=list[BackendInfo], summary="List backends")
def list_backends(jobs: JobsDep, tenant: TenantDep) -> list[BackendInfo]:
    return [describe(jobs, b) for b in jobs.backends.values()]


@router.get("/{name}", response_model=BackendInfo, responses=error_responses(404), summary="Describe a backend")
def get_backend(name: str, jobs: JobsDep, tenant: TenantDep) -> BackendInfo:
    backend = jobs.backends.get(name)
    if backend is None:
        raise NotFound(f"no backend '{name}'; GET /v1/backends lists them", code="backend_not_found")
    return describe(jobs, backend)

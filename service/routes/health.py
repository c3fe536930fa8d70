"""``/healthz``: liveness for load balancers and compose healthchecks (no key needed)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from qfleet.wire import Health

from .. import __version__
from ..deps import JobsDep

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}}, summary="Health")
def healthz(jobs: JobsDep) -> JSONResponse:
    try:
        jobs.store.ping()
        redis_ok = True
        workers = jobs.worker_count()
    except Exception:
        redis_ok, workers = False, 0
    body = Health(status="ok" if redis_ok else "degraded", redis=redis_ok, workers=workers, version=__version__)
    return JSONResponse(status_code=200 if redis_ok else 503, content=body.model_dump())

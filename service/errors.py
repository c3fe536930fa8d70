"""The service's error tree. Each error becomes ``{"error": {code, message, details}}``.

ServiceError (500)
├── InvalidRequest (400)      bad input: code says which rule, message says the fix
│   └── PayloadTooLarge (413)
├── Unauthenticated (401)
├── Forbidden (403)
├── NotFound (404)            also another tenant's job
├── Conflict (409)
└── RateLimited (429)         with Retry-After
    └── Unavailable (503)     the service is full or busy for now
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class InvalidRequest(ServiceError):
    status = 400
    code = "invalid_request"


class PayloadTooLarge(InvalidRequest):
    status = 413
    code = "payload_too_large"


class Unauthenticated(ServiceError):
    status = 401
    code = "unauthenticated"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class RateLimited(ServiceError):
    """429, with a Retry-After header of ``retry_after`` seconds."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(message, code=code, retry_after=round(retry_after, 3))
        self.retry_after = retry_after


class Unavailable(RateLimited):
    """503: not this request's fault, and not for long (storage near its cap, parsers busy)."""

    status = 503
    code = "unavailable"


# What each status means on this API, for the OpenAPI document (routes declare theirs with
# error_responses; app.py adds the statuses that the guards, dependencies and body imply).
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Bad input: `error.code` says which rule was broken, `error.message` how to fix it, "
    "`error.details` where (e.g. the PUB index); `invalid_body` when the body cannot be read.",
    401: "Missing, unknown or revoked API key (`missing_api_key`, `invalid_api_key`).",
    403: "The API key's role may not do this (`admin_required`).",
    404: "No such job, backend or key for this API key (another tenant's job answers exactly the same).",
    408: "The request body did not arrive in time (`body_timeout`); the connection is closed.",
    409: "The job failed or was cancelled, so it has no result; `error.details.job` is its status.",
    413: "The body is over the size limit (`payload_too_large`); split the job into smaller ones.",
    422: "The body or a parameter does not fit the schema (`invalid_request`); `error.details.errors` lists "
    "each problem with its location.",
    429: "Over a limit: the tenant's rate or work in flight (`rate_limited`, `too_much_in_flight`, "
    "`too_many_concurrent_submissions`) or requests open from one address (`too_many_requests_open`); "
    "retry after the `Retry-After` header's seconds.",
    500: "The service failed (`internal_error`); the request was not processed and may be retried.",
    503: "The service is briefly unable to take this (`unavailable`: storage near its cap, parsers busy); "
    "retry after the `Retry-After` header's seconds.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for these statuses, each with the one error body."""
    from qfleet.wire import ErrorBody

    return {status: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[status]} for status in statuses}

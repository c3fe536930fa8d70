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

"""Client-side exceptions.

Every error the client raises derives from :class:`QfleetError`::

    QfleetError
    ├── APIError                  any error answer from the service (has .status, .code, .details)
    │   ├── AuthError             401 / 403
    │   ├── NotFoundError         404 (an unknown id, or another tenant's)
    │   ├── RateLimitedError      429 (has .retry_after)
    │   ├── InvalidRequestError   400 / 413 / 422, also a ValueError
    │   └── ServerError           5xx
    ├── JobFailedError            the job ran and failed (has .job_id, .code)
    ├── JobCancelledError         the job was cancelled before it finished
    └── JobTimeoutError           result() gave up waiting, also a TimeoutError
"""

from __future__ import annotations

from typing import Any


class QfleetError(Exception):
    """Root of every qfleet client error."""


class APIError(QfleetError):
    """The service answered with an error body ``{"error": {code, message, details}}``."""

    def __init__(self, message: str, *, status: int, code: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"[{status} {code}] {message}")
        self.message = message
        self.status = status
        self.code = code
        self.details = details or {}


class AuthError(APIError):
    """Missing, unknown or revoked API key, or a role that may not do this."""


class NotFoundError(APIError):
    """No such job or backend visible to this API key."""


class RateLimitedError(APIError):
    """Too many requests; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class InvalidRequestError(APIError, ValueError):
    """The request was refused as malformed; ``code`` says which rule it broke."""


class ServerError(APIError):
    """The service failed; the request may be retried."""


class JobFailedError(QfleetError):
    """The job ran and failed; ``code`` and the message carry the reason."""

    def __init__(self, job_id: str, code: str, message: str) -> None:
        super().__init__(f"job {job_id} failed [{code}]: {message}")
        self.job_id = job_id
        self.code = code
        self.message = message


class JobCancelledError(QfleetError):
    """The job was cancelled before it finished."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} was cancelled")
        self.job_id = job_id


class JobTimeoutError(QfleetError, TimeoutError):
    """The job did not finish within the time ``result()`` was given."""

    def __init__(self, job_id: str, timeout: float) -> None:
        super().__init__(f"job {job_id} did not finish within {timeout:g} s")
        self.job_id = job_id
        self.timeout = timeout


_BY_STATUS: dict[int, type[APIError]] = {
    400: InvalidRequestError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    413: InvalidRequestError,
    422: InvalidRequestError,
    429: RateLimitedError,
}


def error_from_response(status: int, body: Any, retry_after: str | None = None) -> APIError:
    """Build the typed error for an error answer (body already parsed as JSON, or None)."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        err = {"code": "http_error", "message": str(body)[:500], "details": {}}
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else APIError)
    kw: dict[str, Any] = {
        "status": status,
        "code": str(err.get("code", "http_error")),
        "details": err.get("details") or {},
    }
    message = str(err.get("message", ""))
    if cls is RateLimitedError:
        return RateLimitedError(message, retry_after=float(retry_after) if retry_after else None, **kw)
    return cls(message, **kw)

"""Client-side exceptions.

Every error the client raises derives from :class:`QfleetError`, and every one has a
``code`` (machine-readable) and a ``hint`` (the next step, or None where the message
already says what to fix)::

    QfleetError                   .code, .hint; also missing URL or API key
    ├── TransportError            no answer from the service at .url (not reachable, connection lost)
    ├── APIError                  any error answer from the service (has .status, .code, .details)
    │   ├── AuthError             401 / 403
    │   ├── NotFoundError         404 (an unknown id, or another tenant's)
    │   ├── RateLimitedError      429 (has .retry_after)
    │   ├── InvalidRequestError   400 / 413 / 422, or refused by the client before sending
    │   │   │                     (.status None); also a ValueError
    │   │   └── InvalidTypeError  not a PUB or circuit where one was expected; also a TypeError
    │   └── ServerError           5xx
    ├── JobFailedError            the job ran and failed (has .job_id, .code)
    ├── JobCancelledError         the job was cancelled before it finished
    └── JobTimeoutError           result() gave up waiting, also a TimeoutError

``KeyboardInterrupt`` is never wrapped: Ctrl-C in ``result()`` or ``stream()`` (sync, or async
under ``asyncio.run``) prints one line naming the job and how to cancel it, then propagates.
"""

from __future__ import annotations

from typing import Any


class QfleetError(Exception):
    """Root of every qfleet client error: ``code`` says what happened, ``hint`` what to do next."""

    code: str = "qfleet_error"

    def __init__(self, message: str, *, code: str | None = None, hint: str | None = None) -> None:
        super().__init__(message + (f"\nhint: {hint}" if hint else ""))
        self.message = message
        if code:
            self.code = code
        self.hint = hint


class TransportError(QfleetError):
    """The service did not answer at ``url``: it is not running there, or the connection broke.

    Raised after the client's retries (``retry_s``) are spent; a service never reached is
    given only about a second, so a wrong URL fails fast. ``code`` is ``service_unreachable``
    (nothing listens there), ``service_timeout`` or ``connection_lost``.
    """

    def __init__(self, url: str, cause: Exception) -> None:
        kind = type(cause).__name__
        if kind in ("ConnectError", "ConnectTimeout"):
            code, what = "service_unreachable", "is not reachable at"
        elif "Timeout" in kind:
            code, what = "service_timeout", "did not answer in time at"
        else:
            code, what = "connection_lost", "lost the connection at"
        super().__init__(
            f"the qfleet service {what} {url} ({kind}: {cause})",
            code=code,
            hint="check the URL (url= or QFLEET_URL) and that the service runs there: `qfleet up` starts "
            f"one, and GET {url}/healthz answers when it is up",
        )
        self.url = url


_HINTS: dict[int, str] = {
    401: "check the API key (api_key= or QFLEET_API_KEY); an admin creates keys with `qfleet keys create TENANT`",
    403: "this needs an admin API key",
    404: "check the id or name; jobs are visible only to their tenant's keys and expire after the result TTL",
    429: "wait retry_after seconds, or lower the submission rate (the client already waited and retried)",
}


class APIError(QfleetError):
    """The service answered with an error body ``{"error": {code, message, details}}``."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        code: str,
        details: dict[str, Any] | None = None,
        hint: str | None = None,
    ) -> None:
        if hint is None and status is not None:
            hint = _HINTS.get(status) or (
                "the service failed; retry later, and read the API's log if it persists" if status >= 500 else None
            )
        QfleetError.__init__(self, f"[{status or 'client'} {code}] {message}", code=code, hint=hint)
        self.message = message
        self.status = status
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
    """The request was refused as malformed; ``code`` says which rule it broke.

    ``status`` is None when the client refused it before sending (an option value outside
    its allowed set, say); ``details`` then names the option and the allowed values.
    """


class InvalidTypeError(InvalidRequestError, TypeError):
    """A value of the wrong kind where a PUB or circuit was expected (also a ``TypeError``)."""


class ServerError(APIError):
    """The service failed; the request may be retried."""


class JobFailedError(QfleetError):
    """The job ran and failed; ``code`` and the message carry the reason."""

    def __init__(self, job_id: str, code: str, message: str) -> None:
        QfleetError.__init__(
            self,
            f"job {job_id} failed [{code}]: {message}",
            code=code,
            hint="job.status().error keeps the reason; fix the input and submit again "
            "(an admin sees the task's traceback on the dashboard)",
        )
        self.job_id = job_id
        self.message = message


class JobCancelledError(QfleetError):
    """The job was cancelled before it finished."""

    code = "job_cancelled"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} was cancelled", hint="submit the PUBs again for a result")
        self.job_id = job_id


class JobTimeoutError(QfleetError, TimeoutError):
    """The job did not finish within the time ``result()`` was given."""

    code = "job_timeout"

    def __init__(self, job_id: str, timeout: float) -> None:
        super().__init__(
            f"job {job_id} did not finish within {timeout:g} s",
            hint="the job keeps running: call result() again to wait longer, or cancel() it",
        )
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

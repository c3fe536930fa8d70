"""qfleet: the thin client for the qfleet quantum job-batching service.

>>> from qfleet import Client
>>> client = Client("http://127.0.0.1:8000", api_key="qf_...")
>>> job = client.estimate([(circuit, observables, params)], backend="aer")
>>> job.result(timeout=60)[0].evs
"""

from ._jobs import AsyncJob, Job
from .client import AsyncClient, Client
from .errors import (
    APIError,
    AuthError,
    InvalidRequestError,
    InvalidTypeError,
    JobCancelledError,
    JobFailedError,
    JobTimeoutError,
    NotFoundError,
    QfleetError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from .results import JobResult, PubResult

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "AsyncClient",
    "AsyncJob",
    "AuthError",
    "Client",
    "InvalidRequestError",
    "InvalidTypeError",
    "Job",
    "JobCancelledError",
    "JobFailedError",
    "JobResult",
    "JobTimeoutError",
    "NotFoundError",
    "PubResult",
    "QfleetError",
    "RateLimitedError",
    "ServerError",
    "TransportError",
    "__version__",
]

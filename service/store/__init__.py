"""The job store: every Redis key of qfleet (``keys``), the Lua scripts (``scripts``), and
:class:`Store`, one facade over the parts that own one noun each: jobs and their task
lifecycle (``jobs``), leases (``leases``), tenants and API keys (``tenants``), statistics
(``stats``), the result cache across jobs (``cache``). Nothing outside this package formats
a key name.
"""

from .cache import ResultCache, whole
from .jobs import JobRecords
from .keys import (
    EVENTS_CHANNEL,
    IDEMPOTENCY_TTL_S,
    JOB_TTL_S,
    LANES,
    REDIS_OUTAGES,
    TASK_SECONDS_BUCKETS,
    Keys,
    connect,
    connect_async,
    hash_api_key,
    histogram_bucket,
    usage_hour,
)
from .leases import Leases
from .stats import Statistics, TaskStats
from .tenants import ApiKey, Reads, Tenants


class Store(JobRecords, Leases, Tenants, Statistics, ResultCache):
    """Job records, payload blobs, results, leases, tenants and statistics in Redis."""


__all__ = [
    "EVENTS_CHANNEL",
    "IDEMPOTENCY_TTL_S",
    "JOB_TTL_S",
    "LANES",
    "REDIS_OUTAGES",
    "TASK_SECONDS_BUCKETS",
    "ApiKey",
    "Reads",
    "Keys",
    "Store",
    "TaskStats",
    "connect",
    "connect_async",
    "hash_api_key",
    "histogram_bucket",
    "usage_hour",
    "whole",
]

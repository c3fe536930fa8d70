"""One settings class for every qfleet server process, read from ``QFLEET_*`` variables."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Secrets that must never guard a deployment outside dev mode.
DEFAULT_SECRETS = frozenset({"", "admin", "changeme", "change-me", "qfleet", "secret", "password"})


class TenantLimits(BaseSettings):
    """Per-tenant limits; the settings hold the defaults, an admin can set them per tenant."""

    model_config = SettingsConfigDict(env_prefix="QFLEET_TENANT_", extra="ignore")

    max_qubits: int = Field(default=1024, description="Below every backend's own width unless lowered.")
    max_shots: int = Field(default=1_000_000, description="Shots per circuit.")
    max_circuits: int = Field(
        default=1_000_000,
        description="Expectation values a job computes: each PUB's broadcast size K×M, times 2G+1 for "
        "parameter-shift gradients (G: parameterized rotation angles).",
    )
    max_job_shots: int = Field(default=200_000_000, description="Shots a job runs in all: circuit runs × shots.")
    max_result_bytes: int = Field(
        default=64 * 1024 * 1024, description="Result bytes (evs, stds, gradients) a job stores."
    )
    max_circuit_seconds: float = Field(
        default=5.0,
        description="Estimated compute of one circuit run (one row, with its gradient): no task can be shorter, so "
        "this bounds how long any other job waits behind one task.",
    )
    max_body_bytes: int = 64 * 1024 * 1024
    max_jobs_in_flight: int = 100
    max_tasks_in_flight: int = 100_000
    jobs_per_second: float = Field(default=50.0, description="Sustained submission rate (token bucket).")
    burst: int = Field(default=100, description="Submissions allowed at once before the rate applies.")


class Settings(BaseSettings):
    """Settings for the API and the workers. Build one per process and pass it in.

    >>> Settings(redis_url="redis://127.0.0.1:6379/0", dev_mode=True)
    """

    model_config = SettingsConfigDict(env_prefix="QFLEET_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_sentinels: str = Field(
        default="", description="'host:port,host:port': find the Redis master through Sentinel."
    )
    redis_sentinel_master: str = "qfleet"
    dev_mode: bool = Field(default=False, description="Allows the printed dev key; refuse default secrets otherwise.")
    admin_key: str | None = Field(default=None, description="Bootstrap admin API key, registered at API start.")
    key_prefix: str = Field(default="qfleet", description="Namespace of every Redis key of this deployment.")
    log_json: bool = Field(default=False, description="One JSON object a log line, with job id, task and tenant.")
    log_level: str = "INFO"

    # limits (per job, for every tenant; tenants can be given lower ones)
    max_body_bytes: int = 64 * 1024 * 1024
    max_circuit_bytes: int = Field(
        default=4 * 1024 * 1024, description="Circuit text or QPY size, checked before parsing."
    )
    max_declared_qubits: int = Field(
        default=2048, description="Qubits and bits an OpenQASM 3 text may declare, checked before parsing."
    )
    parse_timeout_s: float = Field(default=5.0, description="A circuit that takes longer to parse is refused.")
    parse_memory_bytes: int = Field(
        default=1024 * 1024 * 1024, description="Memory a parser child may add while parsing one circuit."
    )
    max_concurrent_submissions: int = Field(
        default=4, description="Submissions of one tenant an API process works on at once; more wait for a turn."
    )
    submission_wait_s: float = Field(
        default=2.0, description="How long a submission waits for its tenant's turn (holding no thread) before 429."
    )
    parsers: int = Field(default=2, description="Parser child processes per API process.")
    storage_headroom: float = Field(
        default=0.85,
        description="New jobs are refused (503 storage_full) once Redis would pass this share of its maxmemory.",
    )
    body_timeout_s: float = Field(default=30.0, description="A request body must arrive within this many seconds.")
    max_requests_per_client: int = Field(
        default=64, description="Requests one client address may have open at once; more get 429."
    )
    max_connections_per_client: int = Field(
        default=128,
        description="Connections one client address may hold open at once; more are answered 429 and closed.",
    )
    header_timeout_s: float = Field(
        default=10.0,
        description="A request's line and headers must arrive within this many seconds of the connection "
        "(or of the previous response); else 408 and the connection is closed.",
    )
    max_header_bytes: int = Field(default=65536, description="A request's line and headers; more get 431.")
    max_pubs: int = Field(
        default=1_000_000,
        description="PUBs per job. Not a cost limit: PUBs sharing a circuit are planned as one program.",
    )
    max_circuits: int = 1_000_000
    max_qubits: int = 28
    max_shots: int = 1_000_000
    max_ops: int = 100_000
    max_depth: int = 20_000
    tenant: TenantLimits = Field(default_factory=TenantLimits)

    # planning and scheduling
    task_target_s: float = Field(default=0.1, description="Aim each task at this many seconds of compute.")
    task_min_s: float = Field(
        default=0.01,
        description="A job of less than task_target_s per worker is cut into one task per worker of its backend, "
        "each estimated at this many seconds of compute at least; 0 keeps such a job in one task.",
    )
    task_timeout_s: int = 600
    task_retries: int = 2
    fair_share_s: float = Field(
        default=0.5, description="Jobs estimated to compute longer run one priority lane lower."
    )
    lease_s: float = Field(
        default=5.0, description="A running task whose worker stops renewing for this long is re-queued."
    )
    result_ttl_s: int = 24 * 3600
    result_cache_ttl_s: int = Field(
        default=3600,
        description="Seconds a computed chunk of results is reused by identical work in later jobs of the same "
        "tenant; 0 turns the result cache off.",
    )
    result_cache_max_job_bytes: int = Field(
        default=16 * 1024 * 1024,
        description="Jobs with larger results are not kept whole (their chunks still are): a job whose results "
        "are all kept is answered at submission, never queued.",
    )
    result_cache_max_share: float = Field(
        default=0.5, description="The result cache stores nothing while Redis holds more than this share of maxmemory."
    )

    # real-QPU adapters: each is listed as unavailable until its credentials are set
    origin_api_key: str | None = Field(default=None, description="Origin QCloud API key (pyqpanda3).")
    origin_chip: str = "origin_wukong"
    ibm_token: str | None = Field(default=None, description="IBM Quantum API token (qiskit-ibm-runtime).")
    ibm_instance: str | None = None
    ibm_backend: str | None = Field(default=None, description="IBM backend name; default the least busy.")

    # device models
    device_concurrency: int = Field(default=1, description="Batches a device (model) runs at once, across all workers.")
    device_shot_time_s: float = Field(
        default=0.0, description="Simulated QPU time per shot, to make queues behave like hardware."
    )

    # workers
    worker_threads: int = Field(
        default=0, description="Engine threads per worker; 0 = share the cores among local workers."
    )
    gpu: Literal["auto", "off"] = Field(
        default="auto",
        description="Exact estimates of wide circuits on qfleet's torch engine when the machine shows a GPU "
        "driver (NVIDIA, WSL 2 or ROCm device paths), torch is installed (the `gpu` extra) and it sees a CUDA "
        "GPU: auto (then) or off.",
    )
    gpu_min_amplitudes: int = Field(
        default=1 << 16,
        ge=1,
        description="The least work (rows x 2^qubits) an exact block has for the GPU to run it; smaller ones "
        "run on the CPU, where Lightning is faster (on an H200: 12 qubits x 1 row 0.5 ms on the CPU, "
        "2.5 on the GPU; 8 qubits x 256 rows 18.7 ms on the CPU, 3.5 on the GPU).",
    )
    gpu_memory_gb: float = Field(default=8.0, gt=0, description="GPU memory the torch engine's states may take.")

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.worker_threads <= 0:
            self.worker_threads = os.cpu_count() or 1
        if (
            self.admin_key is not None
            and not self.dev_mode
            and (self.admin_key.lower() in DEFAULT_SECRETS or len(self.admin_key) < 24)
        ):
            raise ValueError(
                "QFLEET_ADMIN_KEY is a default or short secret; set a random one of 24+ characters (or QFLEET_DEV_MODE=1)"
            )
        return self

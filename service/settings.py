"""One settings class for every qfleet server process, read from ``QFLEET_*`` variables."""

from __future__ import annotations

import os

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Settings for the API and the workers. Build one per process and pass it in.

    >>> Settings(redis_url="redis://127.0.0.1:6379/0", dev_mode=True)
    """

    model_config = SettingsConfigDict(env_prefix="QFLEET_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    dev_mode: bool = Field(default=False, description="Allows the printed dev key; refuse default secrets otherwise.")
    key_prefix: str = Field(default="qfleet", description="Namespace of every Redis key of this deployment.")

    # limits (per job)
    max_body_bytes: int = 64 * 1024 * 1024
    max_pubs: int = 1000
    max_circuits: int = 1_000_000
    max_qubits: int = 28
    max_shots: int = 1_000_000
    max_ops: int = 100_000

    # planning
    task_target_s: float = Field(default=0.1, description="Aim each task at this many seconds of compute.")
    task_timeout_s: int = 600
    task_retries: int = 2
    result_ttl_s: int = 24 * 3600

    # workers
    worker_threads: int = Field(
        default=0, description="Engine threads per worker; 0 = share the cores among local workers."
    )

    @model_validator(mode="after")
    def _threads(self) -> Settings:
        if self.worker_threads <= 0:
            self.worker_threads = os.cpu_count() or 1
        return self

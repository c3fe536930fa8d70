"""A whole local stack in child processes: Redis (unless one is given), the API under
uvicorn, and N warm workers. ``qfleet up``, the demo and the end-to-end tests use it."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from redis import Redis

from .backends import all_backends
from .settings import Settings
from .store import Store, connect


def _die_with_parent() -> None:
    """Child processes get SIGTERM when the stack's process dies, however it dies (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StackError(RuntimeError):
    pass


def start_redis(port: int, workdir: Path, appendonly: bool = True, maxmemory: str = "2gb") -> subprocess.Popen[bytes]:
    """A private redis-server on loopback, persisting with AOF into ``workdir``. It is capped at
    ``maxmemory`` and never evicts (job data lost silently would break "nothing acknowledged is
    lost"): near the cap the API refuses new jobs instead (storage_full)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise StackError("redis-server not found: install it (apt-get install redis-server) or set QFLEET_REDIS_URL")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if appendonly else "no",
            "--dir",
            str(workdir),
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--maxmemory",
            maxmemory,
            "--maxmemory-policy",
            "noeviction",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
    )
    client = Redis(port=port)
    for _ in range(200):
        try:
            if client.ping():
                return proc
        except Exception:
            time.sleep(0.025)
    proc.kill()
    raise StackError(f"redis-server did not start on port {port}")


@dataclass
class Stack:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    redis_url: str | None = None
    threads_per_worker: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    log_dir: Path | None = None
    device_worker: bool = True
    expected_workers: int = 0
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    api_key: str = ""

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _env(self, **extra: str) -> dict[str, str]:
        env = {**os.environ, **self.env, **extra}
        env["QFLEET_REDIS_URL"] = self.redis_url or ""
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _spawn(self, name: str, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        assert self.log_dir is not None
        log = open(self.log_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(
            args,
            env=self._env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.procs[name] = proc
        return proc

    def start(self, timeout: float = 120.0) -> Stack:
        self.log_dir = self.log_dir or Path(tempfile.mkdtemp(prefix="qfleet-"))
        if not self.redis_url:
            port = free_port()
            self.procs["redis"] = start_redis(port, self.log_dir)
            self.redis_url = f"redis://127.0.0.1:{port}/0"
        settings = Settings(redis_url=self.redis_url, dev_mode=True)
        store = Store(connect(settings), settings.key_prefix)
        self.api_key = "qf_dev_" + secrets.token_urlsafe(24)
        store.add_api_key(self.api_key, tenant="dev", role="admin")
        # the dev tenant drives demos and benchmarks: one request per circuit must not be throttled
        store.set_tenant_limits("dev", {"jobs_per_second": 10_000.0, "burst": 10_000})
        threads = self.threads_per_worker or max(1, (os.cpu_count() or 1) // max(1, self.workers))
        for i in range(self.workers):
            self.start_worker(i, threads)
        if self.device_worker and self.start_device_worker() is not None:
            self.expected_workers = self.workers + 1
        self._start_api()
        self.wait_ready(timeout)
        return self

    def restart_redis(self) -> None:
        """Stop the private Redis (it writes its AOF on the way down) and start it again on the same port and data."""
        proc = self.procs.pop("redis")
        proc.terminate()
        proc.wait(30)
        assert self.redis_url and self.log_dir
        self.procs["redis"] = start_redis(int(self.redis_url.rsplit(":", 1)[1].split("/")[0]), self.log_dir)

    def restart_api(self) -> None:
        proc = self.procs.pop("api")
        proc.terminate()
        proc.wait(30)
        self._start_api()

    def _start_api(self) -> None:
        self._spawn(
            "api",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "service.cli:app_from_env",
                "--factory",
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            QFLEET_DEV_MODE="1",
        )

    def start_worker(self, i: int, threads: int) -> subprocess.Popen[bytes]:
        """A simulator worker (aer, lightning) with its share of the cores."""
        settings = Settings(redis_url=self.redis_url or "", dev_mode=True)
        simulators = [b.name for b in all_backends(settings).values() if not b.is_device]
        backends = [arg for b in simulators for arg in ("--backend", b)]
        return self._spawn(
            f"worker{i}",
            [sys.executable, "-m", "service.cli", "worker", *backends, "--name", f"w{i}-{secrets.token_hex(3)}"],
            QFLEET_WORKER_THREADS=str(threads),
        )

    def start_device_worker(self) -> subprocess.Popen[bytes] | None:
        """One worker for the QPU backends (the wukong72 model, and adapters with credentials): a QPU
        runs one batch at a time, so one process with all the cores serves them."""
        settings = Settings(redis_url=self.redis_url or "", dev_mode=True)
        devices = [b.name for b in all_backends(settings).values() if b.is_device and not b.unavailable]
        if not devices:
            return None
        backends = [arg for b in devices for arg in ("--backend", b)]
        return self._spawn(
            "device",
            [sys.executable, "-m", "service.cli", "worker", *backends, "--name", f"dev-{secrets.token_hex(3)}"],
            QFLEET_WORKER_THREADS=str(os.cpu_count() or 1),
        )

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise StackError(f"{name} exited with {proc.returncode}; see {self.log_dir}/{name}.log")
            try:
                health = httpx.get(f"{self.url}/healthz", timeout=2).json()
                if health.get("workers", 0) >= max(self.workers, self.expected_workers):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.1)
        raise StackError(f"the stack did not become ready in {timeout:g} s; logs in {self.log_dir}")

    def stop(self) -> None:
        """SIGTERM the API and workers first (workers finish their task), Redis last."""
        redis = self.procs.pop("redis", None)
        groups = [list(self.procs.values()), [redis] if redis else []]
        for group in groups:
            for proc in group:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in group:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx
from redis import Redis

from .backends import all_backends
from .connections import UVICORN_ARGS
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


def redis_url(port: int, password: str | None = None, host: str = "127.0.0.1", db: int = 0) -> str:
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port}/{db}"


def start_redis(
    port: int, workdir: Path, appendonly: bool = True, maxmemory: str = "2gb", password: str | None = None
) -> subprocess.Popen[bytes]:
    """A private redis-server on loopback only, with a password when given (protected mode on
    either way), persisting with AOF into ``workdir`` (fsync once a second: see the README).
    It is capped at ``maxmemory`` and never evicts (job data lost silently would break "nothing
    acknowledged is lost"): near the cap the API refuses new jobs instead (storage_full)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise StackError("redis-server not found: install it (apt-get install redis-server) or set QFLEET_REDIS_URL")
    # the password goes in on stdin as a config file, so it is not on the command line for `ps` to show
    config = f"requirepass {password}\n" if password else ""
    proc = subprocess.Popen(
        [
            binary,
            "-",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--protected-mode",
            "yes",
            "--save",
            "",
            "--appendonly",
            "yes" if appendonly else "no",
            "--appendfsync",
            "everysec",
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
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches `qfleet up` only, which stops Redis last
        preexec_fn=_die_with_parent,
    )
    assert proc.stdin is not None
    proc.stdin.write(config.encode())
    proc.stdin.close()
    client = Redis(port=port, password=password)
    for _ in range(400):
        try:
            if client.ping():
                return proc
        except Exception:
            if proc.poll() is not None:
                break
            time.sleep(0.025)
    proc.kill()
    raise StackError(f"redis-server did not start on port {port}")


@dataclass
class Child:
    """How to start one child again, and its restart history (for backoff)."""

    start: Callable[[], subprocess.Popen[bytes]]
    again_after_clean_exit: bool = True  # False for workers: one that exits 0 was drained, and stays down
    restarts: int = 0
    started_at: float = 0.0
    due: float | None = None  # when a dead child is to be started again


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
    redis_password: str | None = None
    children: dict[str, Child] = field(default_factory=dict)
    say: Callable[[str], None] = field(default=lambda line: None)

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

    def _child(
        self, name: str, start: Callable[[], subprocess.Popen[bytes]], again_after_clean_exit: bool = True
    ) -> subprocess.Popen[bytes]:
        self.children[name] = Child(start, again_after_clean_exit, started_at=time.monotonic())
        proc = start()
        self.procs[name] = proc
        return proc

    def start(self, timeout: float = 120.0) -> Stack:
        self.log_dir = self.log_dir or Path(tempfile.mkdtemp(prefix="qfleet-"))
        if not self.redis_url:
            port = free_port()
            self.redis_password = self.redis_password or secrets.token_urlsafe(32)
            self._child("redis", lambda: start_redis(port, self._redis_dir(), password=self.redis_password))
            self.redis_url = redis_url(port, self.redis_password)
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
        self._child("api", self._start_api)
        self.wait_ready(timeout)
        return self

    def _redis_dir(self) -> Path:
        assert self.log_dir is not None
        return self.log_dir

    def restart_redis(self, hard: bool = False, down_s: float = 0.0) -> None:
        """Stop the private Redis and start it again on the same port, password and data: a clean
        shutdown (it writes its AOF on the way down), or with ``hard`` a SIGKILL, as a crash would;
        ``down_s`` seconds later."""
        proc = self.procs.pop("redis")
        if hard:
            proc.kill()
        else:
            proc.terminate()
        proc.wait(30)
        time.sleep(down_s)
        self.procs["redis"] = self.children["redis"].start()

    def restart_api(self, timeout: float = 60.0) -> None:
        """Stop the API and start it again; returns once it answers."""
        proc = self.procs.pop("api")
        proc.terminate()
        proc.wait(30)
        self.procs["api"] = self.children["api"].start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise StackError(f"the API did not come back in {timeout:g} s; see {self.log_dir}/api.log")

    def _start_api(self) -> subprocess.Popen[bytes]:
        return self._spawn(
            "api",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "qfleet_server.cli:app_from_env",
                "--factory",
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
                *UVICORN_ARGS,
            ],
            QFLEET_DEV_MODE="1",
        )

    def start_worker(self, i: int, threads: int) -> subprocess.Popen[bytes]:
        """A simulator worker (aer, lightning) with its share of the cores."""
        settings = Settings(redis_url=self.redis_url or "", dev_mode=True)
        simulators = [b.name for b in all_backends(settings).values() if not b.is_device]
        backends = [arg for b in simulators for arg in ("--backend", b)]

        def start() -> subprocess.Popen[bytes]:  # a fresh name each time: the dead one's stays registered a while
            args = ["worker", *backends, "--name", f"w{i}-{secrets.token_hex(3)}"]
            return self._spawn(
                f"worker{i}", [sys.executable, "-m", "qfleet_server.cli", *args], QFLEET_WORKER_THREADS=str(threads)
            )

        return self._child(f"worker{i}", start, again_after_clean_exit=False)

    def start_device_worker(self) -> subprocess.Popen[bytes] | None:
        """One worker for the QPU backends (the wukong72 model, and adapters with credentials): a QPU
        runs one batch at a time, so one process with all the cores serves them."""
        settings = Settings(redis_url=self.redis_url or "", dev_mode=True)
        devices = [b.name for b in all_backends(settings).values() if b.is_device and not b.unavailable]
        if not devices:
            return None
        backends = [arg for b in devices for arg in ("--backend", b)]

        def start() -> subprocess.Popen[bytes]:
            args = ["worker", *backends, "--name", f"dev-{secrets.token_hex(3)}"]
            return self._spawn(
                "device",
                [sys.executable, "-m", "qfleet_server.cli", *args],
                QFLEET_WORKER_THREADS=str(os.cpu_count() or 1),
            )

        return self._child("device", start, again_after_clean_exit=False)

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

    def heal(self) -> list[str]:
        """One round of supervision: a child that exited is started again, after a backoff that
        doubles with each quick death (0.5 s up to 30 s; reset once a child has run a minute).
        Says what it does through ``say``; returns the names it started again."""
        now = time.monotonic()
        started = []
        for name, child in list(self.children.items()):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                continue
            if proc is not None:  # just found dead
                _kill_group(proc)  # what it forked (RQ's scheduler) goes with it
                del self.procs[name]
                if proc.returncode == 0 and not child.again_after_clean_exit:
                    del self.children[name]
                    self.say(f"qfleet: {name} (pid {proc.pid}) stopped cleanly (drained); not restarting it")
                    continue
                if now - child.started_at > 60:
                    child.restarts = 0
                delay = min(30.0, 0.5 * 2**child.restarts)
                child.due = now + delay
                self.say(
                    f"qfleet: {name} (pid {proc.pid}) exited with {_exit_text(proc.returncode)}; "
                    f"restarting in {delay:g} s (logs {self.log_dir}/{name}.log)"
                )
            if child.due is not None and now >= child.due:
                child.restarts += 1
                child.due = None
                child.started_at = now
                try:
                    self.procs[name] = child.start()
                except Exception as exc:  # e.g. redis-server failing to come up: try again later
                    child.due = now + min(30.0, 0.5 * 2**child.restarts)
                    self.say(f"qfleet: {name} did not start ({exc}); trying again")
                    continue
                self.say(f"qfleet: {name} restarted (pid {self.procs[name].pid}, restart {child.restarts})")
                started.append(name)
        return started

    def stop(self) -> None:
        """SIGTERM the API and workers first (workers finish their task), Redis last."""
        self.children.clear()
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
                _kill_group(proc)
        self.procs.clear()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL what is left of a dead child's process group (every child leads its own session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # nothing left (or not a group of ours)
        pass


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"code {code}"

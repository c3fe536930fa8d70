"""`qfleet up` and `qfleet demo` as a user runs them, and the compose file against the Compose Specification."""

from __future__ import annotations

import copy
import json
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import jsonschema
import numpy as np
import pytest
import yaml
from qfleet import Client
from redis import Redis
from redis.exceptions import AuthenticationError
from rq import Worker

from qfleet_server.examples.adapter.report import LABELS
from qfleet_server.stack import free_port
from qfleet_server.store import Store

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


class Up:
    """A real `qfleet up` process, its output read line by line in a thread."""

    def __init__(self, state_home: Path, workers: int = 2) -> None:
        self.port = free_port()
        self.state_home = state_home
        self.env = {k: v for k, v in os.environ.items() if k != "QFLEET_REDIS_URL"}
        self.env.update(XDG_STATE_HOME=str(state_home), QFLEET_LEASE_S="1.5")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qfleet_server.cli", "up", "--port", str(self.port), "--workers", str(workers)],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for("export QFLEET_REDIS_URL=", 180)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float, after: int = 0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[after:]:
                if text in line:
                    return line
            assert self.proc.poll() is None, "qfleet up exited: " + "\n".join(self.lines)
            time.sleep(0.05)
        raise AssertionError(f"no line with {text!r} in {timeout} s: " + "\n".join(self.lines))

    def export(self, name: str) -> str:
        line = self.wait_for(f"export {name}=", 1)
        return shlex.split(line.split("=", 1)[1])[0]

    def children(self, needle: str) -> list[int]:
        """Pids of this process's children whose command line holds ``needle``."""
        found = []
        for proc_stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(proc_stat.read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (proc_stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, IndexError, ValueError):
                continue
            if ppid == self.proc.pid and needle in cmdline:
                found.append(int(proc_stat.parent.name))
        return found

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "qfleet_server.cli", *args],
            cwd=ROOT,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )


def one_circuit_job(url: str, key: str, rows: int = 1) -> np.ndarray:
    qasm = 'OPENQASM 3.0; include "stdgates.inc"; input float th; qubit[1] q; rx(th) q[0];'
    values = np.linspace(0, np.pi, rows)[:, None]
    with Client(url, api_key=key) as client:
        evs = client.estimate([(qasm, "Z", values)]).result(timeout=120)[0].evs
    np.testing.assert_allclose(evs, np.cos(values[:, 0]), atol=1e-9)
    return evs


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    running = Up(tmp_path_factory.mktemp("state"))
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait(30)


def test_qfleet_up_prints_exports_and_records_its_stack(up: Up) -> None:
    url, key, redis_url = up.export("QFLEET_URL"), up.export("QFLEET_API_KEY"), up.export("QFLEET_REDIS_URL")
    assert url == f"http://127.0.0.1:{up.port}" and key.startswith("qf_")
    assert f"http://127.0.0.1:{up.port}" in up.wait_for("qfleet is up at", 1)
    path = up.state_home / "qfleet" / "stack.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    state = json.loads(path.read_text())
    assert (state["url"], state["api_key"], state["redis_url"], state["pid"]) == (url, key, redis_url, up.proc.pid)
    one_circuit_job(url, key)


def test_embedded_redis_refuses_a_client_without_the_password(up: Up) -> None:
    parts = urlsplit(up.export("QFLEET_REDIS_URL"))
    assert parts.password and len(parts.password) >= 32
    with pytest.raises(AuthenticationError):
        Redis(host=parts.hostname or "", port=parts.port or 0).ping()
    with pytest.raises(AuthenticationError):
        Redis(host=parts.hostname or "", port=parts.port or 0, password="wrong").ping()
    assert Redis.from_url(up.export("QFLEET_REDIS_URL")).ping()
    assert Redis.from_url(up.export("QFLEET_REDIS_URL")).config_get("protected-mode") == {"protected-mode": "yes"}


def test_keys_find_the_stack_that_up_recorded(up: Up) -> None:
    created = up.cli("keys", "create", "alice")  # no QFLEET_REDIS_URL: the state file says where
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    one_circuit_job(up.export("QFLEET_URL"), key)  # the key landed in the stack's own Redis
    listed = up.cli("keys", "list")
    assert "tenant=alice" in listed.stdout
    audit = Store(Redis.from_url(up.export("QFLEET_REDIS_URL"))).audit_log()  # the CLI's admin actions are audited too
    assert any(e["action"] == "create key" and e["target"] == key[:10] and e.get("via") == "cli" for e in audit), audit


def test_up_restarts_a_killed_worker_and_jobs_still_complete(up: Up) -> None:
    redis = Redis.from_url(up.export("QFLEET_REDIS_URL"))
    before = {w.name: w.pid for w in Worker.all(connection=redis) if w.name.startswith("w0-")}
    assert len(before) == 1
    (old_pid,), mark = before.values(), len(up.lines)
    assert old_pid in up.children("qfleet_server.cli worker")
    os.kill(old_pid, signal.SIGKILL)
    assert "worker0" in up.wait_for(f"(pid {old_pid}) exited with signal SIGKILL", 30, mark)
    up.wait_for("worker0 restarted", 30, mark)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        now = {w.name: w.pid for w in Worker.all(connection=redis) if w.name.startswith("w0-")}
        if any(pid != old_pid for pid in now.values()):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the restarted worker never registered")
    one_circuit_job(up.export("QFLEET_URL"), up.export("QFLEET_API_KEY"), rows=200)
    assert up.proc.poll() is None


def test_up_restarts_a_killed_api(up: Up) -> None:
    (api_pid,) = up.children("uvicorn")
    mark = len(up.lines)
    os.kill(api_pid, signal.SIGKILL)
    up.wait_for(f"api (pid {api_pid}) exited with signal SIGKILL; restarting", 30, mark)
    up.wait_for("api restarted", 30, mark)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{up.export('QFLEET_URL')}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    one_circuit_job(up.export("QFLEET_URL"), up.export("QFLEET_API_KEY"))
    assert up.children("uvicorn") != [api_pid]


def test_health_checks_this_hosts_own_worker(up: Up) -> None:
    ok = up.cli("health")  # what each compose worker container runs
    assert ok.returncode == 0 and ok.stdout.strip() == "ok", ok.stderr
    stale = up.cli("health", "--max-age", "0")  # idle workers: no heartbeat that fresh, no lease
    assert stale.returncode == 1 and "neither heartbeat nor hold a live lease" in stale.stderr


def test_up_stops_on_sigterm_and_forgets_its_stack(up: Up) -> None:
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(60) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{up.export('QFLEET_URL')}/healthz", timeout=2)
    assert not (up.state_home / "qfleet" / "stack.json").exists()
    gone = up.cli("keys", "list")  # nothing recorded now: one line saying what to set
    assert gone.returncode == 1 and "QFLEET_REDIS_URL" in gone.stderr
    assert len(gone.stderr.strip().splitlines()) == 1, gone.stderr


def test_health_fails_where_no_worker_of_this_host_runs(clean_redis: str) -> None:
    env = {**os.environ, "QFLEET_REDIS_URL": clean_redis}
    out = subprocess.run(
        [sys.executable, "-m", "qfleet_server.cli", "health"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1 and "no worker of host" in out.stderr


def test_cli_without_a_reachable_redis_says_what_to_set_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "QFLEET_REDIS_URL"}
    env["XDG_STATE_HOME"] = str(tmp_path)
    closed = f"redis://:secret@127.0.0.1:{free_port()}/0"
    cases = [
        (["keys", "create", "bob"], {}, "no stack is recorded"),
        (["worker"], {}, "no stack is recorded"),
        (["keys", "list"], {"QFLEET_REDIS_URL": closed}, "cannot reach Redis at redis://:***@127.0.0.1"),
        (["worker", "--burst"], {"QFLEET_REDIS_URL": closed}, "cannot reach Redis"),
    ]
    state = tmp_path / "qfleet" / "stack.json"
    for args, extra, says in cases:
        out = subprocess.run(
            [sys.executable, "-m", "qfleet_server.cli", *args],
            cwd=ROOT,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 1, out
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0] and "QFLEET_REDIS_URL" in lines[0], out.stderr
        assert "secret" not in out.stderr  # the password is never printed
    # a stack recorded by a process that is gone
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"pid": 2**22 + 1, "redis_url": closed}))
    out = subprocess.run(
        [sys.executable, "-m", "qfleet_server.cli", "keys", "list"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 1 and "is not running" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_demo_quick_writes_the_table_and_plots_for_every_method(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "qfleet_server.cli", "demo", "--quick", "--workers", "1", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    table = (tmp_path / "results.md").read_text()
    assert table.strip() in out.stdout
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    for method, label in LABELS.items():
        assert f"| {label} |" in table
        assert any(r["method"] == method and r["evals"] for r in runs), method
    qtha = [r for r in runs if r["method"] == "qtha"]
    assert qtha and all(r["circuits"] >= 100 and min(r["quantum_s"]) > 0 for r in qtha)  # one job a step
    assert all(max(r["quantum_s"]) == 0 for r in runs if r["method"] != "qtha")
    for name in ("curves.png", "time_per_step.png"):
        png = (tmp_path / name).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_demo_on_the_device_model_sends_the_quantum_adapter_to_wukong72(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "qfleet_server.cli", "demo", "--quick", "--backend", "wukong72", "--workers", "1"]
        + ["--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["config"]["backend"] == "wukong72" and results["config"]["shots"] == 1024
    (qtha,) = [r for r in results["runs"] if r["method"] == "qtha"]
    assert qtha["circuits"] == 9 and min(qtha["quantum_s"]) > 0  # one sequence a step, 9 positions
    assert "on `wukong72`, 1024 shots" in (tmp_path / "results.md").read_text()


def _compose_validator() -> jsonschema.Draft7Validator:
    schema = json.loads((ROOT / "tests" / "e2e" / "compose_spec" / "compose-spec.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def test_compose_file_matches_the_compose_specification() -> None:
    """Against the Compose Specification's own JSON schema (vendored), so no Docker is needed."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    validator = _compose_validator()
    assert [e.message for e in validator.iter_errors(compose)] == []
    assert compose["services"]["redis"]["command"][1:3] == ["--appendonly", "yes"]
    for name in ("api", "worker", "device-worker"):
        assert compose["services"][name]["depends_on"]["redis"]["condition"] == "service_healthy"
    for name, service in compose["services"].items():
        assert service["healthcheck"]["test"][0] == "CMD", name
        assert service["restart"] == ("on-failure" if "worker" in name else "unless-stopped"), name
    # no password, no stack: compose refuses to interpolate ${VAR:?} when it is unset
    assert "${QFLEET_REDIS_PASSWORD:?" in compose["x-redis-url"]
    assert "--requirepass" in compose["services"]["redis"]["command"]
    # the check can fail: a misspelt key and a wrong condition are refused
    typo = copy.deepcopy(compose)
    typo["services"]["api"]["helthcheck"] = typo["services"]["api"].pop("healthcheck")
    wrong = copy.deepcopy(compose)
    wrong["services"]["worker"]["depends_on"]["redis"]["condition"] = "service_up"
    assert not validator.is_valid(typo) and not validator.is_valid(wrong)


def test_docker_compose_reads_the_compose_file() -> None:
    out = subprocess.run(
        [*compose_command(), "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "QFLEET_REDIS_PASSWORD": "0" * 64},
    )
    assert out.returncode == 0, out.stderr


def compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    pytest.skip("Docker Compose is not installed; the compose file is checked against the specification above")


def test_compose_needs_a_redis_password_and_heals() -> None:
    env = {k: v for k, v in os.environ.items() if k != "QFLEET_REDIS_PASSWORD"}
    refused = subprocess.run([*compose_command(), "config", "-q"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert refused.returncode != 0 and "QFLEET_REDIS_PASSWORD" in refused.stderr
    out = subprocess.run(
        [*compose_command(), "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**env, "QFLEET_REDIS_PASSWORD": "ab" * 32},
    )
    assert out.returncode == 0, out.stderr
    services = yaml.safe_load(out.stdout)["services"]
    assert "--requirepass" in services["redis"]["command"]
    for name, service in services.items():
        # a worker drained from the dashboard exits 0 and stays down; anything else comes back
        assert service["restart"] == ("on-failure" if "worker" in name else "unless-stopped"), name
        assert service["healthcheck"]["test"], name
        if name != "redis":
            assert service["environment"]["QFLEET_REDIS_URL"] == f"redis://:{'ab' * 32}@redis:6379/0"
    for name in ("worker", "device-worker"):  # each worker container checks its own worker
        assert services[name]["healthcheck"]["test"][-2:] == ["qfleet", "health"]

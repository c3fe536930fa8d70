"""`qfleet up` as a user runs it, and the compose file as docker compose reads it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from qfleet import Client

from service.stack import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_qfleet_up_prints_url_and_key_and_stops_on_sigterm() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "QFLEET_REDIS_URL"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "up", "--port", str(port), "--workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line, f"qfleet up exited early: {''.join(lines)}"
            lines.append(line)
            if "key" in line.lower():
                break
        url_line, key_line = lines[-2], lines[-1]
        assert f"http://127.0.0.1:{port}" in url_line
        key = key_line.strip().split()[-1]
        assert key.startswith("qf_")
        with Client(f"http://127.0.0.1:{port}", api_key=key) as client:
            evs = (
                client.estimate([('OPENQASM 3.0; include "stdgates.inc"; qubit[1] q; x q[0];', "Z")])
                .result(timeout=30)[0]
                .evs
            )
        assert np.isclose(evs, -1.0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_demo_quick_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "service.cli", "demo", "--quick", "--workers", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "step   3  loss" in out.stdout and "summary: quantum head" in out.stdout


def test_compose_file_is_valid() -> None:
    if shutil.which("docker-compose"):
        command = ["docker-compose", "config", "-q"]
    elif (
        shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        command = ["docker", "compose", "config", "-q"]
    else:
        pytest.fail("docker compose is not installed (.ci/run installs docker-compose)")
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    text = (ROOT / "docker-compose.yml").read_text()
    for needle in ("appendonly", "healthcheck", "worker:", "api:", "redis:"):
        assert needle in text

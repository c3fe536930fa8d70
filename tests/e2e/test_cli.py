"""`qfleet up` and `qfleet demo` as a user runs them, and the compose file against the Compose Specification."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jsonschema
import numpy as np
import pytest
import yaml
from qfleet import Client

from examples.adapter.report import LABELS
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


def test_demo_quick_writes_the_table_and_plots_for_every_method(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "service.cli", "demo", "--quick", "--workers", "1", "--out", str(tmp_path)],
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
        [sys.executable, "-m", "service.cli", "demo", "--quick", "--backend", "wukong72", "--workers", "1"]
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
    for name in ("redis", "api", "worker"):
        assert compose["services"][name]["healthcheck"]["test"][0] == "CMD"
    # the check can fail: a misspelt key and a wrong condition are refused
    typo = copy.deepcopy(compose)
    typo["services"]["api"]["helthcheck"] = typo["services"]["api"].pop("healthcheck")
    wrong = copy.deepcopy(compose)
    wrong["services"]["worker"]["depends_on"]["redis"]["condition"] = "service_up"
    assert not validator.is_valid(typo) and not validator.is_valid(wrong)


def test_docker_compose_reads_the_compose_file() -> None:
    if shutil.which("docker-compose"):
        command = ["docker-compose", "config", "-q"]
    elif (
        shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        command = ["docker", "compose", "config", "-q"]
    else:
        pytest.skip("Docker Compose is not installed; the compose file is checked against the specification above")
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr

"""REST from the OpenAPI document alone: openapi-python-client generates a client from the
running stack's /openapi.json, and that client (in a Python that cannot import qfleet)
submits a job, reads its result and decodes the arrays as the document describes them.

The job checks the document's claims at once: a Pauli label's rightmost character is qubit 0,
an OpenQASM 3 circuit's parameters are in plain string order (th10 before th2), arrays are
base64 of little-endian float64, and observables of shape (2, 1) broadcast against values
of shape (3, P) to results of shape (2, 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from qfleet_server.stack import Stack

pytestmark = pytest.mark.e2e
pytest.importorskip("openapi_python_client")

USE_GENERATED_CLIENT = """
import base64, math, random, struct, sys, time

class Block:  # the generated package and the document are all this client has
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"qfleet", "qfleet_server", "qiskit", "numpy"}:
            raise ImportError(f"blocked: {name}")
sys.meta_path.insert(0, Block())

from qfleet_rest import AuthenticatedClient
from qfleet_rest.api.jobs import jobs_get_result, jobs_submit_job
from qfleet_rest.models import (
    Array, ArrayDtype, Circuit, CircuitFormat, ErrorBody, JobInfo, JobOptions, JobRequest,
    JobResultBody, Pub, SubmittedJob,
)

url, key = sys.argv[1], sys.argv[2]
qasm = (
    'OPENQASM 3.0; include "stdgates.inc"; input float[64] th2; input float[64] th10; '
    "qubit[2] q; ry(th2) q[0]; ry(th10) q[1];"
)
rows = [(random.uniform(0, 3), random.uniform(0, 3)) for _ in range(3)]  # (th10, th2): plain string order
values = Array(
    dtype=ArrayDtype.FLOAT64,
    shape=[3, 2],
    data=base64.b64encode(struct.pack("<6d", *[v for row in rows for v in row])).decode(),
)
pub = Pub(circuit=Circuit(format_=CircuitFormat.QASM3, data=qasm), observables=[["IZ"], ["ZI"]], parameter_values=values)

with AuthenticatedClient(base_url=url, token=key) as client:
    info = jobs_submit_job.sync(client=client, body=JobRequest(pubs=[pub], backend="aer", options=JobOptions()))
    assert isinstance(info, SubmittedJob) and not info.result, info  # no Prefer: answered at once
    deadline = time.monotonic() + 120
    answer = jobs_get_result.sync(client=client, job_id=info.id, wait=20)
    while isinstance(answer, JobInfo) and time.monotonic() < deadline:  # 202: not final yet, ask again
        answer = jobs_get_result.sync(client=client, job_id=info.id, wait=20)
    assert isinstance(answer, JobResultBody), answer
    evs = answer.results[0].evs
    assert evs.dtype == ArrayDtype.FLOAT64 and evs.shape == [2, 3], evs
    got = struct.unpack("<6d", base64.b64decode(evs.data))
    want = [math.cos(th2) for th10, th2 in rows] + [math.cos(th10) for th10, th2 in rows]  # IZ: qubit 0 = th2
    assert all(abs(g - w) < 1e-9 for g, w in zip(got, want)), (got, want)

    # Prefer: wait=N (a header the document declares): a small job comes back done, result included
    waited = jobs_submit_job.sync(client=client, body=JobRequest(pubs=[pub], backend="aer", options=JobOptions()), prefer="wait=10")
    assert isinstance(waited, SubmittedJob) and waited.status.value == "done", waited
    assert isinstance(waited.result, JobResultBody), waited
    got = struct.unpack("<6d", base64.b64decode(waited.result.results[0].evs.data))
    assert all(abs(g - w) < 1e-9 for g, w in zip(got, want)), (got, want)

    # a value outside an enum: the generated models would refuse to build it, so send the JSON as is
    raw = client.get_httpx_client().post("/v1/jobs", json={**JobRequest(pubs=[pub]).to_dict(), "options": {"priority": "urgent"}})
    assert raw.status_code == 422, raw.text
    refused = ErrorBody.from_dict(raw.json())  # the body the document declares for 422
    assert refused.error.code == "invalid_request" and "priority" in refused.error.message, raw.text
print("ok")
"""


def test_a_client_generated_from_the_document_alone_runs_a_job(stack: Stack, tmp_path: Path) -> None:
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(httpx.get(f"{stack.url}/openapi.json").json()))
    config = tmp_path / "config.yaml"
    config.write_text("project_name_override: qfleet_rest\npackage_name_override: qfleet_rest\npost_hooks: []\n")
    generated = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(spec),
            "--config",
            str(config),
            "--meta",
            "none",
            "--output-path",
            str(tmp_path / "qfleet_rest"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert "Warning" not in generated.stdout + generated.stderr, generated.stdout + generated.stderr
    script = tmp_path / "use.py"
    script.write_text(textwrap.dedent(USE_GENERATED_CLIENT))
    run = subprocess.run(
        [sys.executable, str(script), stack.url, stack.api_key],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        timeout=180,
    )
    assert run.stdout.strip() == "ok", run.stdout + run.stderr

"""Client mistakes against a real API (uvicorn + redis-server) that has no workers, so a
submitted job stays queued for as long as a test needs: the timeout is honoured with a
progress bar on, and Ctrl-C (a real SIGINT to a real process) names the job left running."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from qfleet import AsyncClient, Client, JobTimeoutError

from qfleet_server.stack import Stack, free_port

pytestmark = pytest.mark.e2e

QASM = 'OPENQASM 3.0; include "stdgates.inc"; input float[64] a; qubit[2] q; ry(a) q[0]; cx q[0], q[1];'
PUBS = [(QASM, "ZZ", [[0.1]])]


@pytest.fixture(scope="module")
def idle_api(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The API alone: jobs are accepted and never run."""
    with Stack(
        port=free_port(), workers=0, device_worker=False, redis_url=redis_url, log_dir=tmp_path_factory.mktemp("idle")
    ) as stack:
        yield stack


@pytest.fixture
def client(idle_api: Stack) -> Iterator[Client]:
    with Client(idle_api.url, api_key=idle_api.api_key) as c:
        yield c


@pytest.mark.parametrize("progress", [True, False])
def test_result_honours_its_timeout_with_or_without_a_progress_bar(client: Client, progress: bool) -> None:
    job = client.estimate(PUBS)
    started = time.monotonic()
    with pytest.raises(JobTimeoutError) as err:
        job.result(timeout=1.5, progress=progress)
    assert 1.4 < time.monotonic() - started < 4.0
    assert err.value.code == "job_timeout" and err.value.job_id == job.id
    assert "cancel()" in (err.value.hint or "")
    assert job.cancel().status == "cancelled"


def test_stream_honours_its_timeout(client: Client) -> None:
    job = client.estimate(PUBS)
    seen = []
    started = time.monotonic()
    with pytest.raises(JobTimeoutError):
        for info in job.stream(timeout=1.5):
            seen.append(info.status)
    assert seen == ["queued"] and time.monotonic() - started < 4.0
    job.cancel()


def test_async_result_takes_progress_and_honours_its_timeout(idle_api: Stack) -> None:
    async def main() -> None:
        async with AsyncClient(idle_api.url, api_key=idle_api.api_key) as client:
            job = await client.estimate(PUBS)
            try:
                await job.result(timeout=1.5, progress=True)
            finally:
                await job.cancel()

    started = time.monotonic()
    with pytest.raises(JobTimeoutError):
        asyncio.run(main())
    assert time.monotonic() - started < 4.0


def test_cancel_on_error_cancels_when_the_block_raises(client: Client) -> None:
    with pytest.raises(JobTimeoutError):
        with client.estimate(PUBS, cancel_on_error=True) as job:
            job.result(timeout=0.5, progress=False)
    assert job.status().status == "cancelled"
    with client.estimate(PUBS) as kept:  # not asked: the job is left alone
        pass
    assert kept.status().status == "queued"
    kept.cancel()


def interrupted(stack: Stack, tmp_path: Path, body: str) -> tuple[str, str, int]:
    """Run ``body`` in a fresh Python that prints the job id and then waits; SIGINT it; return (id, stderr, rc)."""
    script = tmp_path / "wait.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from qfleet import Client
            client = Client({stack.url!r}, api_key={stack.api_key!r})
            """
        )
        + textwrap.dedent(body)
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ
    )
    assert proc.stdout is not None
    job_id = proc.stdout.readline().strip()
    time.sleep(1.0)  # inside result(): the long-poll is held by the service
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    return job_id, stderr, proc.returncode


def test_ctrl_c_in_result_names_the_job_and_how_to_cancel_it(idle_api: Stack, client: Client, tmp_path: Path) -> None:
    job_id, stderr, rc = interrupted(
        idle_api,
        tmp_path,
        """
        job = client.estimate([({qasm!r}, "ZZ", [[0.1]])])
        print(job.id, flush=True)
        job.result(progress=True)
        """.replace("{qasm!r}", repr(QASM)),
    )
    assert job_id.startswith("j-")
    assert rc != 0 and "KeyboardInterrupt" in stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("qfleet:")]
    assert lines == [
        f"qfleet: interrupted; job {job_id} keeps running on the service. Cancel it with "
        f"client.job('{job_id}').cancel() or DELETE {idle_api.url}/v1/jobs/{job_id}"
    ]
    assert "httpcore" not in stderr.split("KeyboardInterrupt")[-1]
    job = client.job(job_id)
    assert job.status().status == "queued"  # left running, as the line says
    job.cancel()


def test_ctrl_c_in_stream_inside_cancel_on_error_cancels(idle_api: Stack, client: Client, tmp_path: Path) -> None:
    job_id, stderr, rc = interrupted(
        idle_api,
        tmp_path,
        """
        with client.estimate([({qasm!r}, "ZZ", [[0.1]])], cancel_on_error=True) as job:
            print(job.id, flush=True)
            for info in job.stream():
                pass
        """.replace("{qasm!r}", repr(QASM)),
    )
    assert rc != 0 and "KeyboardInterrupt" in stderr
    assert f"qfleet: interrupted; cancelling job {job_id}" in stderr
    assert client.job(job_id).status().status == "cancelled"


def test_ctrl_c_under_asyncio_run_names_the_job_too(idle_api: Stack, client: Client, tmp_path: Path) -> None:
    job_id, stderr, rc = interrupted(
        idle_api,
        tmp_path,
        """
        import asyncio
        from qfleet import AsyncClient

        async def main():
            async with AsyncClient(client.url, api_key=client.api_key) as aclient:
                job = await aclient.estimate([({qasm!r}, "ZZ", [[0.1]])])
                print(job.id, flush=True)
                await job.result()

        asyncio.run(main())
        """.replace("{qasm!r}", repr(QASM)),
    )
    assert rc != 0 and "KeyboardInterrupt" in stderr
    assert f"qfleet: interrupted; job {job_id} keeps running on the service" in stderr
    client.job(job_id).cancel()

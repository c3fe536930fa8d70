"""Load test (not in CI): concurrent clients on loopback, bounded in time and count.

    python -m qfleet_server.bench.load [--clients 32] [--seconds 60]

Starts a local stack, runs small one-circuit jobs from N concurrent clients, first alone
and then while a huge job runs, and reports errors, lost jobs and p50/p99 latency for
each phase. Writes bench/results/load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from qfleet import AsyncClient, Client

from qfleet_server.bench.workloads import training_ansatz, z_observables
from qfleet_server.stack import Stack, free_port

MAX_JOBS_PER_CLIENT = 100_000  # a hard bound besides the time limit


async def phase(url: str, key: str, clients: int, seconds: float) -> dict[str, Any]:
    circuit = training_ansatz(4)
    values = np.zeros((1, circuit.num_parameters))
    latencies: list[float] = []
    errors: list[str] = []
    submitted = completed = 0
    deadline = time.monotonic() + seconds

    async def one_client() -> None:
        nonlocal submitted, completed
        async with AsyncClient(url, api_key=key) as client:
            for _ in range(MAX_JOBS_PER_CLIENT):
                if time.monotonic() >= deadline:
                    return
                t0 = time.perf_counter()
                try:
                    job = await client.estimate([(circuit, "ZIII", values)], cache=False)  # load, not cache hits
                    submitted += 1
                    await job.result(timeout=120)
                    completed += 1
                    latencies.append(time.perf_counter() - t0)
                except Exception as exc:  # counted and reported, never hidden
                    errors.append(f"{type(exc).__name__}: {exc}")

    await asyncio.gather(*(one_client() for _ in range(clients)))
    ms = np.array(latencies) * 1000
    return {
        "clients": clients,
        "seconds": seconds,
        "submitted": submitted,
        "completed": completed,
        "lost": submitted - completed - len(errors),
        "errors": len(errors),
        "error_samples": errors[:5],
        "jobs_per_s": completed / seconds,
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with Stack(port=free_port(), workers=2) as stack:
        results["alone"] = asyncio.run(phase(stack.url, stack.api_key, args.clients, args.seconds))
        with Client(stack.url, api_key=stack.api_key) as client:
            n = 16
            circuit = training_ansatz(n)
            huge = client.estimate([(circuit, z_observables(n), np.zeros((20_000, circuit.num_parameters)))])
            results["beside_huge_job"] = asyncio.run(phase(stack.url, stack.api_key, args.clients, args.seconds))
            status = huge.status()
            results["huge_job_progress"] = status.progress.model_dump()
            huge.cancel()
    out = Path(__file__).parent / "results" / "load.json"
    out.write_text(json.dumps(results, indent=2))
    for name in ("alone", "beside_huge_job"):
        r = results[name]
        print(
            f"{name:16s} clients {r['clients']}  jobs {r['completed']}  errors {r['errors']}  lost {r['lost']}  "
            f"p50 {r['p50_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms  ({r['jobs_per_s']:.0f} jobs/s)"
        )


if __name__ == "__main__":
    main()

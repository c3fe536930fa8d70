"""Where the time of one forward job goes, end to end, against qfleet's own engine in process.

Each repeat runs the job through the service, then the same rows on the Lightning engine in
this process (its best setting here: OpenMP as it comes, all cores; at n=12 one thread
measures the same, the per-gate calls are Python-bound), so every ratio is paired on the
same moment of a shared machine. The service's time is cut into spans from the client's clock
and the job's own record (one host, one clock):

- submit: the client encodes the PUBs and POSTs them, until it holds the job's id;
- queued: from the job's ``created_at`` (taken as the API stores it) to the first task's start
  in a worker (the API's answer, the queue, the worker's take);
- running: first task started to last task done (compute, result slices written);
- result: last task done until the client holds the arrays (the API's wait wakes, reads,
  assembles, encodes; HTTP; the client decodes).

Two stacks: one whose jobs stay one task (``QFLEET_TASK_MIN_S=0``: the queue and HTTP
overhead alone) and the default one, whose planner gives each of the 2 workers a share.

    python -m qfleet_server.bench.overhead [--repeats 20]   # bench/results/overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from qfleet import Client

from qfleet_server.bench.workloads import training_ansatz, z_observables
from qfleet_server.stack import Stack, free_port
from qfleet_server.worker.engines import Block, Program
from qfleet_server.worker.engines.lightning import LightningEngine

RESULTS = Path(__file__).parent / "results"
NO_CACHE = {"QFLEET_RESULT_CACHE_TTL_S": "0"}
SPANS = ("submit", "queued", "running", "result", "total", "in_process")


def measure(n: int, B: int, repeats: int, env: dict[str, str]) -> dict[str, Any]:
    circuit = training_ansatz(n)
    values = np.random.default_rng(n * 1000 + B).uniform(0, 2 * np.pi, (B, circuit.num_parameters))
    obs = z_observables(n)
    program = Program(circuit, [o[0] for o in obs])
    engine = LightningEngine(os.cpu_count() or 1)
    in_process = lambda: engine.estimate(program, Block(values=values))[0]  # noqa: E731
    rows = []
    with (
        Stack(port=free_port(), workers=2, env={**NO_CACHE, **env}) as stack,
        # submit_wait=0: the submit span is the submission alone, the result span the fetch
        Client(stack.url, api_key=stack.api_key, submit_wait=0) as client,
    ):
        for r in range(repeats + 2):  # the first two warm the workers and the connection
            t0 = time.time()
            job = client.estimate([(circuit, obs, values)])
            t1 = time.time()
            evs = job.result(timeout=120, progress=False)[0].evs
            t2 = time.time()
            t3 = time.perf_counter()
            want = in_process()
            t4 = time.perf_counter()
            np.testing.assert_allclose(evs, want, atol=1e-8)
            info = job.status()
            created, started, finished = info.created_at, info.started_at or 0.0, info.finished_at or 0.0
            if r >= 2:
                rows.append(
                    {
                        "submit": t1 - t0,
                        "queued": started - created,
                        "running": finished - started,
                        "result": t2 - finished,
                        "total": t2 - t0,
                        "in_process": t4 - t3,
                        "tasks": info.progress.tasks_total,
                    }
                )
    ratios = [x["total"] / x["in_process"] for x in rows]
    return {
        "env": env,
        "tasks": rows[0]["tasks"],
        "median_ms": {k: 1000 * statistics.median(x[k] for x in rows) for k in SPANS},
        "ratio": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
        "ratio_quartiles": [float(np.percentile(ratios, 25)), float(np.percentile(ratios, 75))],
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    n, B = 12, 256
    out = {
        "work": f"forward n={n} B={B}",
        "one_task": measure(n, B, args.repeats, {"QFLEET_TASK_MIN_S": "0"}),
        "shared": measure(n, B, args.repeats, {}),
        "load_average": os.getloadavg(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "overhead.json").write_text(json.dumps(out, indent=2))
    for name in ("one_task", "shared"):
        m = out[name]
        spans = ", ".join(f"{k} {v:.1f}" for k, v in m["median_ms"].items())
        lo, hi = m["ratio_range"]
        print(
            f"{out['work']}, {m['tasks']} task(s): {spans} ms; service / in-process {m['ratio']:.2f}x ({lo:.2f}-{hi:.2f})"
        )


if __name__ == "__main__":
    main()

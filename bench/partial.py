"""Partial results and listing, measured on a real stack:

- how soon a training loop gets its first finished slice (``job.stream(results=True)``)
  against the whole result, for the training ansatz n=12, B=6000 (two Z observables), beside
  the direct Aer EstimatorV2 call on the same work;
- what reading a partial result costs against reading the complete one (same job, done);
- one page of ``GET /v1/jobs`` (50 jobs, then filtered by tag) among a few hundred jobs.

    python -m qfleet_server.bench.partial      # writes bench/results/partial.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from qfleet import Client
from qiskit_aer.primitives import EstimatorV2

from qfleet_server.bench.run import median_time
from qfleet_server.bench.workloads import training_ansatz
from qfleet_server.stack import Stack, free_port

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    n, B = 12, 6000
    circuit = training_ansatz(n)
    values = np.random.default_rng(7).uniform(-np.pi, np.pi, (B, circuit.num_parameters))
    obs = [["Z" + "I" * (n - 1)], ["I" * (n - 1) + "Z"]]
    out: dict[str, Any] = {"n": n, "B": B}
    direct = EstimatorV2(options={"backend_options": {"runtime_parameter_bind_enable": True}})
    direct.run([(circuit, obs, values[:64])]).result()  # warm
    t0 = time.perf_counter()
    direct.run([(circuit, obs, values)]).result()
    out["direct_aer_s"] = round(time.perf_counter() - t0, 3)  # the same work in one process, for scale
    with Stack(port=free_port(), workers=2) as stack, Client(stack.url, api_key=stack.api_key) as client:
        client.estimate([(circuit, obs, values[:64])]).result(timeout=120, progress=False)  # warm the workers
        t0 = time.perf_counter()
        job = client.estimate([(circuit, obs, values)])
        first = None
        parts = 0
        for part in job.stream(timeout=300, results=True):
            parts += 1
            if first is None and part[0].mask is not None and part[0].mask.any():
                first = time.perf_counter() - t0
                out["first_fraction_ready"] = float(part[0].mask.mean())
        out["first_slice_s"] = round(first or 0.0, 3)
        out["whole_result_s"] = round(time.perf_counter() - t0, 3)
        out["partials_streamed"] = parts
        out["tasks"] = job.status().progress.tasks_total
        out["read_result_s"] = round(median_time(lambda: job.result(timeout=60, progress=False), 7), 4)
        out["read_partial_s"] = round(median_time(job.partial, 7), 4)
        for i in range(300):
            client.estimate([(circuit, "Z" + "I" * (n - 1), values[i : i + 1])], tags={"step": str(i % 10)})
        out["list_page_50_s"] = round(median_time(lambda: client.jobs_page(limit=50), 7), 4)
        out["list_tag_page_s"] = round(median_time(lambda: client.jobs_page(tag="step:3", limit=50), 7), 4)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "partial.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

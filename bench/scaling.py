"""Scale-out on one host: 2 workers against 1 on a compute-bound stream of jobs, beside the
host's own ceiling, measured in the same run.

The ceiling is qfleet's engine in bare processes (no API, queue or Redis), one against two
in parallel on the same rows: what two cores of this machine give when nothing else of
qfleet runs. The service's 2-vs-1 ratio can only approach it. Both stacks (1 worker, 2
workers) and both bare set-ups stay up for the whole run and take turns, round by round, so
each round's four figures see about the same load on a shared machine.

    python -m qfleet_server.bench.scaling [--rounds 5] [--jobs 8]   # bench/results/scaling.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import time
from contextlib import ExitStack
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
from qfleet import Client

from qfleet_server.bench.workloads import training_ansatz, z_observables
from qfleet_server.stack import Stack, free_port

RESULTS = Path(__file__).parent / "results"
NO_CACHE = {"QFLEET_RESULT_CACHE_TTL_S": "0"}  # every job computes (the rows repeat)


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _bare_child(n: int, B: int, conn: Connection) -> None:
    """One bare engine process, one engine thread as a worker has (the variables are set before
    it starts: a spawned child imports numpy, and sizes BLAS's threads, before this runs): runs
    ``jobs`` x B rows on each request and answers (start, end) wall-clock times."""
    assert all(os.environ.get(var) == "1" for var in THREAD_VARS)
    from qfleet_server.worker.engines import Block, Program
    from qfleet_server.worker.engines.lightning import LightningEngine

    circuit = training_ansatz(n)
    values = np.random.default_rng(2).uniform(0, 2 * np.pi, (B, circuit.num_parameters))
    program = Program(circuit, [o[0] for o in z_observables(n)])
    engine = LightningEngine(1)
    engine.estimate(program, Block(values=values[:8]))
    conn.send("ready")
    while (jobs := conn.recv()) is not None:
        t0 = time.time()
        for _ in range(jobs):
            engine.estimate(program, Block(values=values))
        conn.send((t0, time.time()))


class Bare:
    """Two warm bare engine processes; :meth:`run` times k of them on ``jobs`` x B rows each."""

    def __init__(self, n: int, B: int) -> None:
        self.n, self.B = n, B
        ctx = mp.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs = []
        saved = {var: os.environ.get(var) for var in THREAD_VARS}
        os.environ.update(dict.fromkeys(THREAD_VARS, "1"))  # the children's environment
        try:
            for _ in range(2):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_bare_child, args=(n, B, child), daemon=True)
                proc.start()
                self.pipes.append(parent)
                self.procs.append(proc)
        finally:
            for var, value in saved.items():
                if value is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = value
        for pipe in self.pipes:
            if pipe.recv() != "ready":
                raise RuntimeError("a bare engine process did not start")

    def run(self, k: int, jobs: int) -> float:
        """Circuits per second of k processes, each running ``jobs`` x B rows at once."""
        for pipe in self.pipes[:k]:
            pipe.send(jobs)
        spans = [pipe.recv() for pipe in self.pipes[:k]]
        return k * jobs * self.B / (max(end for _, end in spans) - min(start for start, _ in spans))

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(None)
        for proc in self.procs:
            proc.join(10)


def stream(client: Client, n: int, B: int, jobs: int) -> float:
    """Circuits per second of ``jobs`` jobs of B rows, all submitted, then all waited for."""
    circuit = training_ansatz(n)
    values = np.random.default_rng(2).uniform(0, 2 * np.pi, (B, circuit.num_parameters))
    obs = z_observables(n)
    t0 = time.perf_counter()
    handles = [client.estimate([(circuit, obs, values)]) for _ in range(jobs)]
    for handle in handles:
        handle.result(timeout=600, progress=False)
    return jobs * B / (time.perf_counter() - t0)


def scaling(n: int, B: int, jobs: int, rounds: int) -> dict[str, Any]:
    """Rounds of four turns (1 worker, 2 workers, 1 bare process, 2 bare processes; the order
    flips every round), each worker running one engine thread. Returns every round's figures,
    and the medians of the per-round ratios."""
    circuit = training_ansatz(n)
    with ExitStack() as stack:
        clients = {}
        for workers in (1, 2):
            s = stack.enter_context(
                Stack(port=free_port(), workers=workers, threads_per_worker=1, env=NO_CACHE, device_worker=False)
            )
            # submit_wait=0: every job is queued before any is waited for, as stream() says (a job
            # priced within the client's default wait would otherwise be waited for at submission)
            client = clients[workers] = stack.enter_context(Client(s.url, api_key=s.api_key, submit_wait=0))
            values = np.random.default_rng(0).uniform(0, 1, (8, circuit.num_parameters))
            client.estimate([(circuit, z_observables(n), values)]).result(timeout=120, progress=False)  # warm
        bare = Bare(n, B)
        stack.callback(bare.close)
        out: list[dict[str, float]] = []
        for r in range(rounds):
            turns = ["one", "two", "bare_one", "bare_two"]
            row: dict[str, float] = {}
            for turn in turns if r % 2 == 0 else turns[::-1]:
                if turn.startswith("bare"):
                    row[turn] = bare.run(1 if turn == "bare_one" else 2, jobs)
                else:
                    row[turn] = stream(clients[1 if turn == "one" else 2], n, B, jobs)
            row["scaling"] = row["two"] / row["one"]
            row["bare_scaling"] = row["bare_two"] / row["bare_one"]
            out.append(row)
            print(
                f"round {r}: 1 worker {row['one']:.0f}/s, 2 workers {row['two']:.0f}/s ({row['scaling']:.2f}x); "
                f"bare 1 process {row['bare_one']:.0f}/s, 2 processes {row['bare_two']:.0f}/s ({row['bare_scaling']:.2f}x)",
                flush=True,
            )
    best_one, best_two = max(r["one"] for r in out), max(r["two"] for r in out)
    return {
        "work": f"throughput n={n} B={B} x{jobs} jobs",
        "rounds": out,
        "one_worker_cps": statistics.median(r["one"] for r in out),
        "two_workers_cps": statistics.median(r["two"] for r in out),
        "scaling": statistics.median(r["scaling"] for r in out),
        "scaling_range": [min(r["scaling"] for r in out), max(r["scaling"] for r in out)],
        "bare_scaling": statistics.median(r["bare_scaling"] for r in out),
        "bare_scaling_range": [min(r["bare_scaling"] for r in out), max(r["bare_scaling"] for r in out)],
        "best_runs_scaling": best_two / best_one,
        "load_average": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--B", type=int, default=128)
    args = parser.parse_args()
    result = scaling(args.n, args.B, args.jobs, args.rounds)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scaling.json").write_text(json.dumps(result, indent=2))
    lo, hi = result["scaling_range"]
    blo, bhi = result["bare_scaling_range"]
    print(
        f"{result['work']}: 2 vs 1 worker {result['scaling']:.2f}x (rounds {lo:.2f}-{hi:.2f}); "
        f"bare engine processes {result['bare_scaling']:.2f}x ({blo:.2f}-{bhi:.2f})"
    )


if __name__ == "__main__":
    main()

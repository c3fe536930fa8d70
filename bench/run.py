"""The qfleet benchmark: the service and the direct library call on the same work, in
the same run, reported as ratios (the machine is shared and noisy; ratios hold).

    make bench            # or: python -m qfleet_server.bench.run [--quick]

Writes bench/results/latest.json and bench/results/latest.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from qfleet import Client
from qiskit_aer.primitives import EstimatorV2

from qfleet_server.bench.peers import http_peer, rq_floor, rq_peer
from qfleet_server.bench.scaling import scaling
from qfleet_server.bench.workloads import training_ansatz, z_observables
from qfleet_server.stack import Stack, free_port
from qfleet_server.worker.engines import Block, Program
from qfleet_server.worker.engines.lightning import LightningEngine

RESULTS = Path(__file__).parent / "results"
# Rows that time the same job again and again measure computing it: the result cache is off
# on their stacks (it has a row of its own, on a stack with the cache on).
NO_CACHE = {"QFLEET_RESULT_CACHE_TTL_S": "0"}


def median_time(fn: Callable[[], Any], repeats: int, warm: bool = True) -> float:
    """The median of ``repeats`` timed calls of ``fn``, after one untimed call unless ``warm`` is off."""
    if warm:
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def direct_aer(circuit: Any, obs: Any, values: np.ndarray) -> Callable[[], Any]:
    estimator = EstimatorV2(options={"backend_options": {"runtime_parameter_bind_enable": True}})
    return lambda: estimator.run([(circuit, obs, values)]).result()[0].data.evs


def ansatz_tapes(n: int, values: np.ndarray, layers: int = 2) -> list[Any]:
    """The training ansatz as PennyLane tapes, one per parameter set, measuring Z on each qubit
    (qiskit qubit q is PennyLane wire n-1-q): the standard way to drive lightning.qubit."""
    import pennylane as qml

    tapes = []
    for x in values:
        ops, k = [], 0
        for _ in range(layers):
            for q in range(n):
                ops += [qml.RY(x[k], wires=n - 1 - q), qml.RZ(x[k + 1], wires=n - 1 - q)]
                k += 2
            ops += [qml.CNOT(wires=[n - 1 - q, n - 2 - q]) for q in range(n - 1)]
        tapes.append(qml.tape.QuantumScript(ops, [qml.expval(qml.PauliZ(n - 1 - i)) for i in range(n)]))
    return tapes


def direct_lightning(n: int, values: np.ndarray) -> Callable[[], Any]:
    import pennylane as qml

    dev = qml.device("lightning.qubit", wires=n)
    return lambda: np.array(dev.execute(ansatz_tapes(n, values))).T


def forward(client: Client, n: int, B: int, repeats: int) -> dict[str, Any]:
    """One PUB of B parameter sets: Aer and Lightning's device called directly, qfleet's own
    Lightning engine called in this process (its best setting: OpenMP and BLAS as they come, all
    cores; at n=12 one thread times the same, the per-gate calls being Python-bound), and
    the service end to end through the client."""
    rng = np.random.default_rng(n * 1000 + B)
    circuit = training_ansatz(n)
    values = rng.uniform(0, 2 * np.pi, (B, circuit.num_parameters))
    obs = z_observables(n)
    aer = direct_aer(circuit, obs, values)
    light = direct_lightning(n, values)
    service = lambda: client.estimate([(circuit, obs, values)]).result(timeout=600)[0].evs  # noqa: E731
    program = Program(circuit, [o[0] for o in obs])
    engine = LightningEngine(os.cpu_count() or 1)
    kernels = lambda: engine.estimate(program, Block(values=values))[0]  # noqa: E731
    np.testing.assert_allclose(service(), aer(), atol=1e-8)
    np.testing.assert_allclose(light(), aer(), atol=1e-8)
    np.testing.assert_allclose(kernels(), aer(), atol=1e-8)
    t_aer, t_light, t_kernels, t_service = (median_time(f, repeats) for f in (aer, light, kernels, service))
    best = min(t_aer, t_light)
    return {
        "work": f"forward n={n} B={B}",
        "direct_aer_s": t_aer,
        "direct_lightning_s": t_light,
        "qfleet_engine_in_process_s": t_kernels,
        "service_s": t_service,
        "ratio_vs_best_direct": t_service / best,
        "ratio_vs_engine_in_process": t_service / t_kernels,
    }


def direct_lightning_adjoint(n: int, values: np.ndarray) -> Callable[[], Any]:
    import pennylane as qml
    from pennylane.devices import ExecutionConfig

    dev = qml.device("lightning.qubit", wires=n)
    config = ExecutionConfig(gradient_method="adjoint")

    def run() -> Any:
        evs, jac = dev.execute_and_compute_derivatives(ansatz_tapes(n, values), config)
        return np.array(evs).T, np.array(jac).transpose(1, 0, 2)  # (n, B), (n, B, P)

    return run


def direct_aer_parameter_shift(circuit: Any, obs: Any, values: np.ndarray) -> Callable[[], Any]:
    """Each ansatz parameter drives one rotation, so shifting θ_p by ±π/2 is the two-term rule."""
    estimator = EstimatorV2(options={"backend_options": {"runtime_parameter_bind_enable": True}})
    B, P = values.shape

    def run() -> Any:
        shifts = np.concatenate([np.zeros((1, P)), np.pi / 2 * np.eye(P), -np.pi / 2 * np.eye(P)])
        rows = (values[:, None, :] + shifts[None]).reshape(-1, P)  # B(2P+1) circuits
        evs = estimator.run([(circuit, obs, rows)]).result()[0].data.evs.reshape(len(obs), B, 2 * P + 1)
        return evs[..., 0], (evs[..., 1 : P + 1] - evs[..., P + 1 :]) / 2

    return run


def gradient(client: Client, n: int, B: int, repeats: int) -> dict[str, Any]:
    rng = np.random.default_rng(n * 7 + B)
    circuit = training_ansatz(n)
    values = rng.uniform(0, 2 * np.pi, (B, circuit.num_parameters))
    obs = z_observables(n)
    adjoint = direct_lightning_adjoint(n, values)
    shift = direct_aer_parameter_shift(circuit, obs, values)

    def service() -> Any:
        result = client.estimate([(circuit, obs, values)], gradient="auto").result(timeout=600)[0]
        return result.evs, result.gradient

    (e1, g1), (e2, g2), (e3, g3) = service(), adjoint(), shift()
    np.testing.assert_allclose(e1, e2, atol=1e-8)
    np.testing.assert_allclose(g1, g2, atol=1e-8)
    np.testing.assert_allclose(g1, g3, atol=1e-8)
    np.testing.assert_allclose(e1, e3, atol=1e-8)
    t_adj, t_shift, t_service = (median_time(f, repeats) for f in (adjoint, shift, service))
    return {
        "work": f"forward+gradient n={n} B={B}",
        "direct_lightning_adjoint_s": t_adj,
        "direct_aer_parameter_shift_s": t_shift,
        "service_auto_s": t_service,
        "ratio_vs_lightning_adjoint": t_service / t_adj,
        "speedup_vs_aer_parameter_shift": t_shift / t_service,
    }


def device(
    client: Client, n: int, B: int, noise: bool, shots: int, observables: list[str], repeats: int
) -> dict[str, Any]:
    """wukong72 through the service against Aer run directly on the same transpiled, compacted
    circuit, the same noise model (or none), the same method and shots."""
    from qiskit.primitives import BackendEstimatorV2
    from qiskit.quantum_info import SparsePauliOp
    from qiskit_aer import AerSimulator

    from qfleet_server.devices.wukong72 import Wukong72Backend
    from qfleet_server.worker.engines.device import DeviceEngine

    circuit = training_ansatz(n)
    values = np.random.default_rng(n + B).uniform(0, 2 * np.pi, (B, circuit.num_parameters))
    engine = DeviceEngine(Wukong72Backend(), 1)
    program = Program(circuit, [SparsePauliOp(o) for o in observables])
    compiled = engine.compile(program)
    method = engine.method(len(compiled.physical), noise)
    simulator = AerSimulator(method=method, noise_model=engine.noise_model(compiled.physical) if noise else None)
    estimator = BackendEstimatorV2(
        backend=simulator, options={"default_precision": 1 / np.sqrt(shots), "seed_simulator": 5}
    )
    obs = [[o] for o in compiled.observables]
    direct = lambda: estimator.run([(compiled.circuit, obs, values[:, compiled.columns])]).result()[0].data.evs  # noqa: E731

    def service() -> Any:
        return (
            client.estimate(
                [(circuit, [[o] for o in observables], values)], backend="wukong72", shots=shots, seed=5, noise=noise
            )
            .result(timeout=600)[0]
            .evs
        )

    got, want = service(), direct()
    assert got.shape == want.shape
    t_direct, t_service = median_time(direct, repeats), median_time(service, repeats)
    return {
        "work": f"wukong72 n={n} B={B} {'noisy' if noise else 'noise off'}, {shots} shots (Aer: {method})",
        "engine": engine._engine_name(len(compiled.physical), noise),
        "direct_aer_s": t_direct,
        "service_s": t_service,
        "ratio": t_service / t_direct,
        "direct_aer_ms_per_set": 1000 * t_direct / B,
        "service_ms_per_set": 1000 * t_service / B,
    }


def device_engines(n: int, B: int, shots: int, repeats: int, aer_methods: tuple[str, ...]) -> dict[str, Any]:
    """In-process, ms per parameter set of the noisy training ansatz (Z on each qubit): qfleet's
    batched density-matrix engine against Aer's BackendEstimatorV2 with each method, on the same
    transpiled circuit and noise model: where the crossover lies."""
    from qiskit.primitives import BackendEstimatorV2
    from qiskit_aer import AerSimulator

    from qfleet_server.devices.wukong72 import Wukong72Backend
    from qfleet_server.worker.engines.device import DeviceEngine

    circuit = training_ansatz(n)
    values = np.random.default_rng(n + B).uniform(0, 2 * np.pi, (B, circuit.num_parameters))
    engine = DeviceEngine(Wukong72Backend(), 1)
    program = Program(circuit, [o[0] for o in z_observables(n)])
    compiled = engine.compile(program)
    row: dict[str, Any] = {"work": f"wukong72 n={n} noisy, {shots} shots, in-process", "B": B}
    block = Block(values=values, shots=shots, seed=5)
    row["density_ms_per_set"] = 1000 * median_time(lambda: engine._estimate_density(program, block, shots), repeats) / B
    for method in aer_methods:
        simulator = AerSimulator(method=method, noise_model=engine.noise_model(compiled.physical))
        estimator = BackendEstimatorV2(
            backend=simulator, options={"default_precision": 1 / np.sqrt(shots), "seed_simulator": 5}
        )
        pub = (compiled.circuit, [[o] for o in compiled.observables], values[:, compiled.columns])
        t = median_time(lambda e=estimator, p=pub: e.run([p]).result(), repeats)  # type: ignore[misc]
        row[f"aer_{method}_ms_per_set"] = 1000 * t / B
    return row


def device_table(results: dict[str, Any]) -> list[str]:
    rows = ["", "| work | engine | direct Aer, same transpiled work | service | ratio |", "|---|---|---|---|---|"]
    for d in results.get("device", []):
        rows.append(
            f"| {d['work']} | {d.get('engine', '')} | {d['direct_aer_s'] * 1000:.1f} ms "
            f"({d.get('direct_aer_ms_per_set', 0):.1f} ms/set) | {d['service_s'] * 1000:.1f} ms "
            f"({d.get('service_ms_per_set', 0):.1f} ms/set) | {d['ratio']:.2f}× |"
        )
    for e in results.get("device_engines", []):
        aer = ", ".join(f"{k[4:-11]} {v:.1f}" for k, v in e.items() if k.startswith("aer_"))
        aer = f"Aer {aer} ms/set" if aer else ""
        rows.append(f"| {e['work']} B={e['B']} | qfleet density {e['density_ms_per_set']:.2f} ms/set | {aer} | | |")
    return rows


def device_only(repeats: int) -> None:
    """The wukong72 rows alone: the noisy n=8 and n=12 training ansatz through the service beside
    Aer on the same work, and the in-process engines per qubit count."""
    rows: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with Stack(port=free_port(), workers=2, env=NO_CACHE) as stack, Client(stack.url, api_key=stack.api_key) as client:
        rows["device"] = [
            device(client, n, B, True, 1024, ["I" * (n - 1 - i) + "Z" + "I" * i for i in range(n)], repeats)
            for n, B in ((8, 64), (12, 8))
        ]
    rows["device_engines"] = [
        device_engines(8, 32, 1024, repeats, ("density_matrix", "statevector")),
        device_engines(10, 8, 1024, repeats, ("density_matrix", "statevector")),
        device_engines(11, 2, 1024, 1, ("statevector",)),
        device_engines(12, 8, 1024, repeats, ()),  # Aer on n=12 is the service row's direct column
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "device.json").write_text(json.dumps(rows, indent=2))
    print("\n".join(device_table(rows)))


def concurrent_jobs(stack: Stack, clients: int, count: int, seed: int = 0) -> dict[str, Any]:
    """One-circuit jobs from ``clients`` concurrent clients (one AsyncClient each, as a training
    job's data-parallel processes would be), ``count`` jobs each: jobs per second, against RQ's
    no-op jobs from as many client threads on as many warm SimpleWorkers as the stack has."""
    import asyncio

    from qfleet import AsyncClient

    circuit = training_ansatz(4)
    rng = np.random.default_rng(seed)  # fresh values for every job, as a training loop sends them
    lat: list[float] = []

    async def run() -> float:
        async def one_client() -> None:
            async with AsyncClient(stack.url, api_key=stack.api_key) as client:
                for i in range(count + 2):
                    values = rng.uniform(0, 1, (1, circuit.num_parameters))
                    t0 = time.perf_counter()
                    await (await client.estimate([(circuit, "ZIII", values)])).result(timeout=60)
                    if i >= 2:  # each client's first jobs warm its connection
                        lat.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        return clients * (count + 2) / (time.perf_counter() - t0)

    rate = asyncio.run(run())
    _, rq_rate = rq_floor(stack.redis_url or "", count, workers=stack.workers, clients=clients)
    return {
        "work": f"one-circuit jobs n=4, {clients} concurrent clients x{count}",
        "jobs_per_s": rate,
        "p50_ms": 1000 * float(np.percentile(lat, 50)),
        "p99_ms": 1000 * float(np.percentile(lat, 99)),
        "rq_jobs_per_s": rq_rate,
        "rq_workers": stack.workers,
        "ratio_vs_rq": rate / rq_rate,
    }


def naive_vs_batched(client: Client, B: int) -> dict[str, Any]:
    circuit = training_ansatz(4)
    values = np.random.default_rng(1).uniform(0, 2 * np.pi, (B, circuit.num_parameters))
    obs = z_observables(4)
    batched = median_time(lambda: client.estimate([(circuit, obs, values)]).result(timeout=60), 5)
    t0 = time.perf_counter()
    for x in values:
        client.estimate([(circuit, obs, x)]).result(timeout=60)
    naive = time.perf_counter() - t0
    return {
        "work": f"forward n=4 B={B}: one request per circuit vs one job",
        "naive_s": naive,
        "batched_s": batched,
        "speedup": naive / batched,
    }


def many_pubs(client: Client, n: int, count: int, repeats: int) -> dict[str, Any]:
    """A training library's request: one PUB per parameter set, all sharing one circuit,
    against the same work as one PUB of ``count`` rows."""
    circuit = training_ansatz(n)
    values = np.random.default_rng(4).uniform(0, 2 * np.pi, (count, circuit.num_parameters))
    obs = z_observables(n)
    one = median_time(lambda: client.estimate([(circuit, [[o] for o in obs], values)]).result(timeout=300), repeats)
    many = median_time(lambda: client.estimate([(circuit, obs, row) for row in values]).result(timeout=300), repeats)
    return {"work": f"forward n={n}: {count} one-row PUBs vs one PUB of {count} rows", "one_pub_s": one,
            "many_pubs_s": many, "ratio": many / one}  # fmt: skip


def sampler(client: Client, n: int, B: int, shots: int, repeats: int) -> dict[str, Any]:
    """Sampling B parameter sets of the training ansatz: the service against Aer's SamplerV2."""
    from qiskit_aer.primitives import SamplerV2

    circuit = training_ansatz(n)
    circuit.measure_all()
    values = np.random.default_rng(5).uniform(0, 2 * np.pi, (B, circuit.num_parameters))
    aer = SamplerV2(seed=1)
    direct = median_time(lambda: aer.run([(circuit, values, shots)]).result()[0].data.meas, repeats)
    service = median_time(lambda: client.sample([(circuit, values, shots)], seed=1).result(timeout=300), repeats)
    return {"work": f"sampler n={n} B={B} x {shots} shots", "direct_aer_s": direct, "service_s": service,
            "ratio": service / direct}  # fmt: skip


def repeated_job(client: Client, n: int, B: int, repeats: int) -> dict[str, Any]:
    """The result cache: a job, then the same job again, end to end through the client. Fresh
    inputs for each pair, so every first job computes; the second must equal it and Aer."""
    circuit = training_ansatz(n)
    obs = z_observables(n)
    rng = np.random.default_rng()
    run = lambda values: client.estimate([(circuit, obs, values)]).result(timeout=600)[0].evs  # noqa: E731
    run(rng.uniform(0, 2 * np.pi, (8, circuit.num_parameters)))  # warm
    firsts, seconds = [], []
    for _ in range(repeats):
        values = rng.uniform(0, 2 * np.pi, (B, circuit.num_parameters))
        t0 = time.perf_counter()
        first = run(values)
        t1 = time.perf_counter()
        second = run(values)
        seconds.append(time.perf_counter() - t1)
        firsts.append(t1 - t0)
        np.testing.assert_array_equal(second, first)
    np.testing.assert_allclose(second, direct_aer(circuit, obs, values)(), atol=1e-8)
    first_s, second_s = statistics.median(firsts), statistics.median(seconds)
    return {"work": f"first vs second identical job n={n} B={B}", "first_s": first_s, "second_s": second_s,
            "speedup": first_s / second_s}  # fmt: skip


def cache_table(results: dict[str, Any]) -> list[str]:
    if "cache" not in results:
        return []
    c = results["cache"]
    return [
        "",
        "| work | first job (computes) | second job (result cache) | speedup | target |",
        "|---|---|---|---|---|",
        f"| {c['work']} | {c['first_s'] * 1000:.0f} ms | {c['second_s'] * 1000:.1f} ms | {c['speedup']:.0f}× faster | ≥20× |",
    ]


def table(results: dict[str, Any]) -> str:
    rows = [
        "| work | direct library (best) | qfleet engine in-process | service end to end | ratio vs best direct | target |",
        "|---|---|---|---|---|---|",
    ]
    rows += forward_rows(results)
    rows.append(small_row(results["small_jobs"]))
    if "concurrent" in results:
        c = results["concurrent"]
        rows.append(
            f"| {c['work']} | RQ no-op jobs, {c['rq_workers']} workers: {c['rq_jobs_per_s']:.0f} jobs/s | "
            f"| {c['jobs_per_s']:.0f} jobs/s (p50 {c['p50_ms']:.0f} ms, p99 {c['p99_ms']:.0f} ms) "
            f"| {c['ratio_vs_rq']:.2f}× RQ's jobs/s | reported |"
        )
    rows += throughput_rows(results)
    nv = results["naive"]
    rows.append(
        f"| {nv['work']} | | naive: {nv['naive_s'] * 1000:.0f} ms | batched: {nv['batched_s'] * 1000:.1f} ms | {nv['speedup']:.0f}× faster | ≥50× |"
    )
    rows += [
        "",
        '| work | direct Lightning adjoint | direct Aer parameter shift | service `gradient="auto"` | vs adjoint (target ≤1.25×) | vs Aer shift (target ≥4× faster) |',
        "|---|---|---|---|---|---|",
    ]
    for g in results["gradient"]:
        rows.append(
            f"| {g['work']} | {g['direct_lightning_adjoint_s'] * 1000:.1f} ms | {g['direct_aer_parameter_shift_s'] * 1000:.1f} ms "
            f"| {g['service_auto_s'] * 1000:.1f} ms | {g['ratio_vs_lightning_adjoint']:.2f}× | {g['speedup_vs_aer_parameter_shift']:.1f}× faster |"
        )
    rows += device_table(results)
    rows += qiskit_table(results)
    rows += cache_table(results)
    return "\n".join(rows)


def small_row(s: dict[str, Any]) -> str:
    floor = s["rq_p50_ms"] + s["http_p50_ms"]
    return (
        f"| {s['work']} | {s['direct_aer_ms']:.2f} ms (RQ no-op round trip: p50 {s['rq_p50_ms']:.1f} ms, p99 {s['rq_p99_ms']:.1f} ms; "
        f"HTTP no-op: p50 {s['http_p50_ms']:.1f} ms) "
        f"| | p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms (in two requests: p50 {s['two_requests_p50_ms']:.1f} ms, "
        f"p99 {s['two_requests_p99_ms']:.1f} ms) | p50 {s['p50_ms'] / s['rq_p50_ms']:.2f}×, "
        f"p99 {s['p99_ms'] / s['rq_p99_ms']:.2f}× RQ's; p50 {s['p50_ms'] / floor:.2f}× RQ + HTTP "
        f"(RQ + HTTP itself: {floor / s['rq_p50_ms']:.2f}× RQ's) | p50 ≤1.5×, p99 ≤2× RQ's |"
    )


def throughput_rows(results: dict[str, Any]) -> list[str]:
    if "throughput" not in results:
        return []
    t = results["throughput"]
    (lo, hi), (blo, bhi) = t["scaling_range"], t["bare_scaling_range"]
    return [
        f"| {t['work']} | bare engine processes, 2 vs 1: {t['bare_scaling']:.2f}× ({blo:.2f}–{bhi:.2f}) "
        f"| 1 worker: {t['one_worker_cps']:.0f} circuits/s | 2 workers: {t['two_workers_cps']:.0f} circuits/s "
        f"| {t['scaling']:.2f}× ({lo:.2f}–{hi:.2f}, {len(t['rounds'])} rounds) | ≥1.7× |"
    ]


def forward_rows(results: dict[str, Any]) -> list[str]:
    rows = []
    for r in results["forward"]:
        best = min(r["direct_aer_s"], r["direct_lightning_s"])
        target = {"forward n=8 B=64": "≤1.5×"}.get(r["work"], "≤1.10×")
        rows.append(
            f"| {r['work']} | {best * 1000:.1f} ms (Aer {r['direct_aer_s'] * 1000:.1f}, Lightning {r['direct_lightning_s'] * 1000:.1f}) "
            f"| {r['qfleet_engine_in_process_s'] * 1000:.1f} ms | {r['service_s'] * 1000:.1f} ms | {r['ratio_vs_best_direct']:.2f}× | {target} |"
        )
    return rows


def qiskit_table(results: dict[str, Any]) -> list[str]:
    rows = []
    if "many_pubs" in results:
        m = results["many_pubs"]
        rows += ["", "| work | one PUB | many PUBs | ratio | target |", "|---|---|---|---|---|"]
        rows.append(
            f"| {m['work']} | {m['one_pub_s'] * 1000:.0f} ms | {m['many_pubs_s'] * 1000:.0f} ms | {m['ratio']:.2f}× | ≤1.5× |"
        )
    if "sampler" in results:
        s = results["sampler"]
        rows += ["", "| work | direct Aer SamplerV2 | service | ratio | target |", "|---|---|---|---|---|"]
        rows.append(
            f"| {s['work']} | {s['direct_aer_s'] * 1000:.0f} ms | {s['service_s'] * 1000:.0f} ms | {s['ratio']:.2f}× | ≤1.1× |"
        )
    return rows


def small_jobs_beside_rq(stack: Stack, client: Client, count: int, seed: int = 0) -> dict[str, Any]:
    """One-circuit jobs as the client sends them (the result comes with the submission), the
    same jobs in two requests (``submit_wait=0``: submit, then long-poll the result), RQ's
    no-op round trip on the same Redis, and an HTTP no-op round trip (the same body and client
    library, a bare FastAPI app on uvicorn; see bench/peers.py), interleaved job by job so that
    all four see the same machine (its load moves from second to second here): p50 and p99 of
    each. Every job has fresh parameter values, as a training step sends, so no result cache
    can answer it."""
    circuit = training_ansatz(4)
    rng = np.random.default_rng(seed)  # fresh values for every job, as a training loop sends them

    def pub() -> list[Any]:
        return [(circuit, "ZIII", rng.uniform(0, 1, (1, circuit.num_parameters)))]

    sent: list[httpx.Request] = []  # one submission as the client sends it: the HTTP peer posts the same
    with Client(stack.url, api_key=stack.api_key, submit_wait=0) as probe:
        probe._http.event_hooks["request"].append(sent.append)
        probe.estimate(pub()).result(timeout=30)
    headers = {k: v for k, v in sent[0].headers.items() if k.lower() in ("authorization", "content-type", "prefer")}
    with (
        Client(stack.url, api_key=stack.api_key, submit_wait=0) as two_requests,
        rq_peer(stack.redis_url or "", 1) as rq_job,
        http_peer(sent[0].content, headers) as http_request,
    ):

        def timed(c: Client) -> Callable[[], float]:
            def one() -> float:
                pubs = pub()
                t0 = time.perf_counter()
                c.estimate(pubs).result(timeout=30)
                return time.perf_counter() - t0

            return one

        sides = {"one": timed(client), "two": timed(two_requests), "rq": rq_job, "http": http_request}
        for one in sides.values():  # warm each side's connections and caches
            for _ in range(10):
                one()
        lat: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(count):
            for name, one in sides.items():
                lat[name].append(one())
    p50 = {name: 1000 * float(np.percentile(v, 50)) for name, v in lat.items()}
    p99 = {name: 1000 * float(np.percentile(v, 99)) for name, v in lat.items()}
    return {
        "work": f"one-circuit jobs n=4 (x{count})",
        "p50_ms": p50["one"],
        "p99_ms": p99["one"],
        "two_requests_p50_ms": p50["two"],
        "two_requests_p99_ms": p99["two"],
        "rq_p50_ms": p50["rq"],
        "rq_p99_ms": p99["rq"],
        "http_p50_ms": p50["http"],
        "http_p99_ms": p99["http"],
        "body_bytes": len(sent[0].content),
        "direct_aer_ms": 1000 * median_time(direct_aer(circuit, "ZIII", pub()[0][2]), 20),
    }


def small_only(seed: int, count: int) -> None:
    """The small-job rows alone, on a fresh stack: for before/after comparisons of the small-job path."""
    with Stack(port=free_port(), workers=2, env=NO_CACHE) as stack, Client(stack.url, api_key=stack.api_key) as client:
        rows = {
            "seed": seed,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "small_jobs": small_jobs_beside_rq(stack, client, count, seed),
            "concurrent": concurrent_jobs(stack, 32, max(5, count // 10), seed),
        }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"small-{seed}.json").write_text(json.dumps(rows, indent=2))
    s, c = rows["small_jobs"], rows["concurrent"]
    print(
        f"seed {seed}: one-circuit p50 {s['p50_ms']:.2f} ms p99 {s['p99_ms']:.2f} ms (in two requests: p50 "
        f"{s['two_requests_p50_ms']:.2f} p99 {s['two_requests_p99_ms']:.2f}); RQ p50 {s['rq_p50_ms']:.2f} "
        f"p99 {s['rq_p99_ms']:.2f} -> p50 {s['p50_ms'] / s['rq_p50_ms']:.2f}x p99 {s['p99_ms'] / s['rq_p99_ms']:.2f}x; "
        f"HTTP no-op p50 {s['http_p50_ms']:.2f} p99 {s['http_p99_ms']:.2f}; RQ + HTTP p50 "
        f"{(s['rq_p50_ms'] + s['http_p50_ms']) / s['rq_p50_ms']:.2f}x RQ's, qfleet p50 "
        f"{s['p50_ms'] / (s['rq_p50_ms'] + s['http_p50_ms']):.2f}x RQ + HTTP; "
        f"32 clients {c['jobs_per_s']:.0f} jobs/s vs RQ {c['rq_jobs_per_s']:.0f} -> {c['ratio_vs_rq']:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller throughput run")
    parser.add_argument("--only-qiskit", action="store_true", help="only the many-PUB and sampler rows")
    parser.add_argument("--only-cache", action="store_true", help="only the result-cache row")
    parser.add_argument(
        "--only-device", action="store_true", help="only the wukong72 rows, into bench/results/device.json"
    )
    parser.add_argument(
        "--only-forward",
        action="store_true",
        help="only the forward rows and the throughput row (bench/results/forward.json)",
    )
    parser.add_argument(
        "--small",
        type=int,
        metavar="SEED",
        help="only the small-job rows (one-circuit jobs and 32 concurrent clients, each beside its RQ peer), "
        "into bench/results/small-SEED.json; SEED draws the parameter values",
    )
    args = parser.parse_args()
    if args.small is not None:
        small_only(args.small, 100 if args.quick else 400)
        return
    if args.only_qiskit:
        with (
            Stack(port=free_port(), workers=2, env=NO_CACHE) as stack,
            Client(stack.url, api_key=stack.api_key) as client,
        ):
            rows = {"many_pubs": many_pubs(client, 8, 2048, 3), "sampler": sampler(client, 12, 256, 1024, 3)}
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "qiskit.json").write_text(json.dumps(rows, indent=2))
        print("\n".join(qiskit_table(rows)))
        return
    if args.only_device:
        device_only(3 if args.quick else 5)
        return
    if args.only_cache:
        with Stack(port=free_port(), workers=2) as stack, Client(stack.url, api_key=stack.api_key) as client:
            rows = {"cache": repeated_job(client, 16, 256, 3 if args.quick else 7)}
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "cache.json").write_text(json.dumps(rows, indent=2))
        print("\n".join(cache_table(rows)))
        return
    repeats = 3 if args.quick else 7
    if args.only_forward:
        with (
            Stack(port=free_port(), workers=2, env=NO_CACHE) as stack,
            Client(stack.url, api_key=stack.api_key) as client,
        ):
            rows = {
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "forward": [forward(client, n, B, repeats) for n, B in [(8, 64), (12, 256), (16, 256)]],
            }
        rows["throughput"] = scaling(16, 128, 4 if args.quick else 8, 3 if args.quick else 5)
        rows["load_average"] = os.getloadavg()
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "forward.json").write_text(json.dumps(rows, indent=2))
        print("\n".join(forward_rows(rows) + throughput_rows(rows)))
        for r in rows["forward"]:
            print(f"{r['work']}: service / qfleet engine in-process {r['ratio_vs_engine_in_process']:.2f}x")
        return
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with Stack(port=free_port(), workers=2, env=NO_CACHE) as stack, Client(stack.url, api_key=stack.api_key) as client:
        results["forward"] = [forward(client, n, B, repeats) for n, B in [(8, 64), (12, 256), (16, 256)]]
        results["gradient"] = [gradient(client, n, B, repeats) for n, B in [(8, 256), (12, 64)]]
        results["device"] = [
            device(client, 72, 16, False, 4096, ["I" * 71 + "Z", "I" * 70 + "ZZ"], max(3, repeats // 2)),
            device(
                client, 12, 8, True, 1024, ["I" * (11 - i) + "Z" + "I" * i for i in range(12)], max(3, repeats // 2)
            ),
        ]
        results["small_jobs"] = small_jobs_beside_rq(stack, client, 100 if args.quick else 400)
        results["concurrent"] = concurrent_jobs(stack, 32, 10 if args.quick else 30)
        results["naive"] = naive_vs_batched(client, 256)
        results["many_pubs"] = many_pubs(client, 8, 2048, repeats)
        results["sampler"] = sampler(client, 12, 256, 1024, repeats)
    with Stack(port=free_port(), workers=2) as stack, Client(stack.url, api_key=stack.api_key) as client:
        results["cache"] = repeated_job(client, 16, 256, repeats)
    results["throughput"] = scaling(16, 128, 4 if args.quick else 8, 3 if args.quick else 5)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))
    md = table(results)
    (RESULTS / "latest.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()

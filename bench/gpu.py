"""The GPU rows: qfleet's torch engine on a CUDA GPU against the best CPU engines on the same
machine, in the same run, on the training ansatz (Z on each qubit, fresh parameter values).

    python -m qfleet_server.bench.gpu [--quick]

Needs torch with CUDA (the ``gpu`` extra on a GPU machine). In process: Aer EstimatorV2 (runtime
parameter binding, all cores), qfleet's Lightning engine (all cores) and the torch engine on the
GPU, each checked against Aer. Through the service: one worker (all cores, the GPU), first with
the default task size, then with tasks priced at ``--task-target-s`` (a GPU runs a big task
faster than many small ones). Writes bench/results/gpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

import numpy as np
from qfleet import Client

from qfleet_server.bench.run import NO_CACHE, RESULTS, direct_aer, median_time
from qfleet_server.bench.workloads import training_ansatz, z_observables
from qfleet_server.stack import Stack, free_port
from qfleet_server.worker.engines import Block, Program
from qfleet_server.worker.engines.lightning import LightningEngine

# (n, B, repeats of the CPU engines): the CPU takes seconds a call at the wide end
IN_PROCESS = [(8, 256, 3), (12, 1, 3), (12, 256, 3), (16, 1, 3), (16, 256, 2), (20, 256, 1), (24, 8, 1)]
THROUGH_SERVICE = [(16, 256), (20, 256)]
GRADIENTS = [(12, 64), (16, 64)]


def in_process(n: int, B: int, repeats: int, gpu_repeats: int) -> dict[str, Any]:
    import torch

    from qfleet_server.worker.engines.torch_sv import TorchEngine

    circuit = training_ansatz(n)
    values = np.random.default_rng(n * 1000 + B).uniform(0, 2 * np.pi, (B, circuit.num_parameters))
    obs = z_observables(n)
    program = Program(circuit, [o[0] for o in obs])
    aer = direct_aer(circuit, obs, values)
    lightning = LightningEngine(os.cpu_count() or 1)
    gpu = TorchEngine("cuda", 16 << 30)

    def on_gpu() -> Any:
        evs = gpu.estimate(program, Block(values=values))[0]
        torch.cuda.synchronize()
        return evs

    # each check is its engine's warm-up call
    want = aer()
    np.testing.assert_allclose(lightning.estimate(program, Block(values=values))[0], want, atol=1e-8)
    np.testing.assert_allclose(on_gpu(), want, atol=1e-8)
    t_aer = median_time(aer, repeats, warm=False)
    t_light = median_time(lambda: lightning.estimate(program, Block(values=values)), repeats, warm=False)
    t_gpu = median_time(on_gpu, gpu_repeats, warm=False)
    best = min(t_aer, t_light)
    row = {
        "work": f"forward n={n} B={B}",
        "aer_s": t_aer,
        "lightning_engine_s": t_light,
        "gpu_engine_s": t_gpu,
        "gpu_vs_best_cpu": t_gpu / best,
    }
    print(
        f"{row['work']}: Aer {t_aer * 1e3:.1f} ms, Lightning {t_light * 1e3:.1f} ms, GPU {t_gpu * 1e3:.1f} ms "
        f"-> the GPU {best / t_gpu:.2f}x as fast as the best CPU engine",
        flush=True,
    )
    return row


def gradient_in_process(n: int, B: int, gpu_repeats: int) -> dict[str, Any]:
    """evs and their gradient: qfleet's Lightning engine's adjoint differentiation (all cores; the
    fastest CPU gradient measured here) against autograd through the torch engine on the GPU."""
    import torch

    from qfleet_server.worker.engines.torch_sv import TorchEngine

    circuit = training_ansatz(n)
    values = np.random.default_rng(n * 7 + B).uniform(0, 2 * np.pi, (B, circuit.num_parameters))
    program = Program(circuit, [o[0] for o in z_observables(n)])
    lightning = LightningEngine(os.cpu_count() or 1)
    gpu = TorchEngine("cuda", 16 << 30)

    def on_gpu() -> Any:
        out = gpu.gradient(program, Block(values=values))
        torch.cuda.synchronize()
        return out

    _, _, want = lightning.gradient(program, Block(values=values))  # each check is the warm-up
    np.testing.assert_allclose(on_gpu()[2], want, atol=1e-8)
    t_cpu = median_time(lambda: lightning.gradient(program, Block(values=values)), 1, warm=False)
    t_gpu = median_time(on_gpu, gpu_repeats, warm=False)
    print(
        f"gradient n={n} B={B}: Lightning adjoint {t_cpu * 1e3:.1f} ms, GPU autograd {t_gpu * 1e3:.1f} ms "
        f"-> the GPU {t_cpu / t_gpu:.2f}x as fast",
        flush=True,
    )
    return {"work": f"forward+gradient n={n} B={B}", "lightning_adjoint_s": t_cpu, "gpu_autograd_s": t_gpu}


def gradient_through_service(rows: list[dict[str, Any]], target_s: float, repeats: int) -> list[dict[str, Any]]:
    out = []
    env = {**NO_CACHE, "QFLEET_GPU": "auto", "QFLEET_TASK_TARGET_S": str(target_s)}
    with (
        Stack(port=free_port(), workers=1, env=env, device_worker=False) as stack,
        Client(stack.url, api_key=stack.api_key) as client,
    ):
        for row in rows:
            n, B = (int(part.split("=")[1]) for part in row["work"].split()[1:])
            circuit = training_ansatz(n)
            values = np.random.default_rng(n * 7 + B).uniform(0, 2 * np.pi, (B, circuit.num_parameters))

            def service(c: Any = circuit, v: Any = values, n: int = n) -> Any:
                return client.estimate([(c, z_observables(n), v)], gradient="auto").result(timeout=600, progress=False)

            got = service()[0].gradient
            program = Program(circuit, [o[0] for o in z_observables(n)])
            _, _, want = LightningEngine(os.cpu_count() or 1).gradient(program, Block(values=values))
            np.testing.assert_allclose(got, want, atol=1e-8)
            t = median_time(service, repeats, warm=False)
            out.append({**row, "task_target_s": target_s, "service_s": t})
            print(
                f"service gradient='auto' (tasks {target_s} s) n={n} B={B}: {t * 1e3:.1f} ms; "
                f"{row['lightning_adjoint_s'] / t:.2f}x as fast as Lightning's adjoint in process, "
                f"{t / row['gpu_autograd_s']:.2f}x the GPU in process",
                flush=True,
            )
    return out


def through_service(
    rows: list[dict[str, Any]], sizes: list[tuple[int, int]], target_s: float, repeats: int
) -> list[dict[str, Any]]:
    out = []
    env = {**NO_CACHE, "QFLEET_GPU": "auto"}
    if target_s:
        env["QFLEET_TASK_TARGET_S"] = str(target_s)
    with (
        Stack(port=free_port(), workers=1, env=env, device_worker=False) as stack,
        Client(stack.url, api_key=stack.api_key) as client,
    ):
        for n, B in sizes:
            circuit = training_ansatz(n)
            values = np.random.default_rng(n * 1000 + B + 1).uniform(0, 2 * np.pi, (B, circuit.num_parameters))
            obs = z_observables(n)

            def service(c: Any = circuit, o: Any = obs, v: Any = values) -> Any:
                return client.estimate([(c, o, v)]).result(timeout=600, progress=False)[0].evs

            np.testing.assert_allclose(service(), direct_aer(circuit, obs, values)(), atol=1e-8)
            t = median_time(service, repeats, warm=False)
            cpu = next(r for r in rows if r["work"] == f"forward n={n} B={B}")
            best = min(cpu["aer_s"], cpu["lightning_engine_s"])
            out.append(
                {
                    "work": f"forward n={n} B={B}",
                    "task_target_s": target_s or "default",
                    "service_s": t,
                    "vs_best_cpu_in_process": t / best,
                    "vs_gpu_engine_in_process": t / cpu["gpu_engine_s"],
                }
            )
            print(
                f"service (tasks {target_s or 'default'} s) n={n} B={B}: {t * 1e3:.1f} ms; "
                f"{best / t:.2f}x as fast as the best CPU engine in process, "
                f"{t / cpu['gpu_engine_s']:.2f}x the GPU engine in process",
                flush=True,
            )
    return out


def main() -> None:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--task-target-s", type=float, default=2.0, help="the second service run's task size")
    parser.add_argument("--no-service", action="store_true", help="the in-process rows only")
    parser.add_argument(
        "--gradients", action="store_true", help="only the gradient rows (bench/results/gpu-gradients.json)"
    )
    parser.add_argument(
        "--sizes", help="only these works, in process and through the service, e.g. 16x256,20x64 (n x B)"
    )
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible to torch: the GPU rows need one")
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "gpu": torch.cuda.get_device_name(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    gpu_repeats = 3 if args.quick else 7
    RESULTS.mkdir(exist_ok=True)
    if args.gradients:
        rows = [gradient_in_process(n, B, gpu_repeats) for n, B in GRADIENTS]
        results["gradients"] = rows
        (RESULTS / "gpu-gradients.json").write_text(json.dumps(results, indent=2))
        results["gradients"] = gradient_through_service(rows, args.task_target_s, gpu_repeats)
        (RESULTS / "gpu-gradients.json").write_text(json.dumps(results, indent=2))
        return
    works, service_works = IN_PROCESS, THROUGH_SERVICE
    if args.sizes:
        service_works = [(int(n), int(B)) for n, B in (w.split("x") for w in args.sizes.split(","))]
        works = [(n, B, 1) for n, B in service_works]
    results["in_process"] = [in_process(n, B, 1 if args.quick else r, gpu_repeats) for n, B, r in works]
    if not args.no_service:
        results["service"] = [
            row
            for target in (0.0, args.task_target_s)
            for row in through_service(results["in_process"], service_works, target, gpu_repeats)
        ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / ("gpu-sizes.json" if args.sizes else "gpu.json")).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

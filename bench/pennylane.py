"""PennyLane QNode batches through qfleet vs lightning.qubit locally, in the same run.

    python -m qfleet_server.bench.pennylane [--repeats 5]

A QNode on a (256, n) input batch is 256 tapes: one qfleet job on the ``qfleet`` device, 256
simulations on ``lightning.qubit``. Writes bench/results/pennylane.json and prints the rows.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from collections.abc import Callable
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import numpy as np
import pennylane as qml
from pennylane.devices import device_constructor

from qfleet_server.bench.run import median_time
from qfleet_server.stack import Stack, free_port

RESULTS = Path(__file__).parent / "results"

# a client installed before the entry point existed does not declare it yet
device_constructor.plugin_devices.setdefault(
    "qfleet", EntryPoint(name="qfleet", value="qfleet.pennylane:QfleetDevice", group="pennylane.plugins")
)


def qnode(dev: Any, n: int, diff_method: str) -> Any:
    @qml.qnode(dev, diff_method=diff_method)
    def circuit(x: Any, w: Any) -> Any:
        qml.AngleEmbedding(x, wires=range(n))
        qml.StronglyEntanglingLayers(w, wires=range(n))
        return qml.expval(qml.Z(0) @ qml.Z(1)), qml.expval(qml.Hamiltonian([0.5, -0.2], [qml.X(2), qml.Z(3)]))

    return circuit


def rows(url: str, api_key: str, n: int, batch: int, repeats: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    x = qml.numpy.array(rng.uniform(0, np.pi, (batch, n)), requires_grad=False)
    w = qml.numpy.array(rng.uniform(0, 2 * np.pi, (2, n, 3)), requires_grad=True)
    remote_dev = qml.device("qfleet", wires=n, url=url, api_key=api_key)
    local_dev = qml.device("lightning.qubit", wires=n)
    remote, local = qnode(remote_dev, n, "best"), qnode(local_dev, n, "adjoint")

    def cost(node: Any) -> Callable[[Any], Any]:
        return lambda w: qml.math.sum(qml.math.stack(node(x, w)))

    jobs = len(remote_dev.job_ids)
    out = [
        {
            "work": f"QNode forward n={n} batch={batch}",
            "lightning_ms": 1000 * median_time(lambda: local(x, w), repeats),
            "qfleet_ms": 1000 * median_time(lambda: remote(x, w), repeats),
        },
        {
            "work": f"QNode forward+gradient n={n} batch={batch} (qfleet: diff_method best; lightning: adjoint)",
            "lightning_ms": 1000 * median_time(lambda: qml.grad(cost(local))(w), repeats),
            "qfleet_ms": 1000 * median_time(lambda: qml.grad(cost(remote))(w), repeats),
        },
    ]
    calls = 2 * (repeats + 1)
    assert len(remote_dev.job_ids) - jobs == calls, "each QNode call (batch of tapes) must be one job"
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    with Stack(port=free_port(), workers=2, log_dir=Path(tempfile.mkdtemp(prefix="qfleet-bench-"))) as stack:
        results = rows(stack.url, stack.api_key, 8, args.batch, args.repeats)
    RESULTS.mkdir(exist_ok=True)
    record = {"machine": platform.platform(), "pennylane": qml.__version__, "rows": results}
    (RESULTS / "pennylane.json").write_text(json.dumps(record, indent=2) + "\n")
    print("| work | lightning.qubit locally | qfleet device (service end to end) | ratio |")
    print("|---|---|---|---|")
    for r in results:
        print(
            f"| {r['work']} | {r['lightning_ms']:.1f} ms | {r['qfleet_ms']:.1f} ms | {r['qfleet_ms'] / r['lightning_ms']:.2f}× |"
        )


if __name__ == "__main__":
    main()

"""End to end on a GPU machine: a worker that sees a CUDA GPU runs wide exact circuits on qfleet's
torch engine, and its results equal Aer's. Skipped where torch sees no GPU (CI has none); run
it on one with ``pytest tests/e2e/test_gpu.py``."""

from __future__ import annotations

import numpy as np
import pytest
from qfleet import Client
from qiskit import transpile
from qiskit.quantum_info import SparsePauliOp
from qiskit_aer import AerSimulator
from qiskit_aer.primitives import EstimatorV2

from qfleet_server.stack import Stack, free_port
from qfleet_server.worker.engines import Block, Program
from qfleet_server.worker.engines.lightning import LightningEngine
from tests.conftest import random_circuit, training_ansatz

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none)"),
]


def test_wide_exact_jobs_run_on_the_gpu_and_match_aer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng()
    env = {"QFLEET_GPU": "auto", "QFLEET_GPU_MIN_AMPLITUDES": str(1 << 13), "QFLEET_RESULT_CACHE_TTL_S": "0"}
    with (
        Stack(port=free_port(), workers=1, env=env, log_dir=tmp_path, device_worker=False) as stack,
        Client(stack.url, api_key=stack.api_key) as client,
    ):
        wide = training_ansatz(12)
        wide_values = rng.uniform(0, 2 * np.pi, (64, wide.num_parameters))
        wide_obs = [[SparsePauliOp("I" * (11 - i) + "Z" + "I" * i)] for i in range(12)]
        mixed = random_circuit(10, rng)
        mixed_values = rng.uniform(-np.pi, np.pi, (16, mixed.num_parameters))
        mixed_obs = [SparsePauliOp(["".join(rng.choice(list("IXYZ"), 10)) for _ in range(3)], rng.normal(size=3))]
        narrow = training_ansatz(4)
        narrow_values = rng.uniform(0, 2 * np.pi, (8, narrow.num_parameters))
        pubs = [(wide, wide_obs, wide_values), (mixed, mixed_obs, mixed_values), (narrow, [["ZIII"]], narrow_values)]
        results = client.estimate(pubs).result(timeout=300, progress=False)
        native = [(transpile(c, AerSimulator(), optimization_level=0), o, v) for c, o, v in pubs]  # Aer lacks iswap
        reference = EstimatorV2().run(native).result()
        for got, want in zip(results, reference):
            np.testing.assert_allclose(got.evs, want.data.evs, atol=1e-8)
        with_gradient = client.estimate([(wide, wide_obs, wide_values)], gradient="auto").result(timeout=300)[0]
        program = Program(wide, [o[0] for o in wide_obs])
        _, _, adjoint = LightningEngine(1).gradient(program, Block(values=wide_values))
        np.testing.assert_allclose(with_gradient.gradient, adjoint, atol=1e-8)
        log = (tmp_path / "worker0.log").read_text()
        assert "torch-cuda" in log  # the wide PUBs ran on the GPU
        assert "torch-cuda-autograd" in log  # and so did the gradient
        assert "'lightning'" in log or '"lightning"' in log  # the 4-qubit one on the CPU

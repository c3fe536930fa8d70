"""qfleet's torch engine against an exact statevector, on fresh random circuits and observables,
and the rule that sends a block to it.

It runs on the CPU here and in CI; on a GPU machine, ``QFLEET_TEST_TORCH_DEVICE=cuda`` runs the
same tests on the GPU (the engine is the same code on either device).
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import ParameterVector
from qiskit.circuit.library import efficient_su2, zz_feature_map
from qiskit.quantum_info import SparsePauliOp

from qfleet_server.settings import Settings
from qfleet_server.worker.engines import Block, EngineUnsupported, Program
from qfleet_server.worker.runner import gpu_device_present, gpu_engine
from tests.conftest import random_circuit, training_ansatz
from tests.unit.test_engines import exact, random_observables
from tests.unit.test_gradients import finite_difference

torch = pytest.importorskip("torch")
from qfleet_server.worker.engines.torch_sv import TorchEngine  # noqa: E402

DEVICE = os.environ.get("QFLEET_TEST_TORCH_DEVICE", "cpu")


def every_gate_kind(n: int, rng: np.random.Generator) -> QuantumCircuit:
    """The one-angle gates the engine fits, u with three parameters, fixed gates of 1-3 qubits."""
    p = ParameterVector("p", 12)
    qc = efficient_su2(n, reps=1, parameter_prefix="w")
    qc.crx(2 * p[0] + 0.3, 0, 2)
    qc.cry(-p[1], 3, 1)
    qc.crz(p[2] / 3, 1, 3)
    qc.cp(p[3], 2, 0)
    qc.rxx(p[4], 0, 3)
    qc.ryy(p[5] - 1.0, 1, 2)
    qc.rzz(p[6], 3, 0)
    qc.rzx(p[7], 2, 1)
    qc.u(p[8], p[9], p[10], 1)
    qc.u(0.4, p[11], -0.2, 2)
    qc.ccx(0, 1, 3)
    qc.cswap(2, 0, 1)
    qc.swap(1, 3)
    qc.cx(3, 0)
    qc.cz(0, 2)
    qc.ryy(float(rng.uniform(0, 3)), 0, 1)
    qc.barrier()
    return qc


@pytest.mark.parametrize("seed", range(6))
def test_random_circuits_match_exact_statevector(seed: int) -> None:
    rng = np.random.default_rng(seed + 7000)
    n = int(rng.integers(2, 7))
    circuit = random_circuit(n, rng)
    program = Program(circuit, random_observables(n, 3, rng, diagonal=bool(seed % 2)))
    values = rng.uniform(-np.pi, np.pi, (int(rng.integers(1, 9)), circuit.num_parameters))
    reference = exact(program, values)
    obs_index = rng.integers(0, 3, len(values))  # zip: observable obs_index[j] with row j
    engine = TorchEngine(DEVICE)
    evs, stds = engine.estimate(program, Block(values=values))
    np.testing.assert_allclose(evs, reference, atol=1e-10)
    assert np.all(stds == 0)
    evs, _ = engine.estimate(program, Block(values=values, obs_index=obs_index))
    np.testing.assert_allclose(evs, reference[obs_index, np.arange(len(values))], atol=1e-10)


@pytest.mark.parametrize("seed", range(3))
def test_every_gate_kind_and_pauli_matches_exact_statevector(seed: int) -> None:
    rng = np.random.default_rng(seed + 8000)
    circuit = every_gate_kind(4, rng)
    observables = random_observables(4, 4, rng) + [SparsePauliOp(["XYZI", "IIII", "YYXX"], [0.5, -0.25, 2.0])]
    program = Program(circuit, observables)
    values = rng.uniform(-2 * np.pi, 2 * np.pi, (5, circuit.num_parameters))
    evs, _ = TorchEngine(DEVICE).estimate(program, Block(values=values))
    np.testing.assert_allclose(evs, exact(program, values), atol=1e-10)


def test_terms_without_phase_matrices_equal_with(monkeypatch: pytest.MonkeyPatch) -> None:
    import qfleet_server.worker.engines.torch_sv as torch_sv

    rng = np.random.default_rng(9500)
    circuit = random_circuit(5, rng)
    program = Program(circuit, random_observables(5, 3, rng) + random_observables(5, 2, rng, diagonal=True))
    values = rng.uniform(-np.pi, np.pi, (6, circuit.num_parameters))
    monkeypatch.setattr(torch_sv, "_MAX_PHASE_ENTRIES", 0)  # what a wide circuit with many terms gets
    evs, _ = TorchEngine(DEVICE).estimate(program, Block(values=values))
    np.testing.assert_allclose(evs, exact(program, values), atol=1e-10)


def test_rows_in_chunks_equal_rows_at_once() -> None:
    rng = np.random.default_rng(9000)
    circuit = training_ansatz(6)
    program = Program(circuit, random_observables(6, 2, rng))
    values = rng.uniform(0, 2 * np.pi, (11, circuit.num_parameters))
    whole, _ = TorchEngine(DEVICE).estimate(program, Block(values=values))
    chunked, _ = TorchEngine(DEVICE, memory_bytes=3 * 16 * 2**6 * 4).estimate(program, Block(values=values))  # 4 rows
    np.testing.assert_allclose(chunked, whole, atol=1e-12)
    np.testing.assert_allclose(whole, exact(program, values), atol=1e-10)


def test_what_it_cannot_run_goes_to_the_other_engines() -> None:
    engine = TorchEngine(DEVICE)
    feature_map = zz_feature_map(3)  # angles in products of two parameters
    with pytest.raises(EngineUnsupported):
        engine.estimate(Program(feature_map, [SparsePauliOp("ZZZ")]), Block(values=np.zeros((1, 3))))
    x = ParameterVector("x", 2)
    two_angles = QuantumCircuit(1)
    two_angles.r(x[0], x[1], 0)
    with pytest.raises(EngineUnsupported):
        engine.estimate(Program(two_angles, [SparsePauliOp("Z")]), Block(values=np.zeros((1, 2))))
    with pytest.raises(EngineUnsupported):  # shot-based estimates are Aer's
        engine.estimate(Program(training_ansatz(2), [SparsePauliOp("ZZ")]), Block(values=np.zeros((1, 8)), shots=100))


def test_parameter_free_circuit_and_empty_block() -> None:
    qc = QuantumCircuit(3)
    qc.h(0)
    qc.cx(0, 2)
    qc.sx(1)
    program = Program(qc, [SparsePauliOp("ZIZ"), SparsePauliOp("IYI")])
    evs, _ = TorchEngine(DEVICE).estimate(program, Block(values=np.zeros((2, 0))))
    np.testing.assert_allclose(evs, [[1.0, 1.0], [-1.0, -1.0]], atol=1e-12)
    evs, _ = TorchEngine(DEVICE).estimate(program, Block(values=np.zeros((0, 0))))
    assert evs.shape == (2, 0)


def test_gpu_engine_only_where_a_gpu_is_asked_for_and_present() -> None:
    assert gpu_engine(Settings(gpu="off")) is None
    engine = gpu_engine(Settings(gpu="auto"))
    if torch.cuda.is_available():
        assert gpu_device_present() and engine is not None and engine.name == "torch-cuda"
    else:
        assert engine is None


def test_a_machine_without_a_gpu_driver_does_not_import_torch(tmp_path: Path) -> None:
    """A CPU machine's worker never imports torch (a second and some 230 MB each): checked in a
    fresh interpreter, where torch is installed (this suite imports it) but no driver path exists."""
    assert not gpu_device_present((str(tmp_path / "no-such-device"),))
    assert gpu_device_present((str(tmp_path),))
    code = (
        "import sys; from qfleet_server.worker import runner; from qfleet_server.settings import Settings; "
        f"runner.GPU_DEVICE_PATHS = ({str(tmp_path / 'absent')!r},); "
        "assert runner.gpu_engine(Settings(gpu='auto')) is None; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("seed", range(3))
def test_autograd_gradient_matches_finite_differences_and_lightning_adjoint(seed: int) -> None:
    from qfleet_server.worker.engines.lightning import LightningEngine

    rng = np.random.default_rng()  # fresh every run
    n = int(rng.integers(2, 6))
    circuit = random_circuit(n, rng)
    program = Program(circuit, random_observables(n, 3, rng, diagonal=bool(seed % 2)))
    values = rng.uniform(-np.pi, np.pi, (int(rng.integers(1, 7)), circuit.num_parameters))
    engine = TorchEngine(DEVICE, memory_bytes=(len(circuit.data) + 4) * 16 * 2**n * 2)  # chunks of 2 rows
    evs, stds, grad = engine.gradient(program, Block(values=values))
    np.testing.assert_allclose(evs, exact(program, values), atol=1e-10)
    assert np.all(stds == 0)
    np.testing.assert_allclose(grad, finite_difference(circuit, program.observables, values), atol=1e-6)
    _, _, adjoint = LightningEngine(1).gradient(program, Block(values=values))
    np.testing.assert_allclose(grad, adjoint, atol=1e-10)
    obs_index = rng.integers(0, 3, len(values))  # zip: observable obs_index[j] with row j
    evs, _, grad_zip = engine.gradient(program, Block(values=values, obs_index=obs_index))
    rows = np.arange(len(values))
    np.testing.assert_allclose(evs, exact(program, values)[obs_index, rows], atol=1e-10)
    np.testing.assert_allclose(grad_zip, adjoint[obs_index, rows], atol=1e-10)


def test_exact_blocks_go_to_the_gpu_from_gpu_min_amplitudes() -> None:
    from types import SimpleNamespace

    from qfleet_server.worker.runner import Runner

    settings = Settings(gpu_min_amplitudes=1 << 16)
    with_gpu = SimpleNamespace(gpu=object(), settings=settings)
    without = SimpleNamespace(gpu=None, settings=settings)
    wide = Block(values=np.zeros((16, 3)))
    assert Runner.engine_order(with_gpu, wide, 12) == ["gpu", "lightning", "aer"]  # 16 x 2^12 = 2^16
    assert Runner.engine_order(with_gpu, Block(values=np.zeros((15, 3))), 12) == ["lightning", "aer"]
    assert Runner.engine_order(with_gpu, Block(values=np.zeros((16, 3)), shots=100), 12) == ["aer"]
    assert Runner.engine_order(without, wide, 12) == ["lightning", "aer"]

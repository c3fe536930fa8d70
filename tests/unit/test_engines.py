"""Every engine against a direct library call (Aer EstimatorV2, and an exact statevector)."""

import numpy as np
import pytest
from qiskit import transpile
from qiskit.primitives.containers import ObservablesArray
from qiskit.quantum_info import SparsePauliOp, Statevector
from qiskit_aer import AerSimulator
from qiskit_aer.primitives import EstimatorV2

from qfleet_server.worker.engines import Block, Program
from qfleet_server.worker.engines.aer import AerEngine
from qfleet_server.worker.engines.lightning import LightningEngine
from tests.conftest import random_circuit, training_ansatz


def random_observables(n: int, k: int, rng: np.random.Generator, diagonal: bool = False) -> list[SparsePauliOp]:
    letters = "IZ" if diagonal else "IXYZ"
    return [
        SparsePauliOp(["".join(rng.choice(list(letters), n)) for _ in range(3)], rng.normal(size=3)) for _ in range(k)
    ]


def exact(program: Program, values: np.ndarray) -> np.ndarray:
    out = np.zeros((len(program.observables), len(values)))
    for r, x in enumerate(values):
        psi = Statevector(program.circuit.assign_parameters(x))
        out[:, r] = [psi.expectation_value(o).real for o in program.observables]
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("diagonal", [True, False])
def test_engines_match_exact_statevector_and_aer(seed: int, diagonal: bool) -> None:
    rng = np.random.default_rng(seed + 100 * diagonal)
    n = int(rng.integers(2, 6))
    circuit = random_circuit(n, rng)
    program = Program(circuit, random_observables(n, 3, rng, diagonal))
    values = rng.uniform(-np.pi, np.pi, (5, circuit.num_parameters))
    reference = exact(program, values)
    native = transpile(circuit, AerSimulator(), optimization_level=0)  # Aer lacks e.g. iswap
    aer = (
        EstimatorV2().run([(native, ObservablesArray([[o] for o in program.observables]), values)]).result()[0].data.evs
    )
    np.testing.assert_allclose(aer, reference, atol=1e-8)
    for engine in (AerEngine(1), LightningEngine(1)):
        evs, stds = engine.estimate(program, Block(values=values))
        np.testing.assert_allclose(evs, reference, atol=1e-8, err_msg=engine.name)
        assert np.all(stds == 0)
        # zip blocks pair observable obs_index[j] with row j
        obs_index = rng.integers(0, 3, len(values))
        evs, _ = engine.estimate(program, Block(values=values, obs_index=obs_index))
        np.testing.assert_allclose(evs, reference[obs_index, np.arange(len(values))], atol=1e-8, err_msg=engine.name)


def test_training_ansatz_on_lightning_matches_aer() -> None:
    rng = np.random.default_rng(1)
    circuit = training_ansatz(6)
    obs = [SparsePauliOp("I" * (5 - i) + "Z" + "I" * i) for i in range(6)]
    values = rng.uniform(0, 2 * np.pi, (16, circuit.num_parameters))
    program = Program(circuit, obs)
    light, _ = LightningEngine(1).estimate(program, Block(values=values))
    aer, _ = AerEngine(1).estimate(program, Block(values=values))
    np.testing.assert_allclose(light, aer, atol=1e-10)


def test_shot_estimates_agree_within_their_standard_errors() -> None:
    rng = np.random.default_rng(5)
    circuit = random_circuit(3, rng)
    program = Program(circuit, random_observables(3, 4, rng))
    values = rng.uniform(-np.pi, np.pi, (6, circuit.num_parameters))
    evs, stds = AerEngine(1).estimate(program, Block(values=values, shots=4000, seed=11))
    reference = exact(program, values)
    assert np.all(stds > 0)
    z = np.abs(evs - reference) / stds
    assert np.max(z) < 5.0, z


def test_circuits_without_parameters() -> None:
    rng = np.random.default_rng(3)
    template = random_circuit(3, rng)
    circuit = template.assign_parameters(rng.uniform(0, 1, template.num_parameters))
    program = Program(circuit, random_observables(3, 2, rng))
    reference = exact(program, np.zeros((1, 0)))
    for engine in (AerEngine(1), LightningEngine(1)):
        evs, _ = engine.estimate(program, Block(values=np.zeros((1, 0))))
        np.testing.assert_allclose(evs, reference, atol=1e-8)


def test_wide_diagonal_observables_do_not_build_a_huge_sign_matrix() -> None:
    from qfleet_server.worker.engines.lightning import _z_signs

    assert _z_signs(25, [SparsePauliOp("Z" * 25)]) is None  # 2^25 entries: read from the state instead
    assert _z_signs(3, [SparsePauliOp("ZII")]).shape == (8, 1)  # type: ignore[union-attr]


@pytest.mark.parametrize("group_bytes", [8 * 2**5, 3 * 8 * 2**5, 1 << 21])
def test_lightning_rows_in_groups_match_aer(monkeypatch: pytest.MonkeyPatch, group_bytes: int) -> None:
    """I/Z observables are read from a few rows' probabilities at once: one row per group, groups
    that do not divide the rows (3 of 10), and all rows in one group give Aer's values."""
    from qfleet_server.worker.engines import lightning

    monkeypatch.setattr(lightning, "_PROBS_GROUP_BYTES", group_bytes)
    rng = np.random.default_rng()
    circuit = training_ansatz(5)
    program = Program(circuit, random_observables(5, 4, rng, diagonal=True))
    values = rng.uniform(0, 2 * np.pi, (10, circuit.num_parameters))
    light, stds = LightningEngine(1).estimate(program, Block(values=values))
    aer, _ = AerEngine(1).estimate(program, Block(values=values))
    np.testing.assert_allclose(light, aer, atol=1e-10)
    assert light.shape == (4, 10) and np.all(stds == 0)

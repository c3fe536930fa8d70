"""Pure logic of qfleet.pennylane: the entry point, tapes to templates, exact probs from Z strings."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

import numpy as np
import pennylane as qml
import tomllib
from packaging.specifiers import SpecifierSet
from pennylane.measurements import ProbabilityMP
from qfleet.pennylane import GATES, QfleetDevice, _add_measurement, _template, _walsh
from qiskit.quantum_info import Operator, SparsePauliOp, Statevector

PYPROJECT = Path(__file__).parents[2] / "client" / "pyproject.toml"


def test_the_entry_point_and_the_extra_name_the_device() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    module, _, name = project["entry-points"]["pennylane.plugins"]["qfleet"].partition(":")
    assert getattr(import_module(module), name) is QfleetDevice
    (spec,) = [r for r in project["optional-dependencies"]["pennylane"] if r.startswith("pennylane")]
    assert qml.__version__ in SpecifierSet(spec.removeprefix("pennylane"))


def test_exact_probs_from_z_strings_equal_the_state_probabilities() -> None:
    rng = np.random.default_rng()
    width = 4
    amplitudes = rng.normal(size=16) + 1j * rng.normal(size=16)
    state = Statevector(amplitudes / np.linalg.norm(amplitudes))
    index = {w: i for i, w in enumerate(["a", "b", "c", "d"])}
    wires = ["d", "b", "a"]
    observables: list[dict[str, float]] = []
    finish = _add_measurement(ProbabilityMP(wires=qml.wires.Wires(wires)), observables, index, width)
    evs = [state.expectation_value(SparsePauliOp.from_list(list(o.items()))).real for o in observables]
    # PennyLane's order: the first listed wire is the most significant bit
    want = state.probabilities([index[w] for w in reversed(wires)])
    np.testing.assert_allclose(finish(np.array(evs)), want, atol=1e-12)
    np.testing.assert_allclose(_walsh(np.array([1.0, 0.0])), [0.5, 0.5])


def test_one_template_serves_every_tape_of_a_structure() -> None:
    dev = QfleetDevice(wires=3, url="http://127.0.0.1:1", api_key="k")
    rng = np.random.default_rng()
    plans = []
    for _ in range(2):
        a, b, c = rng.uniform(0, np.pi, 3)
        ops = [qml.RX(a, 0), qml.GlobalPhase(0.3), qml.CRZ(b, [2, 0]), qml.U3(c, b, a, 1)]
        plans.append(dev._plan(qml.tape.QuantumScript(ops, [qml.expval(qml.Z(0))])))
    assert plans[0].key == plans[1].key and len(dev._templates) == 1
    assert plans[0].columns == [0, None, 1, 2, 3, 4]  # GlobalPhase is left out of the circuit
    template = dev._templates[plans[0].key]
    for plan in plans:
        tape = plan.tape
        bound = template.circuit.assign_parameters(plan.row)
        kept = qml.tape.QuantumScript([op for op in tape.operations if op.name != "GlobalPhase"])
        want = qml.matrix(kept, wire_order=[2, 1, 0])  # Qiskit's qubit 0 is the least significant
        np.testing.assert_allclose(Operator(bound).data, want, atol=1e-12)


def test_every_mapped_gate_builds() -> None:
    for name, (_, count) in GATES.items():
        op = getattr(qml, name.removeprefix("Adjoint(").removesuffix(")"))
        wires = op.num_wires if isinstance(op.num_wires, int) else 1
        assert _template(3, [(name, tuple(range(wires)))], count).circuit.num_parameters == count

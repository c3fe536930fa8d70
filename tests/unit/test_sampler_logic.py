"""Pure logic of the sampler and of the PUB fixes: register bits, idle qubits, wire shapes."""

from __future__ import annotations

import numpy as np
from qfleet._base import BaseClient
from qfleet.wire import JobRequest, decode_array
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.primitives.containers import BitArray
from qiskit.quantum_info import SparsePauliOp, Statevector

from qfleet_server.parsing import KEPT_QUBITS, drop_idle_qubits
from qfleet_server.pubs import reduce_terms
from qfleet_server.tasks import register_bits
from qfleet_server.worker.engines.aer import final_measurements


def test_register_bits_match_qiskit_bitarray_slicing() -> None:
    rng = np.random.default_rng()
    memory = BitArray(rng.integers(0, 256, (3, 50, 2), dtype=np.uint8), 13)
    for clbits in ([0], [12, 0, 5], list(range(13)), [7, 8, 9, 10, 11, 12, 1, 2, 3]):
        ours = register_bits(memory.array, clbits)
        assert np.array_equal(ours, memory.slice_bits(clbits).array)


def test_dropping_idle_qubits_keeps_registers_parameters_and_values() -> None:
    wide = QuantumCircuit(QuantumRegister(9), ClassicalRegister(2, "a"), ClassicalRegister(1, "b"))
    wide.h(2)
    wide.rx(0.3, 7)
    wide.cx(2, 7)
    wide.barrier()
    wide.measure(7, 2)
    reduced = drop_idle_qubits(wide)
    assert reduced.num_qubits == 2 and reduced.metadata[KEPT_QUBITS] == [2, 7]
    assert [c.name for c in reduced.cregs] == ["a", "b"] and reduced.num_clbits == 3
    unmeasured = reduced.remove_final_measurements(inplace=False)
    full = wide.remove_final_measurements(inplace=False)
    for label in ("IZIIIIZII", "IXIIIIIII", "IIIIIIZII", "ZIIIIIIII"):
        terms = reduce_terms({label: 1.0}, (2, 7), 9)
        expected = Statevector(full).expectation_value(SparsePauliOp(label)).real
        got = sum(c * Statevector(unmeasured).expectation_value(SparsePauliOp(k)).real for k, c in terms.items())
        assert abs(got - expected) < 1e-12


def test_final_measurements_map_clbits_and_refuse_mid_circuit() -> None:
    qc = QuantumCircuit(3, 3)
    qc.h(0)
    qc.measure([0, 2], [2, 0])
    stripped, qargs, positions = final_measurements(qc)  # type: ignore[misc]
    assert qargs == [0, 2] and positions == [1, -1, 0]
    mid = QuantumCircuit(1, 2)
    mid.measure(0, 0)
    mid.x(0)
    mid.measure(0, 1)
    assert final_measurements(mid) is False
    reset = QuantumCircuit(1, 1)
    reset.reset(0)
    reset.measure(0, 0)
    assert final_measurements(reset) is False


def test_requests_send_shared_circuits_once_and_keep_empty_shapes() -> None:
    qc = QuantumCircuit(1)
    qc.x(0)
    body = BaseClient._job_request([(qc, "Z", np.zeros((3, 0)))] * 5 + [(qc, "Z", [[]])], "aer", None, None, None, None)
    request = JobRequest.model_validate(body)
    assert len(request.circuits) == 1 and all(p.circuit == 0 for p in request.pubs)
    assert decode_array(request.pubs[0].parameter_values).shape == (3, 0)
    assert decode_array(request.pubs[5].parameter_values).shape == (1, 0)
    sampler = JobRequest.model_validate(
        BaseClient._job_request([(qc, None, 10)], "aer", None, None, None, None, primitive="sampler")
    )
    assert sampler.primitive == "sampler" and sampler.pubs[0].shots == 10 and sampler.pubs[0].observables is None


def test_pubs_sharing_circuit_observables_and_shape_travel_stacked() -> None:
    from qfleet._base import group_pubs
    from qfleet.results import JobResult, PubResult, ungroup
    from qiskit.circuit import Parameter

    theta = Parameter("t")
    qc = QuantumCircuit(2)
    qc.ry(theta, 0)
    other = QuantumCircuit(2)
    other.rx(theta, 1)
    rows = np.arange(6, dtype=float).reshape(6, 1)
    pubs = [(qc, ["ZI", "IZ"], rows[k]) for k in range(4)] + [(other, "ZZ", rows[4]), (qc, ["ZI", "IZ"], rows[5])]
    wire, layout = group_pubs(pubs)
    assert layout is not None and len(wire) == 2
    circuit, obs, values = wire[0]
    assert circuit is qc and values.shape == (5, 1, 1) and np.array_equal(values[:, 0, 0], [0, 1, 2, 3, 5])
    assert layout == [(0, 0), (0, 1), (0, 2), (0, 3), (1, None), (0, 4)]
    # what the service answers for the stacked PUB: shape (5,) + the observables' (2,)
    evs = np.arange(10.0).reshape(5, 2)
    stacked = JobResult(
        "j", [PubResult(evs, evs * 0, None, {"shape": [5, 2]}), PubResult(np.ones(()), np.zeros(()))], {}
    )
    back = ungroup(stacked, layout)
    assert [r.evs.tolist() for r in back] == [[0, 1], [2, 3], [4, 5], [6, 7], 1.0, [8, 9]]
    assert back[0].metadata["shape"] == [2]
    # observables of more axes than the values: the new axis stays in front
    wire, _ = group_pubs([(qc, [["ZI"], ["IZ"]], rows[k]) for k in range(3)])
    assert wire[0][2].shape == (3, 1, 1, 1) and np.broadcast_shapes((2, 1), wire[0][2].shape[:-1]) == (3, 2, 1)

"""The sampler through a real stack: exact sampling on aer (chi-square), seeds, registers,
mid-circuit operations, the wukong72 readout error, and the 4xx answers."""

from __future__ import annotations

import numpy as np
import pytest
from qfleet import Client, InvalidRequestError
from qfleet.qiskit import Sampler
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.circuit import ParameterVector
from qiskit.quantum_info import Statevector
from scipy.stats import chisquare

from qfleet_server.devices.wukong72 import load_calibration

pytestmark = pytest.mark.e2e


def _counts(bits: np.ndarray, num_bits: int) -> np.ndarray:
    """Occurrences of each integer outcome, from packed big-endian rows (shots, bytes)."""
    values = np.zeros(len(bits), dtype=np.int64)
    for byte in range(bits.shape[-1]):
        values = (values << 8) | bits[:, byte]
    return np.bincount(values, minlength=2**num_bits)


def test_aer_counts_follow_the_exact_distribution(client: Client) -> None:
    rng = np.random.default_rng()
    p = ParameterVector("p", 6)
    qc = QuantumCircuit(3)
    for q in range(3):
        qc.ry(p[q], q)
    qc.cx(0, 1)
    qc.cx(1, 2)
    for q in range(3):
        qc.rx(p[3 + q], q)
    qc.measure_all()
    values = rng.uniform(0, np.pi, (3, 6))
    shots = 20_000
    result = client.sample([(qc, values, shots)], backend="aer").result(timeout=120)[0]
    bits, num_bits = result.registers["meas"]  # type: ignore[index]
    assert bits.shape == (3, shots, 1) and num_bits == 3
    for row in range(3):
        probs = Statevector(qc.remove_final_measurements(inplace=False).assign_parameters(values[row])).probabilities()
        observed = _counts(bits[row], 3)
        keep = probs > 1e-9  # outcomes of probability 0 never occur
        assert observed[~keep].sum() == 0
        assert chisquare(observed[keep], probs[keep] / probs[keep].sum() * shots).pvalue > 1e-4


def test_seeds_reproduce_and_differ(client: Client) -> None:
    qc = QuantumCircuit(4)
    qc.h(range(4))
    qc.measure_all()
    sampler = Sampler(client, seed=11)
    a = sampler.run([qc], shots=500).result()[0].data.meas.array
    b = sampler.run([qc], shots=500).result()[0].data.meas.array
    c = Sampler(client, seed=12).run([qc], shots=500).result()[0].data.meas.array
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    result = sampler.run([qc]).result()
    assert result.metadata == {"version": 2} and result[0].metadata == {"shots": 1024, "circuit_metadata": {}}
    assert result.qfleet.job_id.startswith("j-") and result.qfleet.metadata["seed"] == 11  # type: ignore[attr-defined]


def test_mid_circuit_measurement_reset_and_classical_control_on_aer(client: Client) -> None:
    q, first, second = QuantumRegister(2), ClassicalRegister(1, "first"), ClassicalRegister(2, "second")
    qc = QuantumCircuit(q, first, second)
    qc.x(0)
    qc.measure(0, first[0])  # always 1
    qc.reset(0)
    with qc.if_test((first, 1)):
        qc.x(1)
    qc.measure(0, second[0])  # 0 after the reset
    qc.measure(1, second[1])  # 1: the condition held
    data = Sampler(client, seed=1).run([qc], shots=200).result()[0].data
    assert data.first.get_counts() == {"1": 200}
    assert data.second.get_counts() == {"10": 200}


def test_wukong72_shows_the_readout_error_of_its_calibration(client: Client) -> None:
    qc = QuantumCircuit(1, 1)
    qc.x(0)
    qc.measure(0, 0)
    shots = 20_000
    job = client.sample([(qc, None, shots)], backend="wukong72", seed=5)
    result = job.result(timeout=300)[0]
    (physical,) = result.metadata["physical_qubits"]
    error = load_calibration()["qubits"][physical]["readout_error"]
    bits, _ = result.registers["c"]  # type: ignore[index]
    zeros = float(np.mean(bits[:, 0] == 0))
    sigma = np.sqrt(error * (1 - error) / shots)
    # a prepared |1> reads 0 with the readout error, plus a little gate error on top
    assert error - 5 * sigma < zeros < error + 5 * sigma + 0.02
    ideal = client.sample([(qc, None, 2000)], backend="wukong72", noise=False).result(timeout=300)[0]
    assert np.all(ideal.registers["c"][0] == 1)  # type: ignore[index]


def test_wukong72_maps_measurements_through_the_layout(client: Client) -> None:
    qc = QuantumCircuit(3, 3)
    qc.x(0)
    qc.x(2)
    qc.measure([0, 1, 2], [2, 1, 0])  # reversed: clbit 0 reads qubit 2
    data = Sampler(client, backend="wukong72", seed=3).run([qc], shots=2000).result()[0].data
    counts = data.c.get_counts()
    assert max(counts, key=counts.get) == "101"  # type: ignore[arg-type]


def test_refusals_are_4xx_with_a_code(client: Client) -> None:
    qc = QuantumCircuit(1, 1)
    qc.h(0)
    qc.measure(0, 0)
    with pytest.raises(InvalidRequestError) as exc:
        client.sample([qc], backend="lightning")
    assert exc.value.code == "option_not_supported"
    mid = QuantumCircuit(1, 2)
    mid.measure(0, 0)
    mid.h(0)
    mid.measure(0, 1)
    with pytest.raises(InvalidRequestError) as exc:
        client.sample([mid], backend="wukong72")
    assert exc.value.code == "unsupported_instruction" and "mid-circuit" in exc.value.message
    with pytest.raises(InvalidRequestError) as exc:
        client.estimate([(qc, "Z")])
    assert exc.value.code == "unsupported_instruction" and "sampler" in exc.value.message


def test_rest_sampler_bad_inputs_get_4xx(stack: object) -> None:
    import httpx

    qasm = 'OPENQASM 3.0; include "stdgates.inc"; bit[1] c; qubit[1] q; h q[0]; c[0] = measure q[0];'
    good = {"circuit": {"format": "qasm3", "data": qasm}}
    cases = [
        ({"primitive": "sampler", "pubs": [{**good, "observables": "Z"}]}, "invalid_pub"),
        ({"primitive": "sampler", "pubs": [{"circuit": 3}]}, "invalid_circuit"),
        ({"primitive": "sampler", "circuits": [good["circuit"]], "pubs": [{"circuit": -1}]}, "invalid_circuit"),
        ({"primitive": "sampler", "pubs": [{**good, "parameter_values": [[0.1]]}]}, "parameter_count_mismatch"),
        ({"primitive": "sampler", "pubs": [{**good, "shots": 10**9}]}, "too_many_shots"),
        ({"primitive": "sampler", "backend": "lightning", "pubs": [good]}, "option_not_supported"),
        ({"pubs": [{"circuit": {"format": "qasm3", "data": "OPENQASM 3.0; qubit[1] q;"}}]}, "invalid_observable"),
        ({"primitive": "estimator", "pubs": [{**good, "observables": "Z"}]}, "unsupported_instruction"),
    ]
    headers = {"Authorization": f"Bearer {stack.api_key}"}  # type: ignore[attr-defined]
    for body, code in cases:
        answer = httpx.post(f"{stack.url}/v1/jobs", json=body, headers=headers, timeout=30)  # type: ignore[attr-defined]
        assert 400 <= answer.status_code < 500, (body, answer.text)
        assert answer.json()["error"]["code"] == code, (body, answer.text)
    ok = httpx.post(
        f"{stack.url}/v1/jobs",  # type: ignore[attr-defined]
        json={"primitive": "sampler", "circuits": [good["circuit"]], "pubs": [{"circuit": 0, "shots": 50}]},
        headers=headers,
        timeout=30,
    )
    assert ok.status_code in (200, 201, 202), ok.text


def test_the_admin_page_of_a_sampler_job_answers(client: Client, stack: object) -> None:
    import httpx

    qc = QuantumCircuit(1, 1)
    qc.h(0)
    qc.measure(0, 0)
    job = client.sample([qc], shots=20)
    job.result(timeout=60)
    headers = {"Authorization": f"Bearer {stack.api_key}"}  # type: ignore[attr-defined]
    page = httpx.get(f"{stack.url}/admin/jobs/{job.id}", headers=headers, timeout=30)  # type: ignore[attr-defined]
    assert page.status_code == 200 and job.id in page.text

"""The result cache across jobs, end to end: real redis-server, uvicorn and worker processes,
the client over HTTP. Hits are read from /metrics (counted in chunks of results: one engine
call each); numbers are checked against the first job and a direct Aer EstimatorV2 call on
fresh random inputs."""

from __future__ import annotations

import secrets

import httpx
import numpy as np
import pytest
from qfleet import Client
from qiskit.quantum_info import SparsePauliOp
from qiskit_aer.primitives import EstimatorV2
from redis import Redis

from qfleet_server.stack import Stack
from qfleet_server.store import Store
from tests.conftest import training_ansatz
from tests.e2e.test_metrics import scrape

pytestmark = pytest.mark.e2e


LEVELS = ("job", "chunk")


def cache_counts(stack: Stack) -> dict[str, float]:
    """hits and misses, whole jobs (answered at submission) and chunks (found by workers)."""
    samples = scrape(stack)
    return {
        f"{level}_{kind}": samples[(f"qfleet_result_cache_{kind}_total", (("level", level),))]
        for level in LEVELS
        for kind in ("hits", "misses")
    }


def moved(stack: Stack, before: dict[str, float]) -> dict[str, float]:
    """What was counted since ``before``, where anything was."""
    return {name: value - before[name] for name, value in cache_counts(stack).items() if value != before[name]}


def work(n: int, rows: int) -> tuple[object, list[list[SparsePauliOp]], np.ndarray]:
    circuit = training_ansatz(n)
    observables = [[SparsePauliOp("I" * (n - 1 - q) + "Z" + "I" * q)] for q in range(n)]
    values = np.random.default_rng().uniform(0, 2 * np.pi, (rows, circuit.num_parameters))
    return circuit, observables, values


def aer(circuit, observables, values):  # type: ignore[no-untyped-def]
    return EstimatorV2().run([(circuit, observables, values)]).result()[0].data.evs


def test_a_repeated_job_is_served_from_the_cache(stack: Stack, client: Client) -> None:
    circuit, obs, values = work(5, 40)
    before = cache_counts(stack)
    first = client.estimate([(circuit, obs, values)]).result(timeout=120)[0]
    counted = moved(stack, before)
    assert counted.keys() == {"job_misses", "chunk_misses"} and counted["job_misses"] == 1  # computed, kept
    before = cache_counts(stack)
    second = client.estimate([(circuit, obs, values)]).result(timeout=120)[0]
    assert moved(stack, before) == {"job_hits": 1}  # answered at submission: no worker saw it
    np.testing.assert_array_equal(second.evs, first.evs)
    np.testing.assert_array_equal(second.stds, first.stds)
    np.testing.assert_allclose(second.evs, aer(circuit, obs, values), atol=1e-8)
    # the admin's overview shows the same counts
    page = httpx.get(f"{stack.url}/admin/partials/overview", headers={"Authorization": f"Bearer {stack.api_key}"})
    assert page.status_code == 200 and 'id="result-cache"' in page.text
    counts = cache_counts(stack)
    row = f'<tr data-level="jobs"><td>jobs</td><td class="num">{int(counts["job_hits"])}</td>'
    assert row + f'<td class="num">{int(counts["job_misses"])}</td>' in page.text


def test_known_work_inside_a_new_job_is_found_chunk_by_chunk(stack: Stack, client: Client) -> None:
    circuit, obs, values = work(5, 30)
    first = client.estimate([(circuit, obs, values)]).result(timeout=120)[0]
    other = training_ansatz(5, layers=1)
    other_values = np.random.default_rng().uniform(0, 2 * np.pi, (7, other.num_parameters))
    before = cache_counts(stack)
    both = client.estimate([(circuit, obs, values), (other, obs, other_values)]).result(timeout=120)
    counted = moved(stack, before)
    assert counted["job_misses"] == 1 and counted["chunk_hits"] >= 1 and counted["chunk_misses"] >= 1
    np.testing.assert_array_equal(both[0].evs, first.evs)
    np.testing.assert_allclose(both[1].evs, aer(other, obs, other_values), atol=1e-8)


def test_gradients_are_cached_with_their_method(stack: Stack, client: Client) -> None:
    circuit, obs, values = work(4, 6)
    first = client.estimate([(circuit, obs, values)], gradient="parameter-shift").result(timeout=120)[0]
    before = cache_counts(stack)
    again = client.estimate([(circuit, obs, values)], gradient="parameter-shift").result(timeout=120)[0]
    assert moved(stack, before) == {"job_hits": 1}
    np.testing.assert_array_equal(again.gradient, first.gradient)
    before = cache_counts(stack)
    adjoint = client.estimate([(circuit, obs, values)], gradient="adjoint").result(timeout=120)[0]
    assert "job_hits" not in moved(stack, before) and "chunk_hits" not in moved(stack, before)
    np.testing.assert_allclose(adjoint.gradient, first.gradient, atol=1e-8)


def test_another_tenant_never_reads_the_cache(stack: Stack, client: Client) -> None:
    key = "qf_test_" + secrets.token_urlsafe(24)
    Store(Redis.from_url(stack.redis_url or "")).add_api_key(key, tenant="cache-other", role="user")
    circuit, obs, values = work(5, 30)
    first = client.estimate([(circuit, obs, values)]).result(timeout=120)[0]
    before = cache_counts(stack)
    with Client(stack.url, api_key=key) as other:
        theirs = other.estimate([(circuit, obs, values)]).result(timeout=120)[0]
    assert moved(stack, before).keys() == {"job_misses", "chunk_misses"}
    np.testing.assert_allclose(theirs.evs, first.evs, atol=1e-12)


def test_cache_false_computes_again(stack: Stack, client: Client) -> None:
    circuit, obs, values = work(5, 30)
    client.estimate([(circuit, obs, values)]).result(timeout=120)
    before = cache_counts(stack)
    again = client.estimate([(circuit, obs, values)], cache=False).result(timeout=120)[0]
    assert moved(stack, before) == {}  # neither looked up nor kept
    np.testing.assert_allclose(again.evs, aer(circuit, obs, values), atol=1e-8)


def test_shot_based_results_are_reused_only_with_the_same_seed(stack: Stack, client: Client) -> None:
    circuit, obs, values = work(4, 8)
    before = cache_counts(stack)
    unseeded = [client.estimate([(circuit, obs, values)], shots=500).result(timeout=120)[0] for _ in range(2)]
    assert moved(stack, before) == {}
    assert not np.array_equal(unseeded[0].evs, unseeded[1].evs)  # sampled twice
    seeded = client.estimate([(circuit, obs, values)], shots=500, seed=11).result(timeout=120)[0]
    before = cache_counts(stack)
    again = client.estimate([(circuit, obs, values)], shots=500, seed=11).result(timeout=120)[0]
    assert moved(stack, before) == {"job_hits": 1}
    np.testing.assert_array_equal(again.evs, seeded.evs)
    for other in ({"shots": 500, "seed": 12}, {"shots": 600, "seed": 11}):
        before = cache_counts(stack)
        client.estimate([(circuit, obs, values)], **other).result(timeout=120)  # type: ignore[arg-type]
        assert moved(stack, before).keys() == {"job_misses", "chunk_misses"}


def test_a_seeded_sample_is_reused(stack: Stack, client: Client) -> None:
    circuit, _, values = work(4, 5)
    circuit.measure_all()
    first = client.sample([(circuit, values, 300)], seed=3).result(timeout=120)[0]
    before = cache_counts(stack)
    again = client.sample([(circuit, values, 300)], seed=3).result(timeout=120)[0]
    assert moved(stack, before) == {"job_hits": 1}
    bits, num_bits = again.registers["meas"]
    np.testing.assert_array_equal(bits, first.registers["meas"][0])
    assert num_bits == 4


def test_a_changed_row_misses_for_its_chunk_only(stack: Stack, client: Client) -> None:
    circuit, obs, values = work(12, 3000)  # several tasks of about 0.1 s each
    before = cache_counts(stack)
    client.estimate([(circuit, obs, values)]).result(timeout=300)
    chunks = moved(stack, before)["chunk_misses"]
    assert chunks >= 2
    changed = values.copy()
    changed[1234] = np.random.default_rng().uniform(0, 2 * np.pi, circuit.num_parameters)
    before = cache_counts(stack)
    result = client.estimate([(circuit, obs, changed)]).result(timeout=300)[0]
    assert moved(stack, before) == {"job_misses": 1, "chunk_hits": chunks - 1, "chunk_misses": 1}
    np.testing.assert_allclose(result.evs[:, 1234], aer(circuit, obs, changed[1234:1235])[:, 0], atol=1e-8)
    np.testing.assert_allclose(result.evs[:, ::97], aer(circuit, obs, changed[::97]), atol=1e-8)

"""The price admission holds against its limits is an upper bound on what the job stores:
random job shapes, planned and 'run' with results of the real size."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from qiskit.circuit import ParameterVector, QuantumCircuit

from qfleet_server.parsing import describe
from qfleet_server.planner import plan_job, price_job
from qfleet_server.pubs import ParsedPub
from qfleet_server.tasks import assemble, pack_segment

shapes = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)


@st.composite
def pubs(draw: st.DrawFn) -> ParsedPub:
    n = draw(st.integers(1, 5))
    P = draw(st.integers(0, 4))
    qc = QuantumCircuit(n)
    params = ParameterVector("t", P)
    for j in range(P):
        qc.rx(params[j], j % n)
        if draw(st.booleans()):
            qc.ry(2 * params[j] + 0.5, (j + 1) % n)  # a parameter in several rotations
    obs_shape, par_shape = draw(shapes), draw(shapes)
    if draw(st.booleans()):  # broadcastable: one side's axes of size 1
        obs_shape = tuple(1 for _ in obs_shape)
    try:
        shape = tuple(np.broadcast_shapes(obs_shape, par_shape))
    except ValueError:
        obs_shape, shape = (), par_shape
    K = int(np.prod(obs_shape)) if obs_shape else 1
    M = int(np.prod(par_shape)) if par_shape else 1
    labels = ["".join(draw(st.sampled_from("IXYZ")) for _ in range(n)) for _ in range(draw(st.integers(1, 3)))]
    observables = [{label: float(k + 1) for label in labels} for k in range(K)]
    values = np.arange(M * P, dtype=float).reshape(M, P)
    gradient = draw(st.sampled_from([None, "parameter-shift", "adjoint"]))
    shots = draw(st.sampled_from([0, 100]))
    return ParsedPub(describe(qc), observables, obs_shape, values, par_shape, shape, 0.0, shots, gradient)


@settings(max_examples=150, deadline=None)
@given(st.lists(pubs(), min_size=1, max_size=4), st.floats(1e-7, 1.0))
def test_the_price_bounds_the_bytes_stored(jobs: list[ParsedPub], target_s: float) -> None:
    price = price_job(jobs)
    plan = plan_job(jobs, target_s)
    assert sum(len(v) for v in plan.data.values()) <= price.payload_bytes
    results = {}
    for t, segments in enumerate(plan.tasks):
        parts = []
        for i, start, stop in segments:
            pub = plan.spec.pubs[i]
            width = pub.width(stop - start)
            grad = np.zeros(width * pub.num_parameters) if pub.gradient else None
            parts.append(pack_segment(np.zeros(width), np.zeros(width), grad))
        results[t] = b"".join(parts)
    assert sum(len(r) for r in results.values()) <= price.result_bytes
    out = assemble(plan.spec, results)
    assert sum(a.nbytes for arrays in out for a in arrays.values() if a is not None) <= price.result_bytes
    # evaluations count each broadcast value once, and each shifted copy for parameter shift
    shifts = [2 * p.info.shift_terms + 1 if p.gradient == "parameter-shift" else 1 for p in jobs]
    assert price.evaluations == sum(p.size * f for p, f in zip(jobs, shifts))
    assert price.seconds >= sum(p.rows * p.row_seconds for p in plan.spec.pubs) * (1 - 1e-9)

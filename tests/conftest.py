"""Shared fixtures: a real redis-server per session on a free port, and a real stack
(uvicorn + worker processes) for end-to-end tests."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import ParameterVector
from redis import Redis

from qfleet_server.bench.workloads import training_ansatz  # noqa: F401  (re-exported for the tests)
from qfleet_server.stack import Stack, free_port, start_redis
from qfleet_server.stack import redis_url as make_redis_url


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server with a password, as every qfleet Redis has; the URL carries it."""
    port, password = free_port(), secrets.token_urlsafe(16)
    proc = start_redis(port, tmp_path_factory.mktemp("redis"), appendonly=False, password=password)
    yield make_redis_url(port, password)
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def clean_redis(redis_url: str) -> Iterator[str]:
    """Flushed before and after the test, as rq's own tests do."""
    Redis.from_url(redis_url).flushall()
    yield redis_url
    Redis.from_url(redis_url).flushall()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(port=free_port(), workers=2, log_dir=tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture
def client(stack: Stack) -> Iterator[object]:
    from qfleet import Client

    with Client(stack.url, api_key=stack.api_key) as c:
        yield c


def random_circuit(n: int, rng: np.random.Generator, depth: int = 4) -> QuantumCircuit:
    """A random parameterized circuit over many gate kinds, with affine parameter expressions."""
    p = ParameterVector("p", 3 * n)
    qc = QuantumCircuit(n)
    used = 0
    for _ in range(depth):
        for q in range(n):
            kind = rng.integers(0, 9)
            angle = p[used % len(p)] * float(rng.uniform(0.5, 2)) + float(rng.uniform(-1, 1))
            used += 1
            if kind == 0:
                qc.rx(angle, q)
            elif kind == 1:
                qc.ry(p[used % len(p)], q)
            elif kind == 2:
                qc.rz(angle, q)
            elif kind == 3:
                qc.h(q)
            elif kind == 4:
                qc.sdg(q)
            elif kind == 5:
                qc.u(float(rng.uniform(0, 3)), float(rng.uniform(0, 3)), float(rng.uniform(0, 3)), q)
            elif kind == 6:
                qc.sx(q)
            elif kind == 7:
                qc.t(q)
            else:
                qc.p(angle, q)
        for q in range(n - 1):
            two = rng.integers(0, 5)
            a, b = (q, q + 1) if rng.random() < 0.5 else (q + 1, q)
            if two == 0:
                qc.cx(a, b)
            elif two == 1:
                qc.cz(a, b)
            elif two == 2:
                qc.rzz(p[(used + q) % len(p)], a, b)
            elif two == 3:
                qc.crx(float(rng.uniform(0, 3)), a, b)
            else:
                qc.iswap(a, b)
    return qc

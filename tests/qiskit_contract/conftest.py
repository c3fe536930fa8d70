"""The ported Qiskit primitive suites run against a real qfleet stack.

The suites build their primitive as ``StatevectorEstimator(...)`` / ``StatevectorSampler(...)``;
those names are bound here to factories that return qfleet's primitives on the ``aer``
backend of the session's stack, with the same keyword arguments.
"""

from __future__ import annotations

import unittest
from collections.abc import Iterator
from typing import Any

import pytest

_client: Any = None

QiskitTestCase = unittest.TestCase  # Qiskit's base case only adds warning filters and timing

# Where qfleet knowingly differs from the reference primitive; each is listed in README.md.
EXCEPTIONS = {
    "test_statevector_sampler.py::TestStatevectorSampler::test_run_errors": (
        "qfleet's aer backend runs control flow (a for_loop), as Aer does; the reference "
        "StatevectorSampler raises QiskitError for it. Every other error case of this test is "
        "raised by qfleet too (they are checked when the PUBs are coerced, before any request)."
    ),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for name, reason in EXCEPTIONS.items():
            if item.nodeid.endswith(name):
                item.add_marker(pytest.mark.xfail(reason=reason, strict=False))  # its passing subtests report XPASS


@pytest.fixture(scope="session", autouse=True)
def _qfleet_client(stack: Any) -> Iterator[None]:
    from qfleet import Client

    global _client
    with Client(stack.url, api_key=stack.api_key) as client:
        _client = client
        yield
        _client = None


def qfleet_estimator(**kwargs: Any) -> Any:
    from qfleet.qiskit import Estimator

    return Estimator(_client, backend="aer", timeout=120, **kwargs)


def qfleet_sampler(**kwargs: Any) -> Any:
    from qfleet.qiskit import Sampler

    return Sampler(_client, backend="aer", timeout=120, **kwargs)

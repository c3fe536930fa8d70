"""PennyLane's own device test suite (shipped as ``pennylane.devices.tests``) against the
``qfleet`` device on a real stack.

The suite's fixtures (``device``, ``tol``, ``skip_if`` …) are imported from its conftest as they
are; ``device_kwargs``, which upstream builds from ``--device``, names the qfleet device on the
session's stack. The test modules here import the upstream test classes unchanged.
"""

from __future__ import annotations

import sys
import types
from importlib.metadata import EntryPoint
from typing import Any

import pytest


def _no_rerun(*args: Any, **kwargs: Any) -> Any:
    """``flaky`` reruns a failed stochastic test; absent here, each test runs once (stricter)."""
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda f: f


sys.modules.setdefault("flaky", types.SimpleNamespace(flaky=_no_rerun))  # type: ignore[arg-type]

from pennylane.devices import device_constructor  # noqa: E402
from pennylane.devices.tests.conftest import (  # noqa: E402, F401  (fixtures, used by name)
    enable_and_disable_graph_decomp,
    fixture_device,
    init_state,
    skip_if,
    tol,
    validate_diff_method,
)

# A client installed before the entry point existed does not declare it yet; the entry point
# itself is checked in tests/unit/test_pennylane_device.py.
device_constructor.plugin_devices.setdefault(
    "qfleet", EntryPoint(name="qfleet", value="qfleet.pennylane:QfleetDevice", group="pennylane.plugins")
)


@pytest.fixture(scope="session")
def _qfleet(stack: Any) -> dict[str, Any]:
    return {"name": "qfleet", "url": stack.url, "api_key": stack.api_key, "backend": "aer"}


@pytest.fixture
def device_kwargs(_qfleet: dict[str, Any]) -> dict[str, Any]:
    return dict(_qfleet)


_STATE = "it returns the state vector (qml.state() or a Snapshot); a remote service returns measurements only"
_NO_GATES = "the operator has no decomposition into gates and qfleet runs circuits of gates, not matrices"
_SHOT_NOISE = (
    "expval of a Hermitian with eigenvalues up to ~8: at the 20,000 shots used here its standard error "
    "(~0.07) exceeds the suite's fixed 0.05 tolerance (upstream runs 1e6 shots, too slow for this suite)"
)
# Every upstream test not run, with why; the rest run with their assertions unchanged.
SKIPPED: dict[str, str] = {
    "test_supported_gates_can_be_implemented[Snapshot]": _STATE,
    "test_supported_gates_can_be_implemented[BlockEncode]": _NO_GATES,
    "test_supported_gates_can_be_implemented[DoubleExcitationPlus]": _NO_GATES,
    "test_supported_gates_can_be_implemented[DoubleExcitationMinus]": _NO_GATES,
    "test_templates.py::TestTemplates::test_MottonenStatePreparation_state": _STATE,
    "test_templates.py::TestTemplates::test_FlipSign": _STATE,
    "test_templates.py::TestTemplates::test_BasisRotation": _STATE,
    "TestStateMeasurement::test_custom_state_measurement": _STATE,
    "TestCapabilities::test_supports_broadcasting": "needs the pytest-mock plugin (`mocker`), not installed here",
    "test_measurements_shots.py::TestTensorExpval::test_hermitian": _SHOT_NOISE,
    "test_measurements_shots.py::TestExpval::test_multi_mode_hermitian_expectation": _SHOT_NOISE,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for name, reason in SKIPPED.items():
            if name in item.nodeid:
                item.add_marker(pytest.mark.skip(reason=reason))

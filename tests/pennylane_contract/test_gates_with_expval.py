"""PennyLane's pennylane.devices.tests.test_gates_with_expval, unchanged, on the qfleet device (exact)."""

from pennylane.devices.tests.test_gates_with_expval import *  # noqa: F403

"""PennyLane's pennylane.devices.tests.test_gates, unchanged, on the qfleet device (exact)."""

from pennylane.devices.tests.test_gates import *  # noqa: F403

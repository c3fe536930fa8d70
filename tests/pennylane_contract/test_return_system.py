"""PennyLane's pennylane.devices.tests.test_return_system, unchanged, on the qfleet device (exact)."""

from pennylane.devices.tests.test_return_system import *  # noqa: F403

"""PennyLane's pennylane.devices.tests.test_measurements, unchanged, on the qfleet device (exact)."""

from pennylane.devices.tests.test_measurements import *  # noqa: F403

"""PennyLane's pennylane.devices.tests.test_tracker, unchanged, on the qfleet device (exact)."""

from pennylane.devices.tests.test_tracker import *  # noqa: F403

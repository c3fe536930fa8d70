"""PennyLane's pennylane.devices.tests.test_wires, unchanged, on the qfleet device (exact)."""

from pennylane.devices.tests.test_wires import *  # noqa: F403

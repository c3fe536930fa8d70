"""PennyLane's pennylane.devices.tests.test_compare_default_qubit, unchanged, on the qfleet device (exact)."""

from pennylane.devices.tests.test_compare_default_qubit import *  # noqa: F403

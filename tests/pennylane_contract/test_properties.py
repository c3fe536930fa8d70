"""PennyLane's pennylane.devices.tests.test_properties, unchanged, on the qfleet device (exact)."""

from pennylane.devices.tests.test_properties import *  # noqa: F403

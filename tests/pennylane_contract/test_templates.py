"""PennyLane's pennylane.devices.tests.test_templates, unchanged, on the qfleet device (exact)."""

from pennylane.devices.tests.test_templates import *  # noqa: F403

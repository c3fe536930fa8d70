"""PennyLane's pennylane.devices.tests.test_gradients_torch, unchanged, on the qfleet device (exact)."""

from pennylane.devices.tests.test_gradients_torch import *  # noqa: F403

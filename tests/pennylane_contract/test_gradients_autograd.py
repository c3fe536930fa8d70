"""PennyLane's pennylane.devices.tests.test_gradients_autograd, unchanged, on the qfleet device (exact)."""

from pennylane.devices.tests.test_gradients_autograd import *  # noqa: F403

"""PennyLane's measurement tests, unchanged, on the qfleet device with shots: every measurement
(expval, var, probs, sample, counts) then comes from the sampler's bit strings, one job a batch."""

from typing import Any

import pytest
from pennylane.devices.tests.test_measurements import (  # noqa: F401
    TestExpval,
    TestSample,
    TestSampleMeasurement,
    TestTensorExpval,
    TestTensorSample,
    TestTensorVar,
    TestVar,
)

SHOTS = 20_000


@pytest.fixture
def device_kwargs(_qfleet: dict[str, Any]) -> dict[str, Any]:
    return {**_qfleet, "shots": SHOTS, "seed": 1234}

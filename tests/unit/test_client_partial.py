"""The client's side of partial results, against a scripted transport: what a stream of
them asks the service and what it yields, and a failure raised from a partial read."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest
from qfleet import Client, JobFailedError
from qfleet.wire import encode_array


def body(status: str, done: int, ready: list[int]) -> dict[str, Any]:
    mask = np.array(ready, dtype=np.uint8)
    evs = np.where(mask.astype(bool), np.arange(len(ready), dtype=float), np.nan)
    return {
        "id": "j-1",
        "status": status,
        "progress": {"tasks_done": done, "tasks_total": 3},
        "results": [
            {
                "evs": encode_array(evs).model_dump(),
                "stds": encode_array(evs * 0).model_dump(),
                "mask": encode_array(mask, "uint8").model_dump(),
            }
        ],
    }


def test_a_stream_of_partial_results_asks_for_tasks_beyond_those_seen() -> None:
    answers = [
        body("running", 1, [1, 0, 0]),
        body("running", 1, [1, 0, 0]),  # held until `wait` ran out: nothing new, not yielded
        body("running", 3, [1, 1, 1]),  # everything, before the job reads 'done': not yielded
        body("done", 3, [1, 1, 1]),
    ]
    seen: list[httpx.Request] = []

    def route(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=answers.pop(0))

    client = Client("http://q", api_key="k", transport=httpx.MockTransport(route))
    parts = list(client.job("j-1").stream(timeout=10, results=True))
    assert [r.url.params.get("after") for r in seen] == ["0", "1", "1", "3"]
    assert all(r.url.params["partial"] == "true" and float(r.url.params["wait"]) > 0 for r in seen)
    assert [p.status for p in parts] == ["running", "done"]
    first, last = parts[0][0], parts[-1][0]
    assert first.mask is not None and first.mask.tolist() == [True, False, False]
    assert first.evs[0] == 0.0 and np.isnan(first.evs[1:]).all()
    assert last.mask is not None and last.mask.all() and parts[-1].complete and last.evs.tolist() == [0.0, 1.0, 2.0]


def test_a_partial_read_of_a_failed_job_raises_its_reason() -> None:
    failed = {
        "id": "j-1",
        "status": "failed",
        "backend": "aer",
        "progress": {"tasks_done": 1, "tasks_total": 3},
        "created_at": 1.0,
        "error": {"code": "task_failed", "message": "boom", "details": {}},
    }
    conflict = {"error": {"code": "job_failed", "message": "job j-1 failed", "details": {"job": failed}}}
    client = Client(
        "http://q", api_key="k", transport=httpx.MockTransport(lambda r: httpx.Response(409, json=conflict))
    )
    with pytest.raises(JobFailedError) as err:
        client.job("j-1").partial()
    assert err.value.code == "task_failed"
    with pytest.raises(JobFailedError):
        list(client.job("j-1").stream(results=True))

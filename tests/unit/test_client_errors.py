"""Each mistake a client user can make gets a typed error with a code and a next step.

The wrong-URL tests use a real closed port; the retry tests script the network with
httpx.MockTransport (pure client logic: which requests go out, with which timeouts)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import qfleet
from qfleet import (
    AsyncClient,
    Client,
    InvalidRequestError,
    InvalidTypeError,
    JobFailedError,
    JobTimeoutError,
    QfleetError,
    TransportError,
)
from qfleet.errors import error_from_response
from qfleet.wire import encode_array

from qfleet_server.stack import free_port

QASM = 'OPENQASM 3.0; include "stdgates.inc"; input float[64] a; qubit[2] q; ry(a) q[0]; cx q[0], q[1];'
QUEUED = {
    "id": "j-1",
    "status": "queued",
    "backend": "aer",
    "progress": {"tasks_done": 0, "tasks_total": 3},
    "created_at": 1.0,
}


def scripted(*steps: Callable[[httpx.Request], httpx.Response]) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport that plays ``steps`` in order (the last one repeats) and records each request."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return steps[min(len(seen), len(steps)) - 1](request)

    return httpx.MockTransport(handle), seen


def answer(status: int, body: Any) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, json=body)


def fail(exc: type[httpx.TransportError]) -> Callable[[httpx.Request], httpx.Response]:
    def raise_(request: httpx.Request) -> httpx.Response:
        raise exc("scripted", request=request)

    return raise_


def test_the_docstring_tree_is_the_class_tree() -> None:
    lines = [ln for ln in (qfleet.errors.__doc__ or "").splitlines() if re.search(r"(├──|└──|^    QfleetError)", ln)]
    parents: list[type] = []
    drawn = set()
    for line in lines:
        name = re.search(r"(\w+Error)", line).group(1)  # type: ignore[union-attr]
        depth = (line.index(name) - 4) // 4
        cls = getattr(qfleet, name)
        drawn.add(name)
        del parents[depth:]
        if parents:
            assert cls.__bases__[0] is parents[-1], name
        parents.append(cls)
    exported = {n for n in qfleet.__all__ if isinstance(getattr(qfleet, n), type) and n.endswith("Error")}
    assert drawn == exported


def test_a_wrong_url_raises_transport_error_quickly() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(TransportError) as err, Client(url, api_key="qf_x") as client:
        client.estimate([(QASM, "ZZ", [[0.1]])])
    assert time.monotonic() - started < 3.0  # not ~9 s of silent retries
    assert err.value.code == "service_unreachable" and err.value.url == url
    assert f"not reachable at {url}" in str(err.value)
    assert "QFLEET_URL" in (err.value.hint or "") and "/healthz" in (err.value.hint or "")
    assert not isinstance(err.value, httpx.HTTPError) and err.value.__cause__ is None


def test_a_wrong_url_fails_the_same_way_async() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    async def main() -> None:
        async with AsyncClient(url, api_key="qf_x") as client:
            await client.backends()

    with pytest.raises(TransportError) as err:
        asyncio.run(main())
    assert err.value.code == "service_unreachable"


def test_the_retry_budget_is_configurable_and_longer_for_a_service_already_reached() -> None:
    transport, seen = scripted(fail(httpx.ConnectError))
    with pytest.raises(TransportError), Client("http://q", api_key="k", retry_s=0, transport=transport) as client:
        client.backends()
    assert len(seen) == 1  # retry_s=0: no retry at all

    # never reached: about a second of retries (0.1 + 0.2 + 0.4 s), then the error
    transport, seen = scripted(*[fail(httpx.ConnectError)] * 4, answer(200, []))
    with pytest.raises(TransportError), Client("http://q", api_key="k", retry_s=10, transport=transport) as client:
        client.backends()
    assert len(seen) == 4

    # reached once, then down for 1.5 s (four failures): ridden out within retry_s
    transport, seen = scripted(answer(200, []), *[fail(httpx.ConnectError)] * 4, answer(200, []))
    with Client("http://q", api_key="k", retry_s=10, transport=transport) as client:
        client.backends()
        client.backends()
    assert len(seen) == 6


def test_retries_keep_the_long_poll_timeout_and_read_timeouts_never_escape() -> None:
    transport, seen = scripted(fail(httpx.ReadTimeout), answer(202, QUEUED))
    client = Client("http://q", api_key="k", transport=transport)
    with pytest.raises(JobTimeoutError):
        client.job("j-1").result(timeout=0.3, progress=False)
    assert len(seen) >= 2
    assert all(r.extensions["timeout"]["read"] >= 30.0 for r in seen)  # the retry kept wait + margin

    transport, seen = scripted(fail(httpx.ReadTimeout))
    client = Client("http://q", api_key="k", transport=transport)
    with pytest.raises(TransportError) as err:
        client.job("j-1").result(timeout=5, progress=False)
    assert err.value.code == "service_timeout"


@pytest.mark.parametrize(
    "option, value, allowed",
    [("gradient", "adjoin", ["parameter-shift", "adjoint", "auto"]), ("priority", "urgent", ["high", "normal", "low"])],
)
def test_a_bad_option_value_names_the_allowed_ones_before_sending(option: str, value: str, allowed: list[str]) -> None:
    transport, seen = scripted(answer(500, {}))
    client = Client("http://q", api_key="k", transport=transport)
    with pytest.raises(InvalidRequestError) as err:
        client.estimate([(QASM, "ZZ", [[0.1]])], **{option: value})
    assert isinstance(err.value, ValueError) and err.value.status is None
    assert err.value.code == "invalid_option"
    assert err.value.details == {"option": option, "value": value, "allowed": allowed}
    for name in allowed:
        assert repr(name) in str(err.value)
    assert err.value.hint and not seen


def test_a_bad_numeric_option_names_the_option() -> None:
    client = Client("http://q", api_key="k", transport=scripted(answer(500, {}))[0])
    with pytest.raises(InvalidRequestError, match="shots=0") as err:
        client.estimate([(QASM, "ZZ", [[0.1]])], shots=0)
    assert err.value.code == "invalid_option" and err.value.details["option"] == "shots"


def test_forgotten_parameter_values_are_refused_on_the_client() -> None:
    from qiskit.circuit import Parameter, QuantumCircuit

    qc = QuantumCircuit(1)
    qc.ry(Parameter("a"), 0)
    qc.rz(Parameter("b"), 0)
    client = Client("http://q", api_key="k", transport=scripted(answer(500, {}))[0])
    with pytest.raises(InvalidRequestError) as err:
        client.estimate([(qc, "Z")])
    assert err.value.code == "parameter_count_mismatch" and "2 parameters" in str(err.value)
    assert "circuit.parameters" in (err.value.hint or "")
    with pytest.raises(InvalidRequestError) as err:
        client.estimate([(qc, "Z", [[0.1, "x"]])])
    assert err.value.code == "invalid_parameter_values"


def test_a_value_that_is_not_a_pub_or_circuit_says_what_to_pass() -> None:
    client = Client("http://q", api_key="k", transport=scripted(answer(500, {}))[0])
    for call, bad in (
        (client.estimate, ("OPENQASM 3.0; qubit[1] q;", "Z")),  # one PUB not in a list: its items are not PUBs
        (client.estimate, [42]),
        (client.sample, [("OPENQASM 3.0; qubit[1] q;", None, 10, "extra")]),
    ):
        with pytest.raises(InvalidTypeError) as err:
            call(bad)  # type: ignore[operator]
        assert isinstance(err.value, TypeError) and isinstance(err.value, InvalidRequestError)
        assert err.value.code == "invalid_pub" and "inside a list" in (err.value.hint or "")
    with pytest.raises(InvalidTypeError) as err:
        client.sample([3.5])  # a sampler PUB may be a bare circuit: this one is not a circuit
    assert (
        err.value.code == "invalid_circuit" and "float" in str(err.value) and "QuantumCircuit" in (err.value.hint or "")
    )


def test_missing_configuration_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QFLEET_URL", raising=False)
    monkeypatch.delenv("QFLEET_API_KEY", raising=False)
    with pytest.raises(QfleetError) as err:
        Client()
    assert err.value.code == "missing_url" and "QFLEET_URL" in (err.value.hint or "")
    with pytest.raises(QfleetError) as err:
        Client("http://q")
    assert err.value.code == "missing_api_key" and "QFLEET_API_KEY" in (err.value.hint or "")
    with pytest.raises(QfleetError) as err:
        Client("127.0.0.1:8000", api_key="qf_x")
    assert err.value.code == "invalid_url" and err.value.hint == "write it as http://127.0.0.1:8000"


@pytest.mark.parametrize(
    "status, cls_name, hint",
    [
        (401, "AuthError", "QFLEET_API_KEY"),
        (404, "NotFoundError", "id"),
        (429, "RateLimitedError", "retry_after"),
        (503, "ServerError", "retry"),
    ],
)
def test_service_errors_keep_the_code_and_add_a_next_step(status: int, cls_name: str, hint: str) -> None:
    err = error_from_response(status, {"error": {"code": "some_code", "message": "what", "details": {"a": 1}}}, "2")
    assert type(err).__name__ == cls_name and err.code == "some_code" and err.status == status
    assert hint in (err.hint or "") and err.details == {"a": 1}


def test_a_failed_job_raises_its_reason_with_a_hint() -> None:
    failed = {**QUEUED, "status": "failed", "error": {"code": "task_failed", "message": "boom", "details": {}}}
    conflict = {"error": {"code": "job_failed", "message": "job j-1 failed", "details": {"job": failed}}}
    client = Client("http://q", api_key="k", transport=scripted(answer(409, conflict))[0])
    with pytest.raises(JobFailedError) as err:
        client.job("j-1").result(progress=False)
    assert err.value.code == "task_failed" and err.value.message == "boom" and err.value.hint


def test_stream_ends_with_the_final_status_and_result_returns_arrays() -> None:
    running = {**QUEUED, "status": "running", "progress": {"tasks_done": 2, "tasks_total": 3}}
    done_info = {**QUEUED, "status": "done", "progress": {"tasks_done": 3, "tasks_total": 3}}
    body = {
        "id": "j-1",
        "status": "done",
        "results": [{"evs": encode_array([1.0, 0.5]).model_dump(), "stds": encode_array([0.0, 0.0]).model_dump()}],
    }

    answers: list[tuple[int, Any]] = [(202, QUEUED), (202, running), (200, body)]  # the last one stays

    def route(request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/result"):
            return httpx.Response(200, json=done_info)
        status, json = answers.pop(0) if len(answers) > 1 else answers[0]
        return httpx.Response(status, json=json)

    client = Client("http://q", api_key="k", transport=httpx.MockTransport(route))
    statuses = [(i.status, i.progress.tasks_done) for i in client.job("j-1").stream(timeout=10)]
    assert statuses == [("queued", 0), ("running", 2), ("done", 3)]
    result = client.job("j-1").result(progress=False)
    assert result[0].evs.tolist() == [1.0, 0.5]


def test_an_answer_the_client_does_not_understand_is_a_qfleet_error() -> None:
    client = Client("http://q", api_key="k", transport=scripted(answer(200, {"id": 3}))[0])
    with pytest.raises(QfleetError) as err:
        client.job("j-1").status()
    assert err.value.code == "unexpected_answer" and "JobInfo" in str(err.value)

"""Each kind of bad input gets its own 4xx code and the one error body, never a 500.
The app runs in-process against a real redis-server; no worker is needed to refuse."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from qfleet._base import encode_pub
from redis import Redis

from qfleet_server.app import create_app
from qfleet_server.bench.workloads import training_ansatz
from qfleet_server.settings import Settings
from qfleet_server.store import Store

KEY = "qf_test_user_key"
OTHER = "qf_test_other_key"
QASM = 'OPENQASM 3.0; include "stdgates.inc"; input float[64] a; input float[64] b; qubit[2] q; ry(a) q[0]; rz(b) q[1]; cx q[0], q[1];'


@pytest.fixture
def api(clean_redis: str) -> Iterator[TestClient]:
    settings = Settings(redis_url=clean_redis, max_body_bytes=200_000, max_qubits=20)
    store = Store(Redis.from_url(clean_redis), settings.key_prefix)
    store.add_api_key(KEY, tenant="alpha", role="user")
    store.add_api_key(OTHER, tenant="beta", role="user")
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {KEY}"}) as client:
        yield client


def job(pub: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"backend": "aer", "pubs": [pub], **top}


def pub(circuit: str = QASM, observables: Any = "ZZ", values: Any = ((0.1, 0.2),), **extra: Any) -> dict[str, Any]:
    return {
        "circuit": {"format": "qasm3", "data": circuit},
        "observables": observables,
        "parameter_values": values,
        **extra,
    }


WIDE = training_ansatz(21)

CASES = [
    ("circuit text that does not parse", job(pub("OPENQASM 3.0; qubit[2] q; h q[0]")), 400, "invalid_circuit"),
    (
        "unknown gate",
        job(pub('OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; foo q[0];', values=None)),
        400,
        "unknown_gate",
    ),
    (
        "non-standard include",
        job(pub('OPENQASM 3.0; include "evil.inc"; qubit[1] q;', "Z", None)),
        400,
        "unsupported_include",
    ),
    (
        "QPY that is not base64",
        job({"circuit": {"format": "qpy", "data": "%%%"}, "observables": "Z"}),
        400,
        "invalid_circuit",
    ),
    (
        "QPY that is not QPY",
        job({"circuit": {"format": "qpy", "data": base64.b64encode(b"nonsense").decode()}, "observables": "Z"}),
        400,
        "invalid_circuit",
    ),
    ("parameter count mismatch", job(pub(values=[[0.1, 0.2, 0.3]])), 400, "parameter_count_mismatch"),
    (
        "broadcast shape mismatch",
        job(pub(observables=["ZZ", "XX", "YY"], values=[[0.1, 0.2], [0.3, 0.4]])),
        400,
        "shape_mismatch",
    ),
    (
        "NaN parameter",
        job(
            pub(
                values={
                    "dtype": "float64",
                    "shape": [1, 2],
                    "data": base64.b64encode(b"\x00" * 8 + b"\x00" * 6 + b"\xf8\x7f").decode(),
                }
            )
        ),
        400,
        "non_finite_parameters",
    ),
    ("infinite parameter as JSON", job(pub(values=[[0.1, 1e999]])), 400, "non_finite_parameters"),
    ("observable wider than the circuit", job(pub(observables="ZZZ")), 400, "observable_too_wide"),
    ("observable narrower than the circuit", job(pub(observables="Z")), 400, "observable_qubit_mismatch"),
    ("not a Pauli label", job(pub(observables="ZQ")), 400, "invalid_observable"),
    ("unknown backend", job(pub(), backend="nope"), 400, "unknown_backend"),
    (
        "more qubits than the backend",
        job(encode_pub((WIDE, "Z" * 21, [[0.0] * WIDE.num_parameters])).model_dump(mode="json")),
        400,
        "too_many_qubits",
    ),
    (
        "measurement in an estimator circuit",
        job(pub('OPENQASM 3.0; include "stdgates.inc"; qubit[1] q; bit[1] c; c[0] = measure q[0];', "Z", None)),
        400,
        "unsupported_instruction",
    ),
    (
        "shots on an exact-only backend",
        job(pub(), backend="lightning", options={"shots": 100}),
        400,
        "option_not_supported",
    ),
    ("no PUBs", {"backend": "aer", "pubs": []}, 422, "invalid_request"),
    ("negative precision", job(pub(precision=-1)), 422, "invalid_request"),
    (
        "array data of the wrong length",
        job(pub(values={"dtype": "float64", "shape": [1, 2], "data": "AAAA"})),
        400,
        "invalid_parameter_values",
    ),
    # issue 9: inputs that once validated and then failed with a 500, or later in a worker
    ("zero-size parameter array", job(pub(values={"dtype": "float64", "shape": [0, 2], "data": ""})), 400, "empty_pub"),
    ("no observables", job(pub(observables=[])), 400, "empty_pub"),
    ("a subnormal precision", job(pub(precision=1e-300), backend="aer"), 400, "too_many_shots"),
    (
        "an array of more than 32 dimensions",
        job(pub(values={"dtype": "float64", "shape": [1] * 40 + [2], "data": base64.b64encode(b"\0" * 16).decode()})),
        400,
        "invalid_parameter_values",
    ),
    ("a seed past int64", job(pub(), options={"shots": 100, "seed": 2**63}), 422, "invalid_request"),
    ("parameters without values", job(pub(values=None)), 400, "missing_parameter_values"),
    ("an infinite precision", job(pub(precision=float("inf"))), 422, "invalid_request"),
    ("an infinite job precision", job(pub(), options={"precision": float("inf")}), 422, "invalid_request"),
    ("an unknown option key", job(pub(), options={"shot": 100}), 422, "option_not_supported"),
    ("ten million declared qubits", job(pub("OPENQASM 3.0; qubit[10000000] q;", "Z", None)), 400, "too_many_qubits"),
]


@pytest.mark.parametrize("name, body, status, code", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_its_code(api: TestClient, name: str, body: dict[str, Any], status: int, code: str) -> None:
    # json.dumps writes inf as Infinity, as non-Python clients may
    response = api.post("/v1/jobs", content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"] and isinstance(error["details"], dict)


def test_body_over_the_limit_is_refused_before_parsing(api: TestClient) -> None:
    response = api.post("/v1/jobs", content=b"{" + b" " * 300_000 + b"}", headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_malformed_json(api: TestClient) -> None:
    response = api.post("/v1/jobs", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    "content, content_type",
    [(b'{"backend": "\xff\xfe"}', "application/json"), (b"\xff" * 10, "application/json"), (b"a=b", "text/plain")],
)
def test_unreadable_bodies_get_the_error_body(api: TestClient, content: bytes, content_type: str) -> None:
    response = api.post("/v1/jobs", content=content, headers={"Content-Type": content_type})
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert error["code"] and error["message"]


def test_framework_errors_get_the_error_body(api: TestClient) -> None:
    for method, path, status in [("GET", "/v1/nothing-here", 404), ("PUT", "/v1/jobs", 405)]:
        response = api.request(method, path)
        assert response.status_code == status
        assert response.json()["error"]["code"] in ("not_found", "method_not_allowed")


def test_a_final_measurement_is_refused_with_the_fix(api: TestClient) -> None:
    circuit = 'OPENQASM 3.0; include "stdgates.inc"; qubit[1] q; bit[1] c; h q[0]; c[0] = measure q[0];'
    response = api.post("/v1/jobs", json=job(pub(circuit, "Z", None)))
    assert response.status_code == 400
    assert "remove_final_measurements()" in response.json()["error"]["message"]


def test_a_shape_mismatch_names_the_fix(api: TestClient) -> None:
    response = api.post("/v1/jobs", json=job(pub(observables=["ZZ", "XX", "YY"], values=[[0.1, 0.2], [0.3, 0.4]])))
    assert "P[:, None, :]" in response.json()["error"]["message"]


def test_keys_and_tenants(api: TestClient) -> None:
    assert (
        api.post("/v1/jobs", json=job(pub()), headers={"Authorization": ""}).json()["error"]["code"]
        == "missing_api_key"
    )
    assert api.get("/v1/backends", headers={"Authorization": "Bearer wrong"}).status_code == 401
    created = api.post("/v1/jobs", json=job(pub()))
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
    other = {"Authorization": f"Bearer {OTHER}"}
    unknown = api.get("/v1/jobs/j-doesnotexist").json()
    for method, path in [
        ("GET", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/result"),
        ("DELETE", f"/v1/jobs/{job_id}"),
    ]:
        response = api.request(method, path, headers=other)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == unknown["error"]["code"] == "job_not_found"


def test_openapi_describes_every_endpoint_with_examples(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()
    paths = spec["paths"]
    for path, method in [
        ("/v1/jobs", "post"),
        ("/v1/jobs/{job_id}", "get"),
        ("/v1/jobs/{job_id}/result", "get"),
        ("/v1/jobs/{job_id}", "delete"),
        ("/v1/backends", "get"),
        ("/healthz", "get"),
    ]:
        assert method in paths[path], (path, method)
    schemas = spec["components"]["schemas"]
    for name in ("JobRequest", "Pub", "Array", "Circuit", "ErrorBody", "JobInfo"):
        assert schemas[name].get("examples"), name


def test_a_syntax_error_says_where(api: TestClient) -> None:
    for text, where in [
        ("OPENQASM 3.0; qubit[2] q; h q[0]", "line 1, column 33"),
        ("this is not a circuit", "line 1, column 9"),
    ]:
        response = api.post("/v1/jobs", json=job(pub(text, "ZZ", None)))
        assert response.status_code == 400
        assert where in response.json()["error"]["message"], response.json()

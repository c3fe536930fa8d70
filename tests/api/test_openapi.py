"""/openapi.json says what the service does: the bearer scheme, the one error body for every
error status (and the app really sends it), described request and result schemas whose
claims hold, and docs pages that load nothing from outside the app.
The app runs in-process against a real redis-server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from qfleet.wire import ErrorBody
from redis import Redis

from qfleet_server.app import create_app
from qfleet_server.settings import Settings
from qfleet_server.store import Store

KEY = "qf_test_openapi_user_key"
QASM = 'OPENQASM 3.0; include "stdgates.inc"; input float[64] a; qubit[2] q; ry(a) q[0]; cx q[0], q[1];'
JOB = {"pubs": [{"circuit": {"format": "qasm3", "data": QASM}, "observables": "ZZ", "parameter_values": [[0.1]]}]}
DESCRIBED = [
    "JobRequest",
    "Pub",
    "Circuit",
    "Array",
    "JobOptions",
    "JobInfo",
    "Progress",
    "JobResultBody",
    "PubResultBody",
    "ErrorBody",
    "ErrorDetail",
]


@pytest.fixture
def api(clean_redis: str) -> Iterator[TestClient]:
    Store(Redis.from_url(clean_redis)).add_api_key(KEY, tenant="alpha", role="user")
    with TestClient(create_app(Settings(redis_url=clean_redis))) as client:
        yield client


@pytest.fixture
def doc(api: TestClient) -> dict[str, Any]:
    return api.get("/openapi.json").json()  # type: ignore[no-any-return]


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield method.upper(), path, op


def test_a_bearer_scheme_guards_every_route_but_the_health_check(doc: dict[str, Any]) -> None:
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key, sent as `Authorization: Bearer qf_...`.",
    }
    for method, path, op in operations(doc):
        if path == "/healthz":
            assert "security" not in op
        else:
            assert op["security"] == [{"bearerAuth": []}], (method, path)
            assert "401" in op["responses"], (method, path)


def test_every_error_status_declares_the_one_error_body(doc: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in str(doc) and "ValidationError" not in doc["components"]["schemas"]
    for method, path, op in operations(doc):
        errors = {s: r for s, r in op["responses"].items() if int(s) >= 400 and s != "503"}
        assert "500" in errors, (method, path)
        for status, response in errors.items():
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
            assert response["description"], (method, path, status)
    submit = doc["paths"]["/v1/jobs"]["post"]["responses"]
    assert {"400", "401", "413", "422", "429", "500"} <= set(submit)
    assert {"202", "404", "409", "422"} <= set(doc["paths"]["/v1/jobs/{job_id}/result"]["get"]["responses"])
    assert "403" in doc["paths"]["/metrics"]["get"]["responses"]  # admin-only, found from its dependencies


def declared(doc: dict[str, Any], method: str, path: str, status: int) -> bool:
    return str(status) in doc["paths"][path][method.lower()]["responses"]


def test_the_errors_the_app_sends_are_the_declared_ones(api: TestClient, doc: dict[str, Any]) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    sent = [
        ("POST", "/v1/jobs", api.post("/v1/jobs", json={"pubs": "nope"}, headers=auth)),
        ("POST", "/v1/jobs", api.post("/v1/jobs", json={**JOB, "backend": "nope"}, headers=auth)),
        ("POST", "/v1/jobs", api.post("/v1/jobs", json=JOB)),
        ("GET", "/v1/jobs/{job_id}", api.get("/v1/jobs/j-0000", headers=auth)),
        ("GET", "/v1/jobs/{job_id}/result", api.get("/v1/jobs/j-0000/result?wait=999", headers=auth)),
        ("GET", "/v1/backends/{name}", api.get("/v1/backends/nope", headers=auth)),
        ("GET", "/metrics", api.get("/metrics", headers=auth)),
    ]
    for method, path, response in sent:
        assert response.status_code >= 400
        assert declared(doc, method, path, response.status_code), (method, path, response.status_code)
        body = ErrorBody.model_validate(response.json())
        assert body.error.code and body.error.message
    assert [r.status_code for _, _, r in sent] == [422, 400, 401, 404, 422, 404, 403]


def test_request_and_result_schemas_describe_every_field(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    for name in DESCRIBED:
        schema = schemas[name]
        assert schema.get("description"), name
        for field, prop in schema.get("properties", {}).items():
            assert prop.get("description") or "$ref" in prop, f"{name}.{field}"


def test_the_wire_conventions_are_written_down(doc: dict[str, Any]) -> None:
    pub = doc["components"]["schemas"]["Pub"]["properties"]
    observables, values = pub["observables"]["description"], pub["parameter_values"]["description"]
    assert "rightmost character acts on qubit 0" in observables
    assert "'th10' before 'th2'" in values and "circuit.parameters" in values
    assert "little-endian" in values and "nested lists" in values
    assert "values[:, None, :]" in values  # the broadcasting fix for the commonest mistake
    assert "Bearer" in doc["info"]["description"] and "rightmost character" in doc["info"]["description"]


def test_the_documented_parameter_order_is_what_qiskit_gives(api: TestClient) -> None:
    """The order the document states, checked against the importer the service uses."""
    from qiskit import qasm3

    names = ["th2", "th10", "b", "B", "a_1", "_x"]
    source = (
        'OPENQASM 3.0; include "stdgates.inc"; ' + " ".join(f"input float[64] {n};" for n in names) + " qubit[1] q; "
    )
    source += " ".join(f"rz({n}) q[0];" for n in names)
    got = [p.name for p in qasm3.loads(source).parameters]
    assert got == sorted(names) == ["B", "_x", "a_1", "b", "th10", "th2"]


def test_docs_pages_load_their_assets_from_the_app(api: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        html = api.get(page).text
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        scripts = [a for a in assets if a.endswith(".js")]
        assert scripts, page
        for asset in assets:
            assert asset.startswith("/"), (page, asset)  # nothing from a CDN
            response = api.get(asset)
            assert response.status_code == 200 and len(response.content) > 1000, (page, asset)
        assert "cdn" not in html and "fonts.googleapis" not in html

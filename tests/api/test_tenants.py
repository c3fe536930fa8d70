"""Tenants: keys, roles, isolation on every endpoint, limits, rate limits and idempotent
submission. The app runs in-process against a real redis-server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from qfleet import Client, InvalidRequestError
from redis import Redis

from qfleet_server.app import create_app
from qfleet_server.settings import Settings
from qfleet_server.store import Store

USER, OTHER, ADMIN = "qf_test_user_key_aaaaaaaaaaaa", "qf_test_other_key_bbbbbbbbbbb", "qf_test_admin_key_ccccccccccc"
QASM = 'OPENQASM 3.0; include "stdgates.inc"; input float[64] a; qubit[2] q; ry(a) q[0]; cx q[0], q[1];'
JOB = {
    "backend": "aer",
    "pubs": [{"circuit": {"format": "qasm3", "data": QASM}, "observables": "ZZ", "parameter_values": [[0.1]]}],
}


@pytest.fixture
def api(clean_redis: str) -> Iterator[TestClient]:
    store = Store(Redis.from_url(clean_redis))
    store.add_api_key(USER, tenant="alpha", role="user")
    store.add_api_key(OTHER, tenant="beta", role="user")
    with TestClient(create_app(Settings(redis_url=clean_redis, admin_key=ADMIN))) as client:
        yield client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def routes(api: TestClient) -> list[tuple[str, str]]:
    spec = api.get("/openapi.json").json()
    return [(method.upper(), path) for path, ops in spec["paths"].items() for method in ops]


def fill(path: str, job_id: str) -> str:
    return (
        path.replace("{job_id}", job_id)
        .replace("{name}", "aer")
        .replace("{prefix}", "qf_nothing")
        .replace("{tenant}", "alpha")
    )


def test_every_endpoint_refuses_a_missing_or_wrong_key(api: TestClient) -> None:
    for method, path in routes(api):
        if path == "/healthz":
            continue
        for headers in ({}, auth("qf_wrong")):
            response = api.request(
                method, fill(path, "j-x"), headers=headers, json=JOB if method in ("POST", "PUT") else None
            )
            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["error"]["code"] in ("missing_api_key", "invalid_api_key")


def test_another_tenants_job_answers_exactly_as_an_unknown_one(api: TestClient) -> None:
    job_id = api.post("/v1/jobs", json=JOB, headers=auth(USER)).json()["id"]
    job_routes = [(m, p) for m, p in routes(api) if "{job_id}" in p]
    assert len(job_routes) >= 4
    for method, path in job_routes:
        theirs = api.request(method, fill(path, job_id), headers=auth(OTHER))
        unknown = api.request(method, fill(path, "j-00000000000000000000"), headers=auth(OTHER))
        assert theirs.status_code == unknown.status_code == 404, (method, path)
        assert theirs.json()["error"]["code"] == unknown.json()["error"]["code"]
        assert api.request(method, fill(path, job_id), headers=auth(USER)).status_code in (200, 202, 409)


def test_admin_endpoints_need_the_admin_role(api: TestClient) -> None:
    for method, path in routes(api):
        if path.startswith("/v1/admin"):
            body = {"tenant": "x"} if method == "POST" else ({} if method == "PUT" else None)
            response = api.request(method, fill(path, "j"), headers=auth(USER), json=body)
            assert response.status_code == 403, (method, path)
    created = api.post("/v1/admin/keys", json={"tenant": "gamma"}, headers=auth(ADMIN))
    assert created.status_code == 201
    key = created.json()["key"]
    assert api.get("/v1/backends", headers=auth(key)).status_code == 200
    listed = api.get("/v1/admin/keys", headers=auth(ADMIN)).json()
    assert {"tenant": "gamma", "prefix": created.json()["prefix"]}.items() <= next(
        k for k in listed if k["tenant"] == "gamma"
    ).items()
    assert all(key not in str(k) for k in listed)  # only prefixes
    assert api.delete(f"/v1/admin/keys/{created.json()['prefix']}", headers=auth(ADMIN)).status_code == 204
    assert api.get("/v1/backends", headers=auth(key)).status_code == 401


def set_limits(api: TestClient, **limits: Any) -> None:
    current = api.get("/v1/admin/tenants/alpha/limits", headers=auth(ADMIN)).json()
    assert api.put("/v1/admin/tenants/alpha/limits", json={**current, **limits}, headers=auth(ADMIN)).status_code == 200


def test_rate_limit_answers_429_with_retry_after_and_the_client_waits(api: TestClient) -> None:
    set_limits(api, jobs_per_second=1.0, burst=2)
    codes = [api.post("/v1/jobs", json=JOB, headers=auth(USER)).status_code for _ in range(3)]
    assert codes == [201, 201, 429]
    refused = api.post("/v1/jobs", json=JOB, headers=auth(USER))
    assert refused.json()["error"]["code"] == "rate_limited" and int(refused.headers["Retry-After"]) >= 1
    assert api.post("/v1/jobs", json=JOB, headers=auth(OTHER)).status_code == 201  # per tenant
    client = Client("http://testserver", api_key=USER, transport=api._transport)
    job = client.estimate([(QASM, "ZZ", [[0.2]])])  # waits out Retry-After, then goes through
    assert job.id.startswith("j-")


def test_in_flight_and_per_job_limits(api: TestClient) -> None:
    set_limits(api, max_jobs_in_flight=1, max_qubits=1)
    client = Client("http://testserver", api_key=USER, transport=api._transport)
    with pytest.raises(InvalidRequestError) as err:
        client.estimate([(QASM, "ZZ", [[0.1]])])
    assert err.value.code == "too_many_qubits"
    set_limits(api, max_qubits=28)
    assert api.post("/v1/jobs", json=JOB, headers=auth(USER)).status_code == 201
    second = api.post("/v1/jobs", json=JOB, headers=auth(USER))
    assert second.status_code == 429 and second.json()["error"]["code"] == "too_much_in_flight"
    set_limits(api, max_body_bytes=100)
    assert api.post("/v1/jobs", json=JOB, headers=auth(USER)).status_code == 413


def test_idempotency_key_returns_the_same_job(api: TestClient) -> None:
    first = api.post("/v1/jobs", json=JOB, headers={**auth(USER), "Idempotency-Key": "step-17"}).json()
    again = api.post("/v1/jobs", json=JOB, headers={**auth(USER), "Idempotency-Key": "step-17"}).json()
    other = api.post("/v1/jobs", json=JOB, headers={**auth(USER), "Idempotency-Key": "step-18"}).json()
    theirs = api.post("/v1/jobs", json=JOB, headers={**auth(OTHER), "Idempotency-Key": "step-17"}).json()
    assert first["id"] == again["id"] and len({first["id"], other["id"], theirs["id"]}) == 3


def test_default_secrets_are_refused_outside_dev_mode() -> None:
    for secret in ("admin", "changeme", "short"):
        with pytest.raises(ValueError, match="QFLEET_ADMIN_KEY"):
            Settings(admin_key=secret)
    assert Settings(admin_key="admin", dev_mode=True).admin_key == "admin"

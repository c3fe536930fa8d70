"""Listing and tagging jobs: ``GET /v1/jobs`` with filters and cursor pages, scoped to the
API key's tenant, and the bounds on tags. The app runs in-process against a real
redis-server; no worker is needed (jobs stay queued)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from qfleet import Client, InvalidRequestError, NotFoundError
from redis import Redis

from qfleet_server.app import create_app
from qfleet_server.settings import Settings
from qfleet_server.store import Store

USER, OTHER = "qf_test_user_key_aaaaaaaaaaaa", "qf_test_other_key_bbbbbbbbbbb"
ADMIN = "qf_test_admin_key_ccccccccccc"
QASM = 'OPENQASM 3.0; include "stdgates.inc"; input float[64] a; qubit[2] q; ry(a) q[0]; cx q[0], q[1];'


def job(**top: Any) -> dict[str, Any]:
    pub = {"circuit": {"format": "qasm3", "data": QASM}, "observables": "ZZ", "parameter_values": [[0.1]]}
    return {"backend": "aer", "pubs": [pub], **top}


@pytest.fixture
def api(clean_redis: str) -> Iterator[TestClient]:
    store = Store(Redis.from_url(clean_redis))
    store.add_api_key(USER, tenant="alpha", role="user")
    store.add_api_key(OTHER, tenant="beta", role="user")
    with TestClient(create_app(Settings(redis_url=clean_redis, admin_key=ADMIN))) as client:
        yield client


def sdk(api: TestClient, key: str) -> Client:
    return Client("http://testserver", api_key=key, transport=api._transport)


def test_pages_filters_and_tags(api: TestClient) -> None:
    alpha, beta = sdk(api, USER), sdk(api, OTHER)
    submitted = []
    for step in range(7):
        run = "exp7" if step % 2 == 0 else "exp8"
        submitted.append(alpha.estimate([(QASM, "ZZ", [[0.1 * step]])], tags={"run": run, "step": str(step)}).id)
    middle = time.time()
    submitted.append(alpha.estimate([(QASM, "ZZ", [[0.5]])], backend="lightning").id)
    theirs = beta.estimate([(QASM, "ZZ", [[0.1]])], tags={"run": "exp7"}).id

    listed = list(alpha.jobs(page_size=3))  # three pages
    assert [j.id for j in listed] == submitted[::-1]  # newest first, each once
    assert listed[-1].tags == {"run": "exp7", "step": "0"} and listed[0].tags == {}
    assert alpha.job(submitted[3]).status().tags == {"run": "exp8", "step": "3"}
    first = alpha.jobs_page(limit=3)
    second = alpha.jobs_page(limit=3, cursor=first.next_cursor)
    assert len(first.jobs) == len(second.jobs) == 3 and not {j.id for j in first.jobs} & {j.id for j in second.jobs}

    exp7 = [j.id for j in alpha.jobs(tag="run:exp7", page_size=2)]
    assert exp7 == submitted[0:7:2][::-1] and theirs not in exp7
    assert [j.id for j in alpha.jobs(tag={"run": "exp8", "step": "3"})] == [submitted[3]]
    assert [j.id for j in alpha.jobs(tag=["run:exp8", "step:4"])] == []
    assert [j.id for j in alpha.jobs(tag=["run:exp8", "run:exp7"])] == []  # every filter must match
    assert [j.id for j in alpha.jobs(backend="lightning")] == [submitted[-1]]
    assert [j.id for j in alpha.jobs(since=middle)] == [submitted[-1]]
    assert len(list(alpha.jobs(status="queued"))) == 8 and list(alpha.jobs(status="done")) == []

    # tenant isolation: beta sees only its own job and cannot reattach to alpha's
    assert [j.id for j in beta.jobs()] == [theirs]
    assert [j.id for j in beta.jobs(tag="run:exp7")] == [theirs]
    with pytest.raises(NotFoundError):
        beta.job(submitted[0]).status()
    with pytest.raises(NotFoundError):
        beta.job(submitted[0]).result(timeout=5, progress=False)
    with pytest.raises(NotFoundError):
        beta.job(submitted[0]).partial()
    alpha_cursor = alpha.jobs_page(limit=1).next_cursor
    assert beta.jobs_page(cursor=alpha_cursor).jobs == []  # a cursor is a position, not a key to others' jobs


@pytest.mark.parametrize(
    "params, code",
    [
        ({"cursor": "not-a-cursor"}, "invalid_cursor"),
        ({"cursor": "bmFufGotMQ"}, "invalid_cursor"),  # "nan|j-1"
        ({"status": "finished"}, "invalid_status"),
        ({"backend": "nope"}, "unknown_backend"),
        ({"tag": "run"}, "invalid_tag_filter"),
        ({"limit": 0}, "invalid_request"),
        ({"limit": 1000}, "invalid_request"),
        ({"since": "yesterday"}, "invalid_request"),
    ],
)
def test_bad_listing_parameters_are_4xx_with_a_code(api: TestClient, params: dict[str, Any], code: str) -> None:
    response = api.get("/v1/jobs", params=params, headers={"Authorization": f"Bearer {USER}"})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["code"] == code and response.json()["error"]["message"]


@pytest.mark.parametrize(
    "tags, code",
    [
        ({f"k{i}": "v" for i in range(17)}, "too_many_tags"),
        ({"run id": "x"}, "invalid_tag"),
        ({"run:x": "x"}, "invalid_tag"),
        ({"k" * 65: "x"}, "invalid_tag"),
        ({"run": "v" * 257}, "invalid_tag"),
        ({"run": 7}, "invalid_request"),
    ],
)
def test_tags_are_bounded_at_submission(api: TestClient, tags: dict[str, Any], code: str) -> None:
    response = api.post("/v1/jobs", json=job(tags=tags), headers={"Authorization": f"Bearer {USER}"})
    assert response.status_code == 400 if code != "invalid_request" else 422, response.text
    assert response.json()["error"]["code"] == code and response.json()["error"]["message"]
    if code != "invalid_request":
        with pytest.raises(InvalidRequestError) as err:
            sdk(api, USER).estimate([(QASM, "ZZ", [[0.1]])], tags=tags)
        assert err.value.code == code
    ok = api.post(
        "/v1/jobs", json=job(tags={f"k{i}": "v" * 256 for i in range(16)}), headers={"Authorization": f"Bearer {USER}"}
    )
    assert ok.status_code == 201 and len(ok.json()["tags"]) == 16


@pytest.mark.parametrize("layout", [[[1, None]], [[0, 1]], [[0, -1]], [[-1, None]]])
def test_a_layout_must_point_into_the_job(api: TestClient, layout: list[Any]) -> None:
    response = api.post("/v1/jobs", json=job(layout=layout), headers={"Authorization": f"Bearer {USER}"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_layout", response.text
    stacked = job(layout=[[0, 0], [0, 1]])
    stacked["pubs"][0]["parameter_values"] = [[[0.1]], [[0.2]]]
    assert api.post("/v1/jobs", json=stacked, headers={"Authorization": f"Bearer {USER}"}).status_code == 201


def test_the_dashboard_shows_and_filters_tags(api: TestClient) -> None:
    alpha = sdk(api, USER)
    tagged = alpha.estimate([(QASM, "ZZ", [[0.1]])], tags={"run": "exp7", "note": "<b>bold</b>"}).id
    plain = alpha.estimate([(QASM, "ZZ", [[0.2]])]).id
    admin = {"Authorization": f"Bearer {ADMIN}"}
    page = api.get(f"/admin/jobs/{tagged}", headers=admin).text
    assert 'id="tags"' in page and "run=exp7" in page and "note=&lt;b&gt;bold&lt;/b&gt;" in page
    assert 'id="tags"' not in api.get(f"/admin/jobs/{plain}", headers=admin).text
    listing = api.get("/admin/jobs", params={"tag": "run:exp7"}, headers=admin).text
    assert tagged in listing and plain not in listing


def test_the_async_client_lists_and_reads_partial_results(api: TestClient) -> None:
    import asyncio

    import httpx
    import numpy as np
    from qfleet import AsyncClient

    async def main() -> None:
        transport = httpx.ASGITransport(app=api.app)
        async with AsyncClient("http://testserver", api_key=USER, transport=transport) as client:
            jobs = [await client.estimate([(QASM, ["ZZ", "XI"], [[[0.1]]] * 3)], tags={"i": str(i)}) for i in range(3)]
            listed = [info async for info in client.jobs(page_size=2)]
            assert [j.id for j in listed] == [j.id for j in jobs[::-1]]
            assert [j.id async for j in client.jobs(tag={"i": "1"})] == [jobs[1].id]
            part = await client.job(jobs[0].id).partial()  # no worker runs here: nothing is ready
            assert part.status == "queued" and part.progress is not None and part.progress.tasks_done == 0
            assert part[0].mask is not None and part[0].mask.shape == (3, 2) and not part[0].mask.any()
            assert np.isnan(part[0].evs).all() and part[0].evs.shape == (3, 2)
        async with AsyncClient("http://testserver", api_key=OTHER, transport=transport) as theirs:
            assert [j async for j in theirs.jobs()] == []
            with pytest.raises(NotFoundError):
                await theirs.job(jobs[0].id).partial()

    asyncio.run(main())

"""Connection guards against a real API (uvicorn as `qfleet up` starts it), with real sockets on
loopback: one address holds a bounded number of connections, a request head that trickles in
(slowloris) or never comes is cut off at its deadline, and meanwhile another client's /healthz
answers at once. Every loop here is bounded."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from qfleet_server.stack import Stack, free_port

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT_S = 1.0
MAX_CONNECTIONS = 20
ATTACKER = "127.0.0.4"  # another loopback address; the victim connects from 127.0.0.1


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        "QFLEET_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "QFLEET_MAX_CONNECTIONS_PER_CLIENT": str(MAX_CONNECTIONS),
    }
    log_dir = tmp_path_factory.mktemp("connections")
    with Stack(port=free_port(), workers=1, device_worker=False, env=env, log_dir=log_dir) as running:
        yield running


def connect(stack: Stack) -> socket.socket:
    return socket.create_connection((stack.host, stack.port), timeout=10, source_address=(ATTACKER, 0))


def answer(sock: socket.socket) -> tuple[int, dict[str, object], bool]:
    """(status, JSON error body, whether the server then closed) of a reply read to its end."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body or b"{}"), True


def reply(sock: socket.socket) -> tuple[int, bytes]:
    """(status, body) of one reply on a kept-alive connection: the head, then Content-Length bytes."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a full head: {data[:200]!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(v)
        for k, _, v in (h.partition(b":") for h in head.split(b"\r\n")[1:])
        if k.strip().lower() == b"content-length"
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed before the full body"
        body += chunk
    return int(head.split(b" ", 2)[1]), body


def healthz_seconds(stack: Stack) -> float:
    t0 = time.monotonic()
    assert httpx.get(f"{stack.url}/healthz", timeout=5).status_code == 200
    return time.monotonic() - t0


def test_trickled_headers_are_cut_off_and_others_are_served(stack: Stack) -> None:
    baseline = min(healthz_seconds(stack) for _ in range(3))
    socks = [connect(stack) for _ in range(MAX_CONNECTIONS)]
    opened = time.monotonic()
    try:
        for s in socks:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        slowest = 0.0
        for _ in range(int(HEADER_TIMEOUT_S / 0.1) + 5):  # a header line every 0.1 s, past the deadline
            for s in socks:
                try:
                    s.sendall(b"X-a: b\r\n")
                except OSError:
                    pass  # cut off already
            slowest = max(slowest, healthz_seconds(stack))
            time.sleep(0.1)
        assert slowest < max(1.0, 10 * baseline), f"/healthz took {slowest:.2f} s ({baseline:.3f} s before)"
        for s in socks:
            s.settimeout(HEADER_TIMEOUT_S + 5)
            status, body, _ = answer(s)
            assert status == 408 and body["error"]["code"] == "header_timeout"  # type: ignore[index]
        assert time.monotonic() - opened < HEADER_TIMEOUT_S + 3.0
    finally:
        for s in socks:
            s.close()


def test_one_address_holds_a_bounded_number_of_connections(stack: Stack) -> None:
    socks = [connect(stack) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)
        extra = connect(stack)
        socks.append(extra)
        extra.settimeout(5)
        status, body, _ = answer(extra)  # refused at once, before any request
        assert status == 429 and body["error"]["code"] == "too_many_connections"  # type: ignore[index]
        assert healthz_seconds(stack) < 1.0  # another address is served
    finally:
        for s in socks:
            s.close()
    time.sleep(0.3)
    # closed connections are counted out: the address may connect again
    with httpx.Client(transport=httpx.HTTPTransport(local_address=ATTACKER)) as client:
        assert client.get(f"{stack.url}/healthz", timeout=5).status_code == 200


def test_a_slow_body_within_its_own_deadline_and_a_kept_alive_connection_work(stack: Stack) -> None:
    """The head deadline covers the head only: a body may take longer (it has body_timeout_s),
    and a kept-alive connection gets a fresh deadline for its next request."""
    s = connect(stack)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b" 200 " in s.recv(65536).split(b"\r\n", 1)[0]
        time.sleep(HEADER_TIMEOUT_S / 2)
        body = b'{"backend": "nope", "pubs": [{"circuit": {"format": "qasm3", "data": ""}, "observables": "Z"}]}'
        s.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + stack.api_key.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        for i in range(len(body)):  # the body over about twice the head deadline
            s.sendall(body[i : i + 1])
            time.sleep(2 * HEADER_TIMEOUT_S / len(body))
        s.settimeout(5)
        status, body = reply(s)
        assert status == 400 and b"unknown_backend" in body, body[:300]
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the next head, never finished
        t0 = time.monotonic()
        status, error, _ = answer(s)
        assert status == 408 and error["error"]["code"] == "header_timeout"  # type: ignore[index]
        assert HEADER_TIMEOUT_S - 0.2 < time.monotonic() - t0 < HEADER_TIMEOUT_S + 2.0
    finally:
        s.close()


def test_an_oversized_head_is_refused(stack: Stack) -> None:
    s = connect(stack)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-pad: " + b"a" * 70_000 + b"\r\n")
        s.settimeout(5)
        status, body, _ = answer(s)
        assert status == 431 and body["error"]["code"] == "headers_too_large"  # type: ignore[index]
    finally:
        s.close()

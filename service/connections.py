"""Connection guards for the API's HTTP server (uvicorn), below the ASGI app: one client address
holds at most ``max_connections_per_client`` connections (more are answered 429 and closed), and
a request's line and headers must arrive within ``header_timeout_s`` and ``max_header_bytes``
(else 408 or 431, and the connection is closed). uvicorn alone has neither: a connection that
trickles its headers (slowloris) or never sends any stays open for ever, and enough of them
exhaust the server's sockets. The body's own deadline is the ASGI guard's (service/guards.py).

uvicorn loads the protocol by import path: ``uvicorn ... --http qfleet_server.connections:Protocol``
(:data:`UVICORN_OPTIONS` has every option the API is started with).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from functools import lru_cache
from typing import Any

from .errors import RateLimited, ServiceError
from .settings import Settings

try:  # uvicorn's fast parser when installed (uvicorn[standard]), else its pure-Python one
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover - depends on the install
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base  # type: ignore[assignment]

# Open connections per client address, in this server process (one event loop).
OPEN: Counter[str] = Counter()


@lru_cache(maxsize=1)
def _limits() -> tuple[int, float, int]:
    settings = Settings()
    return settings.max_connections_per_client, settings.header_timeout_s, settings.max_header_bytes


def _reply(status: int, reason: str, error: ServiceError, retry_after: int | None = None) -> bytes:
    body = json.dumps(error.body()).encode()
    extra = f"retry-after: {retry_after}\r\n" if retry_after is not None else ""
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        f"connection: close\r\n{extra}\r\n"
    )
    return head.encode() + body


class Protocol(_Base):
    """uvicorn's HTTP protocol with a per-address connection cap and a deadline and size cap on
    each request head (armed when the connection opens and after each response)."""

    _peer: str | None = None
    _timer: asyncio.TimerHandle | None = None
    _waiting_for: Any = None  # the request cycle current when the timer was armed
    _head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._peer = self.client[0] if self.client else "?"
        OPEN[self._peer] += 1
        most = _limits()[0]
        if OPEN[self._peer] > most:
            error = RateLimited(
                f"{most} connections already open from {self._peer}; close idle ones or reuse them",
                code="too_many_connections",
                retry_after=1.0,
            )
            self._close_with(_reply(429, "Too Many Requests", error, retry_after=1))
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._peer is not None:
            OPEN[self._peer] -= 1
            if OPEN[self._peer] <= 0:
                del OPEN[self._peer]
            self._peer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._timer is None:
            super().data_received(data)
            return
        self._head_bytes += len(data)
        super().data_received(data)
        if self.cycle is not self._waiting_for:  # the head is in: the body has its own deadline
            self._disarm()
        elif self._head_bytes > _limits()[2] and not self.transport.is_closing():
            error = ServiceError(
                f"the request line and headers are over {_limits()[2]} bytes", code="headers_too_large"
            )
            self._close_with(_reply(431, "Request Header Fields Too Large", error))

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # idle again (no pipelined request started): the next head has a deadline of its own
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._waiting_for = self.cycle
        self._head_bytes = 0
        self._timer = self.loop.call_later(_limits()[1], self._head_late)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_late(self) -> None:
        self._timer = None
        if self.transport.is_closing() or self.cycle is not self._waiting_for:
            return
        error = ServiceError(
            f"the request line and headers did not arrive within {_limits()[1]:g} s", code="header_timeout"
        )
        self._close_with(_reply(408, "Request Timeout", error))

    def _close_with(self, reply: bytes) -> None:
        self._disarm()
        self.transport.write(reply)
        self.transport.close()


# How the API is started (service/stack.py, `qfleet api`, docker compose through `qfleet api`).
# No websockets: the API has none, and an upgraded connection would leave this protocol uncounted.
UVICORN_OPTIONS: dict[str, Any] = {"http": "qfleet_server.connections:Protocol", "ws": "none"}
UVICORN_ARGS: list[str] = ["--http", "qfleet_server.connections:Protocol", "--ws", "none"]

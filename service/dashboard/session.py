"""Who is at the dashboard, and whether a request that changes something really comes from it.

- **Sessions**: logging in with an admin key makes a random session id; the browser holds the
  id (cookie ``HttpOnly``, ``SameSite=Strict``, ``Secure`` over https), Redis holds the session
  under the id's SHA-256 with a TTL. The key itself never returns to the browser, and revoking
  it ends its sessions.
- **CSRF**: every state-changing request with the cookie must carry the session's synchronizer
  token (``X-CSRF-Token`` header from htmx, or a ``csrf_token`` form field) *and* an ``Origin``
  (or ``Referer``) of this very site. SameSite alone does not do: another port of the same host
  is the same site.
- A request with ``Authorization: Bearer <admin key>`` (curl, scripts) carries no ambient
  credential, so it needs neither.
- **Headers** on every dashboard answer: a CSP without inline script or style, no framing.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..jobs import JobService
from ..store import hash_api_key

COOKIE = "qfleet_session"
SESSION_TTL_S = 12 * 3600
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
PREFIX = "/admin"

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",  # htmx is vendored; no inline script, no eval
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}


class NotAdmin(Exception):
    def __init__(self, logged_in: bool) -> None:
        self.logged_in = logged_in


class CsrfRefused(Exception):
    """A state-changing request without this session's token, or from another origin."""


@dataclass(frozen=True)
class Admin:
    prefix: str  # of the admin's API key: the audit log's "who"
    csrf: str  # the session's token ("" for a Bearer request)
    bearer: bool = False


def jobs_of(request: Request) -> JobService:
    return request.app.state.jobs  # type: ignore[no-any-return]


def admin_of(request: Request) -> Admin:
    """The admin behind a request: a Bearer admin key, or a live dashboard session."""
    store = jobs_of(request).store
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() == "bearer" and key.strip():
        record = store.api_key(key.strip())
        if record is None or record.role != "admin":
            raise NotAdmin(logged_in=record is not None)
        return Admin(prefix=record.prefix, csrf="", bearer=True)
    session_id = request.cookies.get(COOKIE, "")
    session = store.session(session_id) if session_id else None
    if session is None:
        raise NotAdmin(logged_in=False)
    record = store.api_key_by_hash(session["key"])
    if record is None or record.role != "admin":  # the key was revoked: so is its session
        store.drop_session(session_id)
        raise NotAdmin(logged_in=False)
    return Admin(prefix=record.prefix, csrf=str(session["csrf"]))


def start_session(request: Request, key: str) -> tuple[str, str] | None:
    """(session id, prefix) for an admin key, or None for any other key."""
    store = jobs_of(request).store
    record = store.api_key(key)
    if record is None or record.role != "admin":
        return None
    session_id = secrets.token_urlsafe(32)
    session = {"key": hash_api_key(key), "csrf": secrets.token_urlsafe(32), "created_at": time.time()}
    store.create_session(session_id, session, SESSION_TTL_S)
    return session_id, record.prefix


def end_session(request: Request) -> None:
    session_id = request.cookies.get(COOKIE, "")
    if session_id:
        jobs_of(request).store.drop_session(session_id)


def own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', '')}"


def check_origin(request: Request) -> None:
    """The request must say it comes from a page of this site (browsers send Origin on POST)."""
    origin = request.headers.get("origin")
    if origin is None:
        referer = urlsplit(request.headers.get("referer", ""))
        origin = f"{referer.scheme}://{referer.netloc}" if referer.netloc else None
    if origin != own_origin(request):
        raise CsrfRefused(f"origin {origin or '(none)'} is not {own_origin(request)}")


async def acting_admin(request: Request) -> Admin:
    """The admin behind a state-changing request, after the CSRF checks (a FastAPI dependency)."""
    admin = await run_in_threadpool(admin_of, request)
    if admin.bearer:
        return admin
    check_origin(request)
    token = request.headers.get(CSRF_HEADER)
    if token is None and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        token = str((await request.form()).get(CSRF_FIELD) or "")
    if not token or not secrets.compare_digest(token, admin.csrf):
        raise CsrfRefused("missing or wrong CSRF token; reload the page")
    return admin


def set_cookie(request: Request, response: Response, session_id: str) -> None:
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=SESSION_TTL_S,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


class SecurityHeaders:
    """ASGI middleware: the dashboard's security headers on every answer under /admin."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
                if not path.startswith(PREFIX + "/static/"):
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)

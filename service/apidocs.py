"""The API's documentation pages (/docs, /redoc): their assets come from this app (fastapi-offline),
and a content security policy keeps the browser on it, so the pages work offline and ask nothing
of a CDN (ReDoc's sidebar would otherwise fetch its logo from one)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DOC_PATHS = frozenset({"/docs", "/redoc"})
POLICY = (
    "default-src 'self'; img-src 'self' data:; font-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; "
    "connect-src 'self'; frame-ancestors 'none'"
)


class DocsPolicy:
    """Adds the policy to the documentation pages' responses; every other request passes untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in DOC_PATHS:
            await self.app(scope, receive, send)
            return

        async def with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"content-security-policy", POLICY.encode())]
            await send(message)

        await self.app(scope, receive, with_policy)

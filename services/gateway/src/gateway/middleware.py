"""HTTP hardening: request size limit and browser security headers."""

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def content_security_policy(connect_to: tuple[str, ...] = ()) -> str:
    """The page's CSP. No inline script or style: model output can never run as code
    (OWASP LLM05). ``connect_to``: extra origins ``fetch`` may reach (the traces collector)."""
    connect = " ".join(("'self'", "ws:", "wss:", *connect_to))
    return (
        f"default-src 'self'; script-src 'self'; style-src 'self'; connect-src {connect}; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )


class _TooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    """Answer 413 for request bodies over ``max_body_bytes``, declared or streamed."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._reject(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {"detail": f"request body larger than {self.max_body_bytes} bytes"}, status_code=413
        )
        await response(scope, receive, send)


class SecurityHeadersMiddleware:
    """Add CSP and related headers to every HTTP response."""

    DOCS_PATHS = ("/docs", "/redoc")
    """Swagger UI and ReDoc load their scripts from a CDN, so they skip the CSP."""

    def __init__(self, app: ASGIApp, connect_to: tuple[str, ...] = ()) -> None:
        self.app = app
        self.HEADERS = [
            (b"content-security-policy", content_security_policy(connect_to).encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = self.HEADERS[1:] if scope["path"].startswith(self.DOCS_PATHS) else self.HEADERS

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + headers
            await send(message)

        await self.app(scope, receive, with_headers)

"""HTTP hardening: request size limit and browser security headers."""

from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def content_security_policy(
    connect_to: tuple[str, ...] = (),
    frame_ancestors: tuple[str, ...] = ("'none'",),
    form_action: str = "'self'",
) -> str:
    """A page's CSP. No inline script or style: model output can never run as code
    (OWASP LLM05). ``connect_to``: extra origins ``fetch`` may reach (the traces collector);
    ``frame_ancestors``: who may frame the page (the chat widget's sites; nobody by default).
    ``connect-src 'self'`` covers the gateway's own sockets too: in CSP Level 3 'self' matches
    ``ws:`` and ``wss:`` on the page's own host
    (https://www.w3.org/TR/CSP3/#match-url-to-source-expression)."""
    connect = " ".join(("'self'", *connect_to))
    return (
        f"default-src 'self'; script-src 'self'; style-src 'self'; connect-src {connect}; "
        f"img-src 'self' data:; frame-ancestors {' '.join(frame_ancestors)}; base-uri 'none'; "
        f"form-action {form_action}"
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
    """Add CSP and related headers to every HTTP response. A response that sets its own CSP
    (the chat widget's frame, framed by the channel's sites) keeps it, without
    ``X-Frame-Options: DENY``."""

    DOCS_PATHS = ("/docs", "/redoc")
    FRAMING = (b"content-security-policy", b"x-frame-options")
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
                own = list(message.get("headers", []))
                added = headers
                if any(name.lower() == b"content-security-policy" for name, _ in own):
                    added = [h for h in headers if h[0] not in self.FRAMING]
                message["headers"] = own + added
            await send(message)

        await self.app(scope, receive, with_headers)


class WidgetCORSMiddleware:
    """Starlette's ``CORSMiddleware`` on the chat widget's API (``/api/v1/widget``) only, for
    the origins of every widget channel: the operator API answers no cross-origin request.
    Which origin may use which channel is checked per request by the routes."""

    PREFIX = "/api/v1/widget/"

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.PREFIX):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)

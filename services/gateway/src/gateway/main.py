"""Gateway service: the edge of Support Inbox.

Served by ``uvicorn --factory gateway.main:create_app``. OpenAPI docs at ``/docs``. Prometheus
metrics are on ``METRICS_PORT``, never on this public port.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from inbox_common import knowledge as knowledge_base
from inbox_common import metrics
from inbox_common.errors import TransientError
from inbox_common.sidecar import Sidecar
from inbox_common.subscriptions import AppTokenMiddleware, sidecar_app
from inbox_common.telemetry import instrument_app, setup_telemetry

from gateway import subscriptions
from gateway.api.routes import (
    auth,
    client,
    conversations,
    inbound,
    intents,
    knowledge,
    widget,
    ws,
)
from gateway.core.config import Settings, get_settings
from gateway.core.ratelimit import RateLimited, RateLimits
from gateway.core.security import PasswordChecker
from gateway.core.seen import SeenStore
from gateway.edge import WebSocketRequestLines
from gateway.live import CustomerHub, Hub
from gateway.middleware import (
    BodySizeLimitMiddleware,
    SecurityHeadersMiddleware,
    WidgetCORSMiddleware,
)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the gateway; the sidecar client starts in its lifespan."""
    settings = settings or get_settings()
    knowledge_base.use_directory(settings.knowledge_dir)
    setup_telemetry("gateway", settings.log_level)
    handshakes = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, WebSocketRequestLines) for f in handshakes.filters):
        handshakes.addFilter(WebSocketRequestLines())
    sidecar = Sidecar()
    hub = Hub(settings.ws_send_queue)
    passwords = PasswordChecker(settings, settings.login_hash_workers, settings.login_hash_queue)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        with metrics.serve(settings.metrics_port, settings.metrics_host):
            async with sidecar:
                try:
                    yield
                finally:
                    passwords.close()

    app = FastAPI(
        title="Support Inbox",
        summary="AI-assisted customer support inbox: operator API, customer channel, live updates",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.sidecar = sidecar
    app.state.hub = hub
    customer_hub = CustomerHub()
    app.state.customer_hub = customer_hub
    app.state.seen = SeenStore(sidecar, settings.seen_max_entries)
    app.state.rate_limits = RateLimits.build(
        sidecar,
        {
            "operator": settings.operator_rate_limit,
            "channel": settings.channel_rate_limit,
            "login": settings.login_rate_limit,
            "login_address": settings.login_address_rate_limit,
            "login_global": settings.login_global_rate_limit,
            "customer": settings.customer_rate_limit,
            "customer_read": settings.customer_read_rate_limit,
            "widget_channel": settings.widget_channel_rate_limit,
            "widget_session": settings.widget_session_rate_limit,
            "widget_channel_session": settings.widget_channel_session_rate_limit,
        },
        fail_closed=frozenset({"login", "login_address", "login_global"}),
    )
    app.state.passwords = passwords
    app.add_middleware(AppTokenMiddleware, token=settings.app_api_token)
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(
        WidgetCORSMiddleware,
        origins=sorted({o for c in settings.widget_channels.values() for o in c.allowed_origins}),
    )
    traces = settings.browser_traces_url
    app.add_middleware(
        SecurityHeadersMiddleware,
        connect_to=(f"{traces.scheme}://{traces.host}:{traces.port}",) if traces else (),
    )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(problems), "errors": problems}, 422)

    @app.exception_handler(RateLimited)
    async def rate_limited(_: Request, exc: RateLimited) -> JSONResponse:
        metrics.RATE_LIMIT_REJECTIONS.labels(exc.scope).inc()
        return JSONResponse(
            {"detail": str(exc)}, 429, headers={"Retry-After": str(exc.retry_after_s)}
        )

    @app.exception_handler(TransientError)
    async def sidecar_unavailable(_: Request, exc: TransientError) -> JSONResponse:
        return JSONResponse(
            {"detail": f"state store unavailable, retry shortly: {exc}"},
            503,
            headers={"Retry-After": "2"},
        )

    for module in (auth, client, conversations, inbound, intents, knowledge, widget, ws):
        app.include_router(module.router)
    app.include_router(widget.frame_router)
    subscriptions.register(
        sidecar_app(app),
        sidecar,
        hub,
        customer_hub,
        (settings.bulk_max_messages, settings.bulk_max_await_ms),
    )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, object]:
        return {"status": "ok", "websockets": len(hub)}

    app.mount("/", StaticFiles(directory=settings.frontend_dir, html=True), name="frontend")
    metrics.instrument_http(app)
    instrument_app(app)
    return app

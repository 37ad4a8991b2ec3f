"""``WS /ws``: live conversation updates for a signed-in operator.

The browser cannot set ``Authorization`` on a WebSocket, and a URL lands in access logs and
traces, so the token travels in ``Sec-WebSocket-Protocol``: the client offers ``inbox.v1`` and
``inbox.bearer.<JWT>``, the server selects ``inbox.v1`` (see
:func:`~gateway.core.security.token_from_subprotocols`). A missing or invalid token is refused
during the handshake with HTTP 401 and a JSON reason; a ``token`` in the query string with 400,
whatever else is offered. This needs no state shared between replicas, unlike a single-use
ticket would. Once open, the server sends ``{"type": "hello"}`` and then
``{"type": "conversation.updated", ...}`` events; the client may send ``{"type": "ping"}`` and
gets ``{"type": "pong"}``. A client that also offers ``inbox.v2`` gets it selected: the same
events, each frame a JSON array of those that queued (see :mod:`gateway.live`). The socket
closes with 4401 when the token expires and 1013 when the client falls too far behind.

A client that sends faster than ``WS_MESSAGE_RATE_LIMIT`` is throttled: its extra messages are
dropped, each answered with ``{"type": "error", "detail": ...}``; at twice the limit the
socket closes with 1008 (policy violation, RFC 6455).
"""

import asyncio
import json
import logging
import time

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from inbox_common import metrics
from inbox_common.keys import conversation_key
from inbox_common.read_models import Conversation
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from gateway.core import customers
from gateway.core.ratelimit import RateLimited
from gateway.core.security import (
    WS_PROTOCOL,
    WS_PROTOCOL_BATCHED,
    InvalidToken,
    chosen_protocol,
    decode_access_token,
    token_from_subprotocols,
)
from gateway.live import CLOSE_SLOW_CONSUMER, Connection, CustomerConnection, batch, frame

router = APIRouter()
log = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4401
"""Application close code (RFC 6455 4000-4999): the token expired or was invalid."""
CLOSE_POLICY_VIOLATION = 1008
"""RFC 6455 "Policy Violation": the client kept sending past twice its message rate limit."""


@router.websocket("/ws")
async def live_updates(websocket: WebSocket) -> None:
    settings = websocket.app.state.settings
    hub = websocket.app.state.hub
    if "token" in websocket.query_params:
        await _deny(
            websocket,
            "a token in the URL is refused (URLs are logged and traced); "
            f"offer it in Sec-WebSocket-Protocol as {WS_PROTOCOL!r}, 'inbox.bearer.<token>'",
            400,
        )
        return
    try:
        token = token_from_subprotocols(websocket.scope.get("subprotocols", []))
        operator, expires_at = decode_access_token(settings, token)
    except InvalidToken as exc:
        await _deny(websocket, f"invalid token: {exc}")
        return
    protocol = chosen_protocol(websocket.scope.get("subprotocols", []))
    await websocket.accept(subprotocol=protocol)
    connection = hub.add(websocket, operator, batched=protocol == WS_PROTOCOL_BATCHED)
    try:
        await _send_now(
            connection,
            {
                "type": "hello",
                "operator": {"username": operator.username, "display_name": operator.display_name},
            },
        )
        await _serve(connection, settings, expires_at)
    except WebSocketDisconnect:
        pass
    finally:
        hub.remove(connection)


@router.websocket("/api/v1/widget/ws")
async def widget_updates(websocket: WebSocket) -> None:
    """The chat widget's socket: what the customer sees of its own conversation, at once and
    after each change (``{"type": "conversation", ...}``, the body of ``GET
    /api/v1/widget/conversation``). Authenticated like ``/ws``, with the widget session's
    access token; refused with 403 from an origin the channel does not allow (cross-site
    WebSocket hijacking), and with 429 past the customer's ``CUSTOMER_READ_RATE_LIMIT``.
    Closes with 4401 when the token expires: renew, then reconnect."""
    settings = websocket.app.state.settings
    if "token" in websocket.query_params:
        await _deny(
            websocket, "a token in the URL is refused; offer it in Sec-WebSocket-Protocol", 400
        )
        return
    try:
        token = token_from_subprotocols(websocket.scope.get("subprotocols", []))
        session, expires_at = customers.decode(settings, token)
    except InvalidToken as exc:
        await _deny(websocket, f"invalid token: {exc}")
        return
    if not customers.origin_allowed(websocket.headers, settings.widget_channels[session.channel]):
        await _deny(websocket, f"origin {websocket.headers.get('origin')!r} not allowed", 403)
        return
    try:
        await websocket.app.state.rate_limits.hit("customer_read", session.customer_id)
    except RateLimited as exc:
        metrics.RATE_LIMIT_REJECTIONS.labels(exc.scope).inc()
        await _deny(websocket, str(exc), 429)
        return
    protocol = chosen_protocol(websocket.scope.get("subprotocols", []))
    await websocket.accept(subprotocol=protocol)
    hub = websocket.app.state.customer_hub
    connection = hub.add(
        websocket, session.conversation_id, batched=protocol == WS_PROTOCOL_BATCHED
    )
    try:
        raw = await websocket.app.state.sidecar.get_state(conversation_key(session.conversation_id))
        conversation = Conversation.model_validate_json(raw) if raw else None
        await _send_now(connection, {"type": "hello"})
        view = customers.customer_view(session.conversation_id, conversation)
        await _send_now(connection, {"type": "conversation", **view})
        await _serve(connection, settings, expires_at)
    except WebSocketDisconnect:
        pass
    finally:
        hub.remove(connection)


async def _serve(connection, settings, expires_at: int) -> None:  # noqa: ANN001
    """Run a socket's writer, reader and expiry until the first of them ends."""
    tasks = [
        asyncio.create_task(_write(connection)),
        asyncio.create_task(_read(connection, parse(settings.ws_message_rate_limit))),
        asyncio.create_task(_expire(connection, expires_at)),
    ]
    _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


REFUSALS_LOG_INTERVAL_S = 60.0
"""Refused handshakes are logged as one warning at most this often (s), with their count."""
_refusals = {"count": 0, "logged_at": float("-inf")}


def refused(path: str, reason: str) -> None:
    """Count a refused handshake; log a warning with the count at most every
    :data:`REFUSALS_LOG_INTERVAL_S`, so that refused clients cannot fill the log."""
    _refusals["count"] += 1
    now = time.monotonic()
    if now - _refusals["logged_at"] >= REFUSALS_LOG_INTERVAL_S:
        log.warning(
            "WebSocket handshakes refused",
            extra={"count": _refusals["count"], "last_path": path, "last_reason": reason[:120]},
        )
        _refusals.update(count=0, logged_at=now)


async def _deny(websocket: WebSocket, reason: str, status_code: int = 401) -> None:
    refused(websocket.url.path, reason)
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(
            JSONResponse({"detail": reason}, status_code=status_code)
        )
    else:
        await websocket.close(CLOSE_UNAUTHORIZED, reason[:120])


def _framed(connection: Connection | CustomerConnection, payload: dict) -> str:
    """``payload`` as one frame for this socket: an array of one on the batched subprotocol."""
    text = frame(payload)
    return batch([text]) if connection.batched else text


async def _send_now(connection: Connection | CustomerConnection, payload: dict) -> None:
    """Send ``payload`` at once, ahead of the queue (the greeting, before the writer runs)."""
    await connection.socket.send_text(_framed(connection, payload))


async def _write(connection: Connection | CustomerConnection) -> None:
    """Send the socket's queued frames in order; ``None`` closes it with 1013."""
    while True:
        text = await connection.queue.get()
        if text is None:
            await connection.socket.close(CLOSE_SLOW_CONSUMER, "too far behind; reconnect")
            return
        await connection.socket.send_text(text)


async def _read(connection: Connection, limit: RateLimitItem) -> None:
    # A socket lives on one replica, so its limit is kept here, in memory.
    limiter = MovingWindowRateLimiter(MemoryStorage())
    hard = parse(f"{limit.amount * 2}/{limit.multiples} {limit.GRANULARITY.name}")
    try:
        while True:
            text = await connection.socket.receive_text()
            if not await limiter.hit(hard, "hard"):
                metrics.RATE_LIMIT_REJECTIONS.labels("websocket").inc()
                await connection.socket.close(CLOSE_POLICY_VIOLATION, "message rate limit exceeded")
                return
            if not await limiter.hit(limit, "soft"):
                metrics.RATE_LIMIT_REJECTIONS.labels("websocket").inc()
                _reply(connection, {"type": "error", "detail": f"too many messages ({limit})"})
                continue
            try:
                message = json.loads(text)
            except ValueError:
                continue
            if isinstance(message, dict) and message.get("type") == "ping":
                _reply(connection, {"type": "pong"})
    except WebSocketDisconnect:
        return


def _reply(connection: Connection, payload: dict) -> None:
    """Queue an answer to the client; none when its queue is full (it is being closed)."""
    try:
        connection.queue.put_nowait(_framed(connection, payload))
    except asyncio.QueueFull:
        pass


async def _expire(connection: Connection, expires_at: int) -> None:
    await asyncio.sleep(max(0.0, expires_at - time.time()))
    await connection.socket.close(CLOSE_UNAUTHORIZED, "token expired; sign in again")

"""The gateway's HTTP and WebSocket server protocols for uvicorn (``--http`` and ``--ws``).

uvicorn bounds neither the size of a request's line and headers (httptools takes any) nor the
time a client may take to send them, so one machine could hold thousands of connections open
for free by sending a header a byte at a time (slowloris), and a WebSocket upgrade with a header
line over the ``websockets`` parser's 8,192 bytes was left unanswered. The gateway is the one
public server, so it runs on :class:`BoundedHttpToolsProtocol`:

- a request whose line and headers pass ``MAX_HEADER_BYTES`` gets ``431 Request Header Fields
  Too Large`` (RFC 6585 section 5) and the connection is closed;
- a request whose line and headers are not complete within ``HEADER_TIMEOUT_S`` of the
  connection opening (or of the first byte of a later request on it) gets ``408 Request
  Timeout`` (RFC 9110 section 15.5.9) and the connection is closed.

An idle keep-alive connection is closed by uvicorn's own ``--timeout-keep-alive`` (5 s).

:class:`DenyingWebSocketProtocol` is uvicorn's sans-I/O WebSocket protocol with one fix: a
handshake the app refuses with a denial response (the ASGI ``websocket.http.response``
extension) counts as complete, instead of being logged as an ERROR ("ASGI callable returned
without completing handshake") that any client could repeat to fill the log.
"""

import asyncio
import logging
from functools import lru_cache

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

log = logging.getLogger(__name__)

HTTP_PROTOCOL = "gateway.edge:BoundedHttpToolsProtocol"
"""uvicorn ``--http`` value of the gateway."""
WS_PROTOCOL = "gateway.edge:DenyingWebSocketProtocol"
"""uvicorn ``--ws`` value of the gateway."""


@lru_cache
def _limits() -> tuple[int, float]:
    """``MAX_HEADER_BYTES`` and ``HEADER_TIMEOUT_S`` from the gateway's settings."""
    from gateway.core.config import get_settings

    settings = get_settings()
    return settings.max_header_bytes, settings.header_timeout_s


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a size and a time bound on each request's head."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - uvicorn's signature
        super().__init__(*args, **kwargs)
        self.max_header_bytes, self.header_timeout_s = _limits()
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._tail = b""  # the head's last 3 bytes: its end may straddle two reads
        self._between_requests = False

    def _start_head(self) -> None:
        self._between_requests = False
        self._head_bytes, self._tail = 0, b""
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _end_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_head()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        if self._between_requests:  # the first bytes of the next request on this connection
            self._start_head()
        if self._head_timer is not None:
            # measured before the parser sees the bytes: it takes a head of any size, and hands
            # a WebSocket upgrade on to a parser that leaves an over-long line unanswered
            seen = self._tail + data
            end = seen.find(b"\r\n\r\n")
            size = self._head_bytes + (end + 4 - len(self._tail) if end >= 0 else len(data))
            if size > self.max_header_bytes:
                self._refuse(431, f"request line and headers over {self.max_header_bytes} bytes")
                return
            self._head_bytes, self._tail = size, seen[-3:]
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._end_head()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._between_requests = True
        super().on_message_complete()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self._refuse(408, f"request headers not received within {self.header_timeout_s:g} s")

    def _refuse(self, status_code: int, reason: str) -> None:
        self._end_head()
        if self.transport.is_closing():
            return
        body = reason.encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (
                status_code,
                b"Request Timeout" if status_code == 408 else b"Request Header Fields Too Large",
                len(body),
                body,
            )
        )
        self.transport.close()


class DenyingWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, where a denial response ends the handshake."""

    async def send(self, message) -> None:  # noqa: ANN001 - uvicorn's ASGI send event
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            self.handshake_complete = True


class WebSocketRequestLines(logging.Filter):
    """Drops uvicorn's line per WebSocket handshake (``"WebSocket /ws" 401``,
    ``[accepted]``): the gateway runs without an access log, and anyone may open sockets.
    Refused handshakes are summed up by :func:`gateway.api.routes.ws.refused` instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith('%s - "WebSocket %s"')

"""Spans and log lines keep no query string (a URL's query can hold a token or customer text)."""

import logging

from inbox_common.telemetry import QueryStrippingSpanProcessor, StripQueryFilter, strip_query
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider


class Collect(SpanProcessor):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def test_strip_query() -> None:
    assert strip_query("ws://h:1/ws?token=abc#x") == "ws://h:1/ws"
    assert strip_query("/api/v1/conversations") == "/api/v1/conversations"


def test_exported_spans_lose_every_query_string() -> None:
    collected = Collect()
    provider = TracerProvider()
    provider.add_span_processor(QueryStrippingSpanProcessor(collected))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(
        "GET /ws",
        attributes={
            "http.url": "ws://127.0.0.1:8000/ws?token=secret",
            "url.full": "http://h/search?q=card#top",
            "http.target": "/ws?token=secret",
            "url.query": "token=secret",
            "http.method": "GET",
        },
    ):
        pass
    with tracer.start_as_current_span("plain", attributes={"http.url": "http://h/a"}):
        pass
    first, second = (dict(s.attributes) for s in collected.spans)
    assert first == {
        "http.url": "ws://127.0.0.1:8000/ws",
        "url.full": "http://h/search",
        "http.target": "/ws",
        "http.method": "GET",
    }
    assert second == {"http.url": "http://h/a"}


def test_uvicorn_request_lines_lose_the_query() -> None:
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5000", "/ws?token=secret"),
        None,
    )
    assert StripQueryFilter().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "WebSocket /ws" [accepted]'

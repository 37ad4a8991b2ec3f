"""Logging and tracing set-up, identical in every service.

Logs are JSON lines on stderr carrying ``trace_id`` and ``span_id`` when a span is active.
Spans come from the OpenTelemetry instrumentations of FastAPI (server spans, W3C
``traceparent`` taken from every request, including Dapr's deliveries), gRPC (the calls to the
Dapr sidecar, which carry ``traceparent`` on so that a publish continues the trace), psycopg
and httpx (the Ollama client), plus the spans the services open themselves.
Tracing exports OTLP/HTTP only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the traces variant) is
set. ``OTEL_SDK_DISABLED=true`` (the OpenTelemetry SDK's own switch) turns tracing off
altogether: no instrumentation is installed and spans are no-ops.

Neither spans nor logs keep a query string: a URL's query can carry secrets and customer text,
and whoever reads Jaeger or the logs is not meant to see either. Exported spans lose the query
and fragment of every URL attribute (:data:`URL_ATTRIBUTES`) and ``url.query`` itself; uvicorn's
request lines log the path alone; headers that hold credentials are masked should header
capture (``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST``) ever be turned on.
"""

import importlib.util
import logging
import os
import sys

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from pythonjsonlogger.json import JsonFormatter

URL_ATTRIBUTES = ("http.url", "url.full", "http.target", "url.original")
"""Span attributes holding a URL or a path with its query (old and stable HTTP conventions)."""
QUERY_ATTRIBUTES = ("url.query",)
"""Span attributes holding only a query string: dropped."""
SECRET_HEADERS = [
    "authorization",
    "cookie",
    "set-cookie",
    "sec-websocket-protocol",  # the operator's token on /ws
    "x-api-key",
    "dapr-api-token",
]
"""Request and response headers masked in captured-header span attributes."""


def strip_query(url: str) -> str:
    """``url`` without its query string and fragment (``/ws?token=x#y`` -> ``/ws``)."""
    return url.split("?", 1)[0].split("#", 1)[0]


class QueryStrippingSpanProcessor(SpanProcessor):
    """Passes ended spans on to ``inner`` (the exporting processor) without the query string
    of any URL attribute. Spans are read-only once ended, so a span that needs it is copied."""

    def __init__(self, inner: SpanProcessor) -> None:
        self._inner = inner

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        attributes = span.attributes or {}
        if any(k in attributes for k in QUERY_ATTRIBUTES) or any(
            isinstance(attributes.get(k), str) and strip_query(attributes[k]) != attributes[k]
            for k in URL_ATTRIBUTES
        ):
            span = ReadableSpan(
                name=span.name,
                context=span.context,
                parent=span.parent,
                resource=span.resource,
                attributes={
                    k: strip_query(v) if k in URL_ATTRIBUTES and isinstance(v, str) else v
                    for k, v in attributes.items()
                    if k not in QUERY_ATTRIBUTES
                },
                events=span.events,
                links=span.links,
                kind=span.kind,
                status=span.status,
                start_time=span.start_time,
                end_time=span.end_time,
                instrumentation_scope=span.instrumentation_scope,
            )
        self._inner.on_end(span)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class StripQueryFilter(logging.Filter):
    """uvicorn's request lines (``"GET /path?query"``, ``"WebSocket /ws?query" [accepted]``)
    name the path with its query; keep the path only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                strip_query(a) if isinstance(a, str) and a.startswith("/") else a
                for a in record.args
            )
        return True


class _TraceContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            record.trace_id = f"{ctx.trace_id:032x}"
            record.span_id = f"{ctx.span_id:016x}"
        return True


def setup_telemetry(service_name: str, log_level: str = "INFO") -> None:
    """Configure JSON logging and the global tracer provider once per process.

    Args:
        service_name: the service's one name (Dapr app-id, Kubernetes name); used unless
            ``OTEL_SERVICE_NAME`` overrides it.
        log_level: a :mod:`logging` level name.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(_TraceContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(log_level)
    for noisy in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # a logger's filters see only the records logged on it, not its children's
    for request_lines in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(request_lines)
        if not any(isinstance(f, StripQueryFilter) for f in logger.filters):
            logger.addFilter(StripQueryFilter())

    if tracing_disabled() or isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    name = os.environ.get("OTEL_SERVICE_NAME", service_name)
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(
            QueryStrippingSpanProcessor(BatchSpanProcessor(OTLPSpanExporter()))
        )
    trace.set_tracer_provider(provider)
    _instrument_clients()


def tracing_disabled() -> bool:
    """``OTEL_SDK_DISABLED`` is ``true`` (case-insensitive), as the OpenTelemetry spec defines."""
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def _instrument_clients() -> None:
    # Each service's image holds only its own dependencies (psycopg only in messaging, httpx
    # not there): instrument the client libraries this process can import.
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient

    GrpcAioInstrumentorClient().instrument()
    if importlib.util.find_spec("httpx") is not None:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor().instrument()
    if importlib.util.find_spec("psycopg") is not None:
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

        PsycopgInstrumentor().instrument(enable_commenter=False)


def instrument_app(app: object) -> None:
    """Server spans for every request to ``app`` (a FastAPI application) except health checks
    and WebSockets (paths ending ``/ws``), without the ASGI middleware's child span for each
    ``send`` and ``receive``.

    Does nothing when tracing is disabled.
    """
    if tracing_disabled():
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.util.http import (
        OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS,
        get_custom_headers,
    )

    # passing a list replaces the environment's, so keep those too
    sanitize = get_custom_headers(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS)
    FastAPIInstrumentor.instrument_app(
        app,
        # a WebSocket's server span would last as long as the socket, hours, and its pushes
        # have spans of their own (the gateway's "websocket push")
        excluded_urls="healthz,readyz,/ws$",
        http_capture_headers_sanitize_fields=[*SECRET_HEADERS, *sanitize],
        # A span per ASGI send and receive says nothing the request's own span does not, and
        # on a WebSocket it is one span per push per socket: with 1,000 operator sockets that
        # was a fifth of the gateway's CPU.
        exclude_spans=["receive", "send"],
    )

"""Logging and tracing set-up, identical in every service.

Logs are JSON lines on stderr carrying ``trace_id`` and ``span_id`` when a span is active.
Spans come from the OpenTelemetry instrumentations of FastAPI (server spans, W3C
``traceparent`` taken from every request, including Dapr's deliveries), gRPC (the calls to the
Dapr sidecar, which carry ``traceparent`` on so that a publish continues the trace), psycopg
and httpx (the Ollama client), plus the spans the services open themselves.
Tracing exports OTLP/HTTP only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the traces variant) is
set. ``OTEL_SDK_DISABLED=true`` (the OpenTelemetry SDK's own switch) turns tracing off
altogether: no instrumentation is installed and spans are no-ops.
"""

import importlib.util
import logging
import os
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from pythonjsonlogger.json import JsonFormatter


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

    if tracing_disabled() or isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    name = os.environ.get("OTEL_SERVICE_NAME", service_name)
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
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
    """Server spans for every request to ``app`` (a FastAPI application) except health checks.

    Does nothing when tracing is disabled.
    """
    if tracing_disabled():
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz")

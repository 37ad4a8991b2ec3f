"""What the browser needs to know before sign-in: where to send its spans, where traces open.

Public like the static files: it holds URLs only, never a secret.
"""

from fastapi import APIRouter
from pydantic import BaseModel, Field

from gateway.api.deps import SettingsDep

router = APIRouter(prefix="/api/v1", tags=["client"])

BROWSER_SERVICE_NAME = "support-inbox-frontend"
"""``service.name`` of the spans the page records (OpenTelemetry resource semantic conventions)."""


class BrowserTracing(BaseModel):
    traces_url: str = Field(description="OTLP/HTTP traces endpoint, JSON encoding")
    service_name: str = BROWSER_SERVICE_NAME


class ClientConfig(BaseModel):
    version: str
    tracing: BrowserTracing | None = Field(description="None: record no spans")
    trace_url_template: str | None = Field(
        description="Link to one trace with `{trace_id}` in it; None: no link"
    )


@router.get("/client-config")
def client_config(settings: SettingsDep) -> ClientConfig:
    """Browser tracing and trace-link settings (from ``BROWSER_TRACES_URL``, ``TRACE_UI_URL``)."""
    tracing = None
    if settings.browser_traces_url is not None:
        tracing = BrowserTracing(traces_url=str(settings.browser_traces_url))
    return ClientConfig(version="0.1.0", tracing=tracing, trace_url_template=settings.trace_ui_url)

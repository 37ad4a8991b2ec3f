"""A throwaway Jaeger v2 (in-memory storage) on loopback: OTLP in, Jaeger's query API out.

The binary is built from the Go module proxy by tools/build-jaeger.sh (`make tools`). It has no
UI assets: ``ui_url`` serves upstream's placeholder page, while ``/api/...`` works fully.
"""

import json
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from devstack.procs import CACHE_DIR, Process, StartError, free_port, http_ok, port_open

JAEGER_BIN = CACHE_DIR / "bin" / "jaeger"


class Jaeger:
    """``jaeger --config`` with every listener on its own free 127.0.0.1 port, so instances can
    run side by side; the collector's own metrics and the query service's self-tracing are off
    (the latter would export to localhost:4317, or wherever OTEL_* in the environment points)."""

    def __init__(self, log_dir: Path, max_traces: int = 10_000) -> None:
        self.log_dir = log_dir
        self.max_traces = max_traces
        self.grpc_port, self.http_port, self.query_port, self.query_grpc_port = (
            free_port() for _ in range(4)
        )
        self.base: Path | None = None
        self.process: Process | None = None

    @property
    def otlp_grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def otlp_http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.query_port}"

    @property
    def browser_env(self) -> dict[str, str]:
        """The gateway's settings that make the page export its spans here and link each
        insight to its trace. Without UI assets the link opens the query API's JSON."""
        return {
            "BROWSER_TRACES_URL": f"{self.otlp_http_endpoint}/v1/traces",
            "TRACE_UI_URL": f"{self.ui_url}/api/traces/{{trace_id}}",
        }

    def _config(self) -> dict:
        def at(port: int) -> dict:
            return {"endpoint": f"127.0.0.1:{port}"}

        return {
            "service": {
                "extensions": ["jaeger_storage", "jaeger_query"],
                "pipelines": {
                    "traces": {"receivers": ["otlp"], "exporters": ["jaeger_storage_exporter"]}
                },
                "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "info"}},
            },
            "extensions": {
                "jaeger_storage": {
                    "backends": {"memstore": {"memory": {"max_traces": self.max_traces}}}
                },
                "jaeger_query": {
                    "storage": {"traces": "memstore"},
                    "enable_tracing": False,
                    "http": at(self.query_port),
                    "grpc": at(self.query_grpc_port),
                },
            },
            "receivers": {
                "otlp": {
                    "protocols": {
                        "grpc": at(self.grpc_port),
                        "http": {**at(self.http_port), "cors": {"allowed_origins": ["*"]}},
                    }
                }
            },
            "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
        }

    def start(self) -> "Jaeger":
        if not JAEGER_BIN.exists():
            raise StartError(f"{JAEGER_BIN} is missing: run `make tools`")
        self.base = Path(tempfile.mkdtemp(prefix="inbox-jaeger-"))
        config = self.base / "config.yaml"
        config.write_text(json.dumps(self._config(), indent=2))  # JSON is YAML
        self.process = Process(
            "jaeger", [str(JAEGER_BIN), "--config", str(config)], self.log_dir / "jaeger.log"
        ).start()
        self.process.wait_until(
            lambda: port_open(self.grpc_port) and port_open(self.http_port), 30, "OTLP ports"
        )
        self.process.wait_until(lambda: http_ok(f"{self.ui_url}/api/services"), 30, "query API")
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)

    def _get(self, path: str) -> dict | None:
        try:
            with urllib.request.urlopen(f"{self.ui_url}{path}", timeout=5) as response:
                return json.load(response)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def traces(self, service: str, limit: int = 100) -> list[dict]:
        """Recent traces with a span of ``service`` (Jaeger JSON: traceID, spans, processes)."""
        query = urllib.parse.urlencode({"service": service, "limit": limit})
        return (self._get(f"/api/traces?{query}") or {}).get("data") or []

    def trace(self, trace_id: str) -> dict | None:
        """One trace by its 32-hex-digit id, or None when Jaeger has not seen it."""
        found = self._get(f"/api/traces/{urllib.parse.quote(trace_id)}")
        return found["data"][0] if found and found.get("data") else None

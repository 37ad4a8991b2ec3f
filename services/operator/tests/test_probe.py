"""The model probe against a real HTTP server on loopback: it must stay bounded whatever the
URL in a SupportInbox answers (time, size, redirects)."""

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from inbox_operator.cluster import MODEL_PROBE_MAX_BYTES, model_served

TAGS = json.dumps({"models": [{"name": "llama3.2:3b"}]}).encode()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *_: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.startswith("/ok"):
            self._send(TAGS)
        elif self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "/ok/api/tags")
            self.end_headers()
        elif self.path.startswith("/huge"):
            padding = b" " * (MODEL_PROBE_MAX_BYTES + 1)
            self._send(TAGS[:-1] + padding + b"}")
        elif self.path.startswith("/drip"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(TAGS)))
            self.end_headers()
            try:
                for byte in TAGS:  # each byte within a per-read timeout, the whole far beyond
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.5)
            except OSError:
                pass  # the probe gave up, as it should

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_a_served_model_is_found(server: str) -> None:
    served, message = await model_served(f"{server}/ok", "llama3.2:3b")
    assert served, message


async def test_a_redirect_is_not_followed(server: str) -> None:
    served, message = await model_served(f"{server}/redirect", "llama3.2:3b")
    assert not served
    assert "302" in message


async def test_an_oversized_answer_is_refused(server: str) -> None:
    served, message = await model_served(f"{server}/huge", "llama3.2:3b")
    assert not served
    assert f"more than {MODEL_PROBE_MAX_BYTES} bytes" in message


async def test_a_slow_answer_ends_at_the_total_timeout(server: str) -> None:
    started = time.monotonic()
    served, message = await model_served(f"{server}/drip", "llama3.2:3b", timeout_s=1.0)
    assert time.monotonic() - started < 3
    assert not served
    assert "unreachable" in message

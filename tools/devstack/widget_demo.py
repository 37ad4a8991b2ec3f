"""A site that embeds the chat widget, for `make run` and the browser tests: "Example Bank — help
centre", a static page on its own origin (as a real customer's site is) with the one script tag
of the embedding contract.

The page is served with a strict CSP of its own: scripts and frames from the gateway only, its
stylesheet from itself, nothing inline. So the widget is shown working under the policy a careful
site would set, and a loader that needed more would fail here first.

Usage: ``python -m devstack.widget_demo --gateway http://127.0.0.1:8000 --channel example-bank
--port 8100 [--identity JWT]``.
"""

import argparse
import html
import sys
import urllib.parse
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from devstack.procs import DEVSTACK_ENV, Process, free_port, http_ok

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Help centre — Example Bank</title>
  <link rel="stylesheet" href="/demo.css">
  <script src="{gateway}/widget/loader.js" data-channel="{channel}"{identity} async></script>
</head>
<body>
  <header class="top"><strong>Example Bank</strong> <span>Help centre</span></header>
  <main>
    <h1>How can we help?</h1>
    <p class="lead">Answers to common questions. Still stuck? Use <em>Chat with us</em>, bottom
      right, and a member of our team will reply.</p>
    <section>
      <h2>Cards</h2>
      <details><summary>My card has not arrived</summary>
        <p>New cards take up to 7 working days. After that, tell us and we will send another.</p>
      </details>
      <details><summary>I think my card was used without my permission</summary>
        <p>Freeze the card in the app straight away, then chat with us.</p>
      </details>
    </section>
    <section>
      <h2>Transfers</h2>
      <details><summary>Why is my transfer still pending?</summary>
        <p>Transfers to other banks can take up to one working day.</p>
      </details>
      <details><summary>What is the exchange rate for payments abroad?</summary>
        <p>The rate of the day the payment is settled, shown in the app before you confirm.</p>
      </details>
    </section>
  </main>
  <footer>Example Bank is a demonstration site; nothing here is a real bank.</footer>
</body>
</html>
"""

CSS = """
body { margin: 0; font: 16px/1.5 system-ui, sans-serif; color: #1f2933; background: #f7f8fa; }
.top { padding: 14px 24px; color: #fff; background: #0b5d4b; }
.top span { opacity: 0.8; margin-left: 8px; }
main { max-width: 720px; margin: 0 auto; padding: 24px; }
.lead { font-size: 18px; }
details { margin: 8px 0; padding: 10px 14px; background: #fff; border: 1px solid #d9dee4;
  border-radius: 8px; }
summary { cursor: pointer; font-weight: 600; }
footer { padding: 24px; text-align: center; color: #5f6b7a; font-size: 14px; }
"""


def content_security_policy(gateway: str) -> str:
    """The page's CSP: the gateway's loader script and chat frame, this origin's stylesheet."""
    return (
        f"default-src 'none'; script-src {gateway}; frame-src {gateway}; style-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``.

    Raises:
        ValueError: ``url`` is not an absolute http(s) URL.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"gateway URL must be absolute http(s), got {url!r}")
    return f"{parts.scheme}://{parts.netloc}"


class _Handler(BaseHTTPRequestHandler):
    def __init__(self, *args, page: bytes, csp: str, **kwargs) -> None:
        self.page = page
        self.csp = csp
        super().__init__(*args, **kwargs)

    def do_GET(self, head: bool = False) -> None:  # noqa: N802 - http.server's naming
        path = urllib.parse.urlsplit(self.path).path
        if path == "/":
            self._send(200, "text/html; charset=utf-8", self.page, head)
        elif path == "/demo.css":
            self._send(200, "text/css; charset=utf-8", CSS.encode(), head)
        elif path == "/favicon.ico":
            # no icon, and no 404 in the browser's console for the lack of one
            self._send(204, "image/x-icon", b"", head)
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n", head)

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self.do_GET(head=True)

    def _send(self, status: int, content_type: str, body: bytes, head: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", self.csp)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "strict-origin-when-cross-origin")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def make_server(
    gateway_url: str, channel: str, port: int, identity: str | None = None
) -> ThreadingHTTPServer:
    """The demo site on ``127.0.0.1:port``, not yet serving.

    Raises:
        ValueError: ``gateway_url`` is not an absolute http(s) URL.
    """
    gateway = origin_of(gateway_url)
    attribute = f' data-identity="{html.escape(identity, quote=True)}"' if identity else ""
    page = PAGE.format(
        gateway=html.escape(gateway, quote=True),
        channel=html.escape(channel, quote=True),
        identity=attribute,
    ).encode()
    handler = partial(_Handler, page=page, csp=content_security_policy(gateway))
    return ThreadingHTTPServer(("127.0.0.1", port), handler)


def start_demo(
    gateway_url: str,
    channel: str,
    log_path: Path,
    *,
    port: int | None = None,
    identity: str | None = None,
) -> tuple[Process, str]:
    """Serve the demo site in a process of its own on loopback.

    Args:
        gateway_url: the gateway's base URL; the page loads ``/widget/loader.js`` from its origin.
        channel: the widget channel id (``data-channel``).
        log_path: the process's log file.
        port: where to listen; default a free port. The gateway must list the page's origin in
            the channel's allowed origins before the page is opened, so a caller that starts the
            gateway afterwards picks the port first (``free_port()``) and passes it here.
        identity: a JWT for ``data-identity``; default none (an anonymous visitor).

    Returns:
        The process (``stop()`` it) and the page's URL, ``http://127.0.0.1:<port>/``.

    Raises:
        StartError: it did not answer within 15 s.
    """
    port = port or free_port()
    argv = [sys.executable, "-m", "devstack.widget_demo"]
    argv += ["--gateway", gateway_url, "--channel", channel, "--port", str(port)]
    if identity:
        argv += ["--identity", identity]
    process = Process("widget-demo", argv, log_path, env=DEVSTACK_ENV).start()
    url = f"http://127.0.0.1:{port}/"
    process.wait_until(lambda: http_ok(f"{url}demo.css"), 15, "readiness")
    return process, url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", required=True, help="the gateway's base URL")
    parser.add_argument("--channel", required=True, help="the widget channel id")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--identity", help="a JWT the site signed for its signed-in visitor")
    args = parser.parse_args(argv)
    try:
        server = make_server(args.gateway, args.channel, args.port, args.identity)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"Example Bank help centre at http://127.0.0.1:{args.port}/", flush=True)
    with server:
        server.serve_forever()


if __name__ == "__main__":
    main()

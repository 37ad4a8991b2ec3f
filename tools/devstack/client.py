"""The public API, the database and the event bus as tests and benchmarks use them: clients
and waits with a bound, free of pytest, so that ``bench/`` and the local stack's tools need no
test framework. The pytest fixtures (:mod:`devstack.fixtures`) build on them.

``E2E_TIMEOUT_S`` (default 60 s) bounds every wait for something to arrive.
"""

import json
import os
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import httpx2 as httpx
import psycopg
from inbox_common.events import pubsub_for

from devstack.stack import Stack

T = TypeVar("T")
E2E_TIMEOUT_S = float(os.environ.get("E2E_TIMEOUT_S", "60"))


class WaitTimedOut(AssertionError):
    """What a bounded wait raises when its condition never came true; an assertion, so that
    a test fails (not errors) on it."""


def wait_for(
    probe: Callable[[], T | None],
    timeout_s: float = E2E_TIMEOUT_S,
    what: str = "condition",
    interval_s: float = 0.2,
) -> T:
    """Call ``probe`` until it returns something truthy, every ``interval_s`` seconds.

    Raises:
        WaitTimedOut: nothing truthy within ``timeout_s`` seconds (fails a test).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimedOut(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)


def publish_through(
    stack: Stack, app: str, topic: str, data: object, *, event_id: str | None = None
) -> httpx.Response:
    """POST ``data`` as a CloudEvent on ``topic`` through ``app``'s sidecar (Dapr's HTTP
    publish API, ``/v1.0/publish/<pubsub>/<topic>``), past every check of the app's routes.

    The body is ASCII-escaped JSON, so control characters and lone surrogates in ``data``
    reach the broker as JSON escapes. Returns the sidecar's answer: 204 published, 403 outside
    the app's pub/sub scopes.
    """
    port = stack.services[app].ports.http
    envelope = {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": "tests",
        "type": f"com.example.{topic}",
        "datacontenttype": "application/json",
        "data": data,
    }
    return httpx.post(
        f"http://127.0.0.1:{port}/v1.0/publish/{pubsub_for(topic)}/{topic}",
        content=json.dumps(envelope).encode(),
        headers={
            "Content-Type": "application/cloudevents+json",
            "dapr-api-token": stack.dapr_api_token,
        },
        timeout=10,
    )


WS_PROTOCOL = "inbox.v1"
"""The gateway's WebSocket subprotocol; the token travels beside it, never in the URL."""


def frame_events(frame: str | bytes) -> list[dict]:
    """The events of one WebSocket frame as a page receives it: on the batched subprotocol
    (``inbox.v2``, which the page offers first) an array of them; an ``inbox.v1`` frame is one
    event."""
    data = json.loads(frame)
    return [e for e in (data if isinstance(data, list) else [data]) if isinstance(e, dict)]


def ws_subprotocols(token: str) -> list[str]:
    """``Sec-WebSocket-Protocol`` values that sign a socket in with ``token`` (a JWT):
    the protocol, then ``inbox.bearer.<token>``."""
    return [WS_PROTOCOL, f"inbox.bearer.{token}"]


class InboxClient:
    """The public API as a test sees it."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.http = httpx.Client(base_url=stack.gateway_url, timeout=15)
        user, password = stack.operator
        response = self.http.post(
            "/api/v1/auth/login", json={"username": user, "password": password}
        )
        response.raise_for_status()
        self.token = response.json()["access_token"]
        self.auth = {"Authorization": f"Bearer {self.token}"}

    def send_customer(self, body: str, **fields: object) -> dict:
        response = self.http.post(
            "/api/v1/inbound/messages",
            json={"customer_id": "cust-test", "body": body, **fields},
            headers={"X-API-Key": self.stack.channel_key},
        )
        assert response.status_code == 202, response.text
        return response.json()

    def conversation(self, conversation_id: str) -> dict | None:
        response = self.http.get(f"/api/v1/conversations/{conversation_id}", headers=self.auth)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def reply(self, conversation_id: str, body: str) -> dict:
        response = self.http.post(
            f"/api/v1/conversations/{conversation_id}/messages",
            json={"body": body},
            headers=self.auth,
        )
        assert response.status_code == 202, response.text
        return response.json()

    def message(self, conversation_id: str, message_id: str) -> dict | None:
        """One stored message of the conversation read model, or ``None`` (not stored yet)."""
        messages = (self.conversation(conversation_id) or {}).get("messages", [])
        return next((m for m in messages if m["message_id"] == message_id), None)

    def wait_insight(
        self, conversation_id: str, message_id: str, timeout_s: float = E2E_TIMEOUT_S
    ) -> dict:
        """The message's insight once it is no longer ``processing``."""

        def probe() -> dict | None:
            conversation = self.conversation(conversation_id)
            for message in (conversation or {}).get("messages", []):
                insight = message.get("insight") or {}
                if message["message_id"] == message_id and insight.get("status") not in (
                    None,
                    "processing",
                ):
                    return insight
            return None

        return wait_for(probe, timeout_s, f"insight of {message_id}")

    @property
    def ws_url(self) -> str:
        """``/ws`` of the first gateway; sign in with :attr:`ws_subprotocols`."""
        return self.stack.gateway_url.replace("http://", "ws://") + "/ws"

    @property
    def ws_subprotocols(self) -> list[str]:
        """What to offer in ``Sec-WebSocket-Protocol`` on ``/ws``: see :func:`ws_subprotocols`."""
        return ws_subprotocols(self.token)


class Database:
    """A look at the system of record that reconnects after a PostgreSQL restart."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.Connection | None = None

    def execute(self, query: str, params: object = None) -> psycopg.Cursor:
        """Run ``query`` in autocommit mode, reconnecting once if the connection is gone."""
        for attempt in (1, 2):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
                return self._conn.execute(query, params)  # type: ignore[arg-type]
            except psycopg.OperationalError:
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

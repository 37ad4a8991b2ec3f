"""Simulated customer stream: real support messages posted through the channel API.

The messages are BANKING77 (PolyAI, Casanueva et al. 2020, CC BY 4.0; see
``shared/data/README.md``).
"""

import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from devstack.dataset import DATA_FILE

log = logging.getLogger("devstack.seed")


def load_messages(path: Path = DATA_FILE) -> list[dict]:
    """Rows of ``{"id", "text", "intent", "category"}`` in file order."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


RETRY_FOR_S = 30.0


def post_customer_message(
    gateway_url: str, api_key: str, row: dict, message_id: uuid.UUID | None = None
) -> dict:
    """POST one data-set row to ``/api/v1/inbound/messages``; returns the 202 body. A 429
    (rate limit) or 503 (bus down) is retried after the ``Retry-After`` it names, with the
    same ``message_id``, for up to :data:`RETRY_FOR_S` seconds, as a channel client should; so is
    a connection that fails without an answer.

    Raises:
        urllib.error.HTTPError: the gateway refused it, or kept asking to retry.
    """
    customer = "cust-" + row["id"].rsplit("-", 1)[-1]
    body = json.dumps(
        {
            "message_id": str(message_id or uuid.uuid5(uuid.NAMESPACE_URL, row["id"])),
            "customer_id": customer,
            "body": row["text"],
        }
    ).encode()
    request = urllib.request.Request(
        f"{gateway_url}/api/v1/inbound/messages",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "X-API-Key": api_key},
    )
    deadline = time.monotonic() + RETRY_FOR_S
    while True:
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - ours
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code not in (429, 503) or time.monotonic() > deadline:
                raise
            time.sleep(float(exc.headers.get("Retry-After") or 1))
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            # no answer at all (a gateway restarting): the same message_id again is safe
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


class CustomerStream:
    """Post ``initial`` messages now, then ``per_minute`` more each minute until stopped."""

    def __init__(
        self, gateway_url: str, api_key: str, initial: int, per_minute: float, seed: int = 7
    ) -> None:
        self.gateway_url = gateway_url
        self.api_key = api_key
        self.initial = initial
        self.per_minute = per_minute
        self.rows = load_messages()
        random.Random(seed).shuffle(self.rows)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="customer-stream", daemon=True)
        self.sent = 0

    def start(self) -> "CustomerStream":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _send_next(self) -> None:
        row = self.rows[self.sent % len(self.rows)]
        try:
            post_customer_message(self.gateway_url, self.api_key, row, uuid.uuid4())
            self.sent += 1
        except (urllib.error.URLError, OSError) as exc:
            log.warning("customer stream: post failed: %s", exc)

    def _run(self) -> None:
        for _ in range(self.initial):
            if self._stop.is_set():
                return
            self._send_next()
        if self.per_minute <= 0:
            return
        while not self._stop.wait(60.0 / self.per_minute):
            self._send_next()

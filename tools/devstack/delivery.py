"""What the broker-matrix tests share: a patient customer, exactly-once counts, sidecar metrics."""

import re
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable

import httpx2 as httpx

from devstack.client import wait_for


class PatientCustomer:
    """Posts messages through the channel API at a steady rate, in a thread, retrying each
    one with the same ``message_id`` until it is accepted: what a real channel integration
    does when the gateway answers 503 (bus down) or does not answer at all."""

    def __init__(self, stack, count: int, per_second: float, text: str = "") -> None:
        self.stack = stack
        self.count = count
        self.interval_s = 1 / per_second
        run = uuid.uuid4().hex[:8]
        self.ids = [uuid.uuid4() for _ in range(count)]
        self.texts = [f"{text}Where is my card? (run {run}, message {i})" for i in range(count)]
        self.attempts = 0
        self.accepted = 0
        self.refusals: list[str] = []
        self.sent = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "PatientCustomer":
        self._thread.start()
        return self

    def _run(self) -> None:
        with httpx.Client(base_url=self.stack.gateway_url, timeout=20) as client:
            for message_id, text in zip(self.ids, self.texts, strict=True):
                deadline = time.monotonic() + 180
                while True:
                    self.attempts += 1
                    try:
                        response = client.post(
                            "/api/v1/inbound/messages",
                            json={
                                "message_id": str(message_id),
                                "customer_id": "cust-patient",
                                "body": text,
                            },
                            headers={"X-API-Key": self.stack.channel_key},
                        )
                        if response.status_code == 202:
                            break
                        self.refusals.append(f"{response.status_code} {response.text[:120]}")
                    except httpx.HTTPError as exc:
                        self.refusals.append(type(exc).__name__)
                    if time.monotonic() > deadline:
                        return
                    time.sleep(1)
                self.accepted += 1
                time.sleep(self.interval_s)
        self.sent.set()

    def wait_sent(self, timeout_s: float = 240) -> None:
        self._thread.join(timeout_s)
        assert self.sent.is_set(), (
            f"only {self.accepted} of {self.count} accepted; last refusals {self.refusals[-5:]}"
        )


def wait_exactly_once(db, ids: list[uuid.UUID], timeout_s: float = 180) -> dict[str, int]:
    """Wait until every message is stored with a final insight; then check nothing doubled.

    Returns the insight status counts.
    """

    progress = {}

    def done() -> bool:
        stored, analysed = db.execute(
            "SELECT count(*), count(*) FILTER (WHERE i.status <> 'processing')"
            " FROM messages m JOIN ai_insights i USING (message_id)"
            " WHERE m.message_id = ANY(%s)",
            (ids,),
        ).fetchone()
        unpublished = db.execute(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL"
        ).fetchone()[0]
        progress.update(stored=stored, analysed=analysed, outbox_unpublished=unpublished)
        return analysed == len(ids)

    try:
        wait_for(done, timeout_s, f"{len(ids)} messages stored and analysed", interval_s=0.5)
    except BaseException:
        print(f"progress when giving up: {progress}")
        raise
    rows, distinct_bodies, insights = db.execute(
        "SELECT count(*), count(DISTINCT body), (SELECT count(*) FROM ai_insights"
        " WHERE message_id = ANY(%s)) FROM messages WHERE message_id = ANY(%s)",
        (ids, ids),
    ).fetchone()
    assert (rows, distinct_bodies, insights) == (len(ids),) * 3
    seqs = db.execute(
        "SELECT conversation_id, count(*) FROM messages WHERE message_id = ANY(%s)"
        " GROUP BY conversation_id HAVING count(*) <> count(DISTINCT seq)",
        (ids,),
    ).fetchall()
    assert seqs == []
    return dict(
        db.execute(
            "SELECT status, count(*) FROM ai_insights WHERE message_id = ANY(%s) GROUP BY status",
            (ids,),
        ).fetchall()
    )


_SAMPLE = re.compile(r"^(\w+)\{([^}]*)\} ([0-9.e+-]+)$")


def sidecar_metric(service, name: str, **labels: str) -> float:
    """Sum of a daprd Prometheus counter on ``service``'s sidecar, filtered by labels."""
    url = f"http://127.0.0.1:{service.ports.metrics}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        found = _SAMPLE.match(line)
        if not found or found.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', found.group(2)))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(found.group(3))
    return total


def replicas(stack, app_id: str) -> list:
    return [s for s in stack.services.values() if s.app_id == app_id]


def during(action: Callable[[], None], customer: PatientCustomer, after: int) -> float:
    """Run ``action`` once ``after`` messages were accepted; returns how long it took (s)."""
    wait_for(lambda: customer.accepted >= after, 120, f"{after} messages accepted")
    started = time.monotonic()
    action()
    return time.monotonic() - started

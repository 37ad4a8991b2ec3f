"""Search through pub/sub and the state store, messaging alone with its real daprd (Redis,
PostgreSQL): ``search.requested`` in through the sidecar, the ranked result read back from
``search:{request_id}`` in the state store, with its TTL; poison to the dead-letter topic."""

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from devstack.client import wait_for
from devstack.fixtures import start_stack
from devstack.probe import Probe
from inbox_common.events import SEARCH_RESULT_TTL_S
from inbox_common.keys import conversation_key, search_key

pytestmark = pytest.mark.integration


def now() -> str:
    return datetime.now(UTC).isoformat()


def submitted(conversation_id: str, body: str, subject: str | None = None) -> dict:
    return {
        "message_id": str(uuid.uuid4()),
        "conversation_id": conversation_id,
        "author_role": "customer",
        "author_id": "cust-search",
        "body": body,
        "subject": subject,
        "submitted_at": now(),
    }


def search(query: str, **fields: object) -> dict:
    return {
        "request_id": str(uuid.uuid4()),
        "query": query,
        "requested_by": "demo",
        "requested_at": now(),
        **fields,
    }


@pytest.fixture(scope="module")
def messaging(output_dir, fake_ollama):
    stack = start_stack(output_dir, "int-search-messaging", fake_ollama, services=("messaging",))
    try:
        with psycopg.connect(stack.postgres.url, autocommit=True) as db:
            yield Probe(stack, "messaging"), db
    finally:
        stack.stop()


def conversation(probe: Probe, *bodies: str, subject: str | None = None) -> str:
    """A stored conversation of customer messages ``bodies``; returns its id."""
    conversation_id = str(uuid.uuid4())
    for count, body in enumerate(bodies, start=1):
        probe.publish("messages.submitted", submitted(conversation_id, body, subject))
        wait_for(
            lambda c=count: (
                (m := probe.state(conversation_key(conversation_id))) and len(m["messages"]) == c
            ),
            what=f"message {count} stored",
        )
    return conversation_id


def answer(probe: Probe, request: dict) -> dict:
    """Publish ``request`` and wait for its result in the state store."""
    probe.publish("search.requested", request)
    return wait_for(
        lambda: probe.state(search_key(request["request_id"])),
        what="the search result",
        interval_s=0.02,
    )


def test_results_are_ranked_with_a_headline_and_expire(messaging) -> None:
    probe, _ = messaging
    strong = conversation(
        probe,
        "My wombat card was declined at the shop.",
        "The wombat card is brand new and the wombat logo is on it.",
        subject="Wombat card declined",
    )
    weak = conversation(probe, "Is the wombat theme available for cards?")
    other = conversation(probe, "I need to change my postal address.")

    request = search("wombats")  # stemmed: "wombats" finds "wombat"
    result = answer(probe, request)
    ids = [item["conversation_id"] for item in result["items"]]
    assert ids == [strong, weak]
    assert other not in ids
    assert result["request_id"] == request["request_id"] and result["query"] == "wombats"
    assert result["items"][0]["rank"] > result["items"][1]["rank"] > 0
    top = result["items"][0]
    # the inbox row the list needs, plus the excerpt
    assert top["customer_id"] == "cust-search" and top["message_count"] == 2
    assert top["subject"] == "Wombat card declined" and top["version"] >= 2
    assert any(p["match"] and p["text"].lower() == "wombat" for p in top["headline"])
    text = "".join(part["text"] for part in top["headline"])
    assert "\x01" not in text and "\x02" not in text and "<b>" not in text
    # kept for a minute only
    ttl = probe.redis.ttl(f"inbox-state||{search_key(request['request_id'])}")
    assert 0 < ttl <= SEARCH_RESULT_TTL_S

    # web-search syntax, per message (or subject): a phrase, and an excluded word
    assert [i["conversation_id"] for i in answer(probe, search('"wombat logo"'))["items"]] == [
        strong
    ]
    excluded = answer(probe, search("wombat -theme"))["items"]
    assert [i["conversation_id"] for i in excluded] == [strong]


def test_no_match_is_an_empty_list(messaging) -> None:
    probe, _ = messaging
    conversation(probe, "Where is my parcel?")
    for query in ("xylophonic quasar", "the and of"):  # nothing, and stop words only
        result = answer(probe, search(query))
        assert result["items"] == [], query


def test_the_limit_bounds_the_result(messaging) -> None:
    probe, _ = messaging
    for n in range(3):
        conversation(probe, f"Platypus question number {n}")
    assert len(answer(probe, search("platypus", limit=2))["items"]) == 2


def test_a_stale_request_is_not_run(messaging) -> None:
    probe, _ = messaging
    old = (datetime.now(UTC) - timedelta(seconds=SEARCH_RESULT_TTL_S + 5)).isoformat()
    stale = search("parcel", requested_at=old)
    fresh = search("parcel")
    probe.publish("search.requested", stale)
    answer(probe, fresh)  # handled after the stale one (same stream, in order)
    wait_for(lambda: probe.acked("search.requested", "messaging"), what="requests acked")
    assert probe.state(search_key(stale["request_id"])) is None


def test_poison_goes_to_the_dead_letter_topic(messaging) -> None:
    probe, db = messaging
    poison = {"request_id": str(uuid.uuid4()), "query": "   ", "requested_by": "demo"}
    probe.publish("search.requested", poison)
    letter = wait_for(
        lambda: db.execute(
            "SELECT topic, data FROM dead_letters WHERE data = %s::jsonb", (json.dumps(poison),)
        ).fetchone(),
        what="the dead letter recorded",
    )
    assert letter == ("search.requested", poison)
    assert probe.state(search_key(poison["request_id"])) is None


def test_search_latency_through_the_sidecar(messaging) -> None:
    """From publishing through messaging's sidecar to reading the result back, polled at
    20 ms; printed for the README."""
    probe, _ = messaging
    for n in range(20):
        conversation(probe, f"Echidna card number {n} was charged twice")
    samples = []
    for _ in range(20):
        started = time.perf_counter()
        result = answer(probe, search("echidna charged"))
        samples.append((time.perf_counter() - started) * 1000)
        assert len(result["items"]) == 20
    samples.sort()
    print(
        f"\nsearch via messaging's sidecar, 20 hits (ms): p50 {samples[10]:.1f}, "
        f"max {samples[-1]:.1f}; in PostgreSQL {result['took_ms']:.1f}"
    )
    assert samples[10] < 1000

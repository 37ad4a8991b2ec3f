"""Each service alone with its real daprd, against real Redis and PostgreSQL.

Events go in through the service's own sidecar (Dapr's HTTP publish API) and come out as
entries of the Redis streams behind ``inbox-pubsub``, so each test sees exactly what the
service published, and nothing else runs.
"""

import asyncio
import json
import uuid
from datetime import UTC, datetime

import httpx2 as httpx
import psycopg
import pytest
import websockets
from devstack.client import wait_for
from devstack.dataset import write_training_examples
from devstack.fixtures import start_stack
from devstack.probe import Probe
from inbox_common.events import MessageCreated, MessageSubmitted
from inbox_common.keys import conversation_key
from inbox_common.read_models import Conversation, ConversationSummary
from inbox_common.subscriptions import Entry
from messaging.store import store_messages
from opentelemetry.context import Context

pytestmark = pytest.mark.integration


def submitted(**fields: object) -> dict:
    return {
        "message_id": str(uuid.uuid4()),
        "conversation_id": str(uuid.uuid4()),
        "author_role": "customer",
        "author_id": "cust-int",
        "body": "I'm still waiting for my new card.",
        "submitted_at": datetime.now(UTC).isoformat(),
        **fields,
    }


def completion(event: dict, revision: int, summary: str) -> dict:
    return {
        "message_id": event["message_id"],
        "conversation_id": event["conversation_id"],
        "revision": revision,
        "status": "available",
        "intent": "card_arrival",
        "summary": summary,
        "suggested_reply": "We are on it.",
        "model": "m",
        "duration_ms": 12,
        "trace_id": "ab" * 16,
    }


# ---------------------------------------------------------------------------- messaging


@pytest.fixture(scope="module")
def messaging(output_dir, fake_ollama):
    stack = start_stack(output_dir, "int-messaging", fake_ollama, services=("messaging",))
    try:
        with psycopg.connect(stack.postgres.url, autocommit=True) as db:
            yield Probe(stack, "messaging"), db
    finally:
        stack.stop()


def test_messaging_stores_once_announces_and_projects(messaging) -> None:
    probe, db = messaging
    event = submitted()
    probe.publish("messages.submitted", event)
    probe.publish("messages.submitted", event)  # redelivery
    wait_for(
        lambda: [
            e for e in probe.events("message.created") if e["message_id"] == event["message_id"]
        ],
        what="message.created",
    )
    assert (
        db.execute(
            "SELECT count(*) FROM messages WHERE message_id = %s", (event["message_id"],)
        ).fetchone()[0]
        == 1
    )
    created = [e for e in probe.events("message.created") if e["message_id"] == event["message_id"]]
    assert len(created) == 1 and created[0]["seq"] == 1
    updated = wait_for(
        lambda: [
            e
            for e in probe.events("conversation.updated")
            if e["conversation_id"] == event["conversation_id"]
        ],
        what="conversation.updated",
    )
    assert updated == [
        {"conversation_id": event["conversation_id"], "version": 1, "reason": "message.created"}
    ]
    model = Conversation.model_validate(probe.state(conversation_key(event["conversation_id"])))
    assert [m.body for m in model.messages] == [event["body"]]
    assert model.messages[0].insight.status == "processing"
    inbox = probe.state("inbox:index")
    assert event["conversation_id"] in {i["conversation_id"] for i in inbox["items"]}


def test_messaging_stores_the_first_insight_only(messaging) -> None:
    probe, db = messaging
    event = submitted()
    probe.publish("messages.submitted", event)
    wait_for(lambda: probe.state(conversation_key(event["conversation_id"])), what="read model")
    for summary in ("first", "second"):
        probe.publish("ai.completed", completion(event, 1, summary))

    def insight() -> dict | None:
        model = probe.state(conversation_key(event["conversation_id"]))
        found = model["messages"][0]["insight"]
        return found if found["status"] == "available" else None

    stored = wait_for(insight, what="insight in read model")["summary"]
    wait_for(lambda: probe.acked("ai.completed", "messaging"), what="both deliveries acked")
    rows = db.execute(
        "SELECT summary FROM ai_insights WHERE message_id = %s", (event["message_id"],)
    ).fetchall()
    assert rows == [(stored,)]  # deliveries run concurrently: whichever came first, only one
    announced = db.execute(
        "SELECT count(*) FROM outbox WHERE payload->>'conversation_id' = %s"
        " AND payload->>'reason' = 'ai.completed'",
        (event["conversation_id"],),
    ).fetchone()[0]
    assert announced == 1


def test_messaging_regenerates_an_insight_as_a_new_revision(messaging) -> None:
    probe, db = messaging
    event = submitted()
    probe.publish("messages.submitted", event)
    wait_for(lambda: probe.state(conversation_key(event["conversation_id"])), what="read model")
    probe.publish("ai.completed", completion(event, 1, "first"))

    def insight() -> dict:
        model = probe.state(conversation_key(event["conversation_id"]))
        return model["messages"][0]["insight"]

    wait_for(lambda: insight()["status"] == "available", what="revision 1 stored")
    request = {
        "request_id": str(uuid.uuid4()),
        "message_id": event["message_id"],
        "conversation_id": event["conversation_id"],
        "requested_by": "demo",
        "requested_at": datetime.now(UTC).isoformat(),
    }
    probe.publish("insight.requested", request)
    probe.publish("insight.requested", request)  # redelivery: no second revision

    def analyses() -> list[dict]:
        return [
            e for e in probe.events("analysis.requested") if e["message_id"] == event["message_id"]
        ]

    (analysis,) = wait_for(analyses, what="analysis.requested")
    assert analysis["revision"] == 2 and analysis["requested_by"] == "demo"
    assert analysis["body"] == event["body"] and analysis["seq"] == 1
    shown = wait_for(lambda: (lambda i: i if i["revision"] == 2 else None)(insight()), what="rev 2")
    assert shown["status"] == "processing" and shown["summary"] is None

    probe.publish("ai.completed", completion(event, 1, "stale"))  # a late revision-1 answer
    probe.publish("ai.completed", completion(event, 2, "second"))
    final = wait_for(lambda: (lambda i: i if i["status"] == "available" else None)(insight()))
    assert (final["summary"], final["revision"], final["trace_id"]) == ("second", 2, "ab" * 16)
    wait_for(lambda: probe.acked("insight.requested", "messaging"), what="requests acked")
    wait_for(lambda: probe.acked("ai.completed", "messaging"), what="completions acked")
    assert db.execute(
        "SELECT summary, revision, requested_by FROM ai_insights WHERE message_id = %s",
        (event["message_id"],),
    ).fetchall() == [("second", 2, "demo")]
    assert len(analyses()) == 1


def test_messaging_sends_poison_to_the_dead_letter_topic(messaging) -> None:
    probe, db = messaging
    reply_to_nowhere = submitted(author_role="operator", author_id="demo")
    probe.publish("messages.submitted", reply_to_nowhere)
    probe.publish("messages.submitted", {"message_id": "not-a-uuid", "body": 42})
    dead = wait_for(
        lambda: (lambda d: d if len(d) >= 2 else None)(
            probe.events("messages.submitted.dead-letter")
        ),
        what="dead letters",
    )
    assert {d.get("message_id") for d in dead} >= {reply_to_nowhere["message_id"], "not-a-uuid"}
    assert (
        db.execute(
            "SELECT count(*) FROM messages WHERE message_id = %s", (reply_to_nowhere["message_id"],)
        ).fetchone()[0]
        == 0
    )
    # and the next good message still flows
    good = submitted()
    probe.publish("messages.submitted", good)
    wait_for(lambda: probe.state(conversation_key(good["conversation_id"])), what="good message")


@pytest.mark.parametrize("refused", [False, True], ids=["savepoints", "one-by-one"])
def test_a_bulk_delivery_stores_each_message_on_its_own(messaging, refused: bool) -> None:
    """One transaction stores a bulk delivery; a poison entry leaves the others stored, in
    order. An entry the database refuses (NUL in text, which the event model would never let
    through) aborts the pipeline: then each is stored alone and only that one is refused."""
    probe, _ = messaging
    conversation_id = str(uuid.uuid4())
    good = [submitted(conversation_id=conversation_id, body=f"part {i}") for i in range(3)]
    nowhere = submitted(author_role="operator", author_id="demo")
    nul = MessageSubmitted.model_validate(submitted()).model_copy(update={"body": "a\x00b"})
    events = [
        MessageSubmitted.model_validate(good[0]),
        MessageSubmitted.model_validate(nowhere),
        MessageSubmitted.model_validate(good[1]),
        *([nul] if refused else []),
        MessageSubmitted.model_validate(good[2]),
        MessageSubmitted.model_validate(good[0]),  # a redelivery in the same batch
    ]

    async def store() -> list:
        url = probe.stack.postgres.url
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await store_messages(conn, [Entry(e, Context()) for e in events])

    outcomes = asyncio.run(store())
    kinds = [type(o).__name__ for o in outcomes]
    assert kinds == [
        "MessageCreated",
        "PoisonError",
        "MessageCreated",
        *(["PoisonError"] if refused else []),
        "MessageCreated",
        "NoneType",
    ]
    assert [o.seq for o in outcomes if isinstance(o, MessageCreated)] == [1, 2, 3]
    if refused:
        assert "database refused" in str(outcomes[3])
    model = wait_for(
        lambda: (lambda m: m if m and len(m["messages"]) == 3 else None)(
            probe.state(conversation_key(conversation_id))
        ),
        what="the conversation with its three messages",
    )
    assert [m["body"] for m in model["messages"]] == ["part 0", "part 1", "part 2"]


# ---------------------------------------------------------------------------- ai-worker


@pytest.fixture(scope="module")
def worker(output_dir, fake_ollama):
    # the intent step on, as in make run: the insight's intent is its, not the stand-in's
    examples = write_training_examples(output_dir / "int-ai-worker-examples.jsonl")
    stack = start_stack(
        output_dir,
        "int-ai-worker",
        fake_ollama,
        services=("ai-worker",),
        env={"AI_INTENT_EXAMPLES": str(examples)},
    )
    try:
        yield Probe(stack, "ai-worker")
    finally:
        stack.stop()


def created(**fields: object) -> dict:
    return {**submitted(**fields), "seq": 1, "created_at": datetime.now(UTC).isoformat()}


def completions(probe: Probe, message_id: str) -> list[dict]:
    return [e for e in probe.events("ai.completed") if e["message_id"] == message_id]


def test_worker_analyses_customer_messages_once(worker, fake_ollama) -> None:
    event = created(body="How can I receive a virtual card?")
    calls_before = sum(fake_ollama.stats()["calls"].values())
    worker.publish("message.created", event)
    (done,) = wait_for(lambda: completions(worker, event["message_id"]), what="ai.completed")
    assert done["status"] == "available"
    assert done["intent"] == "getting_virtual_card"
    assert done["model"] == "fake-insight:1b" and done["duration_ms"] >= 0
    worker.publish("message.created", event)  # redelivery: republished from the cache
    wait_for(lambda: len(completions(worker, event["message_id"])) == 2, what="republish")
    assert completions(worker, event["message_id"])[1] == done
    assert sum(fake_ollama.stats()["calls"].values()) == calls_before + 1


def test_worker_analyses_a_requested_revision_afresh(worker, fake_ollama) -> None:
    event = created(body="How can I receive a virtual card?")
    worker.publish("message.created", event)
    (first,) = wait_for(lambda: completions(worker, event["message_id"]), what="revision 1")
    calls_before = sum(fake_ollama.stats()["calls"].values())
    worker.publish("analysis.requested", {**event, "revision": 2, "requested_by": "demo"})
    second = wait_for(
        lambda: [c for c in completions(worker, event["message_id"]) if c["revision"] == 2],
        what="revision 2",
    )
    assert first["revision"] == 1 and second[0]["status"] == "available"
    assert sum(fake_ollama.stats()["calls"].values()) == calls_before + 1  # not the cache


def test_worker_streams_the_reply_in_batches_then_publishes_the_insight(worker) -> None:
    event = created(body="[[fake:stream]] How can I receive a virtual card?")
    worker.publish("message.created", event)
    (done,) = wait_for(lambda: completions(worker, event["message_id"]), what="ai.completed")
    assert done["status"] == "available"
    deltas = [d for d in worker.events("insight.delta") if d["message_id"] == event["message_id"]]
    reply = done["suggested_reply"]
    words = len(reply.split())
    # the stand-in writes one word per 50 ms; batches of 100 ms carry about two each
    assert 3 <= len(deltas) < words, (len(deltas), words)
    assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
    texts = [d["text"] for d in deltas]
    assert all(reply.startswith(t) for t in texts) and texts == sorted(texts, key=len)
    assert {(d["conversation_id"], d["revision"]) for d in deltas} == {
        (event["conversation_id"], 1)
    }


def test_a_broken_stream_ends_unavailable(worker) -> None:
    event = created(body="[[fake:broken]] How can I receive a virtual card?")
    worker.publish("message.created", event)
    (done,) = wait_for(lambda: completions(worker, event["message_id"]), what="ai.completed")
    assert done["status"] == "unavailable" and done["suggested_reply"] is None
    assert done["error"] == "the model's answer broke off before it was complete"
    deltas = [d for d in worker.events("insight.delta") if d["message_id"] == event["message_id"]]
    assert deltas  # it had started writing, and the partial text was never the insight


@pytest.mark.parametrize(
    ("body", "strategy", "article", "says"),
    [
        (
            "When will my new card arrive?",
            "short_answer",
            "card-arrival",
            "Here is the short answer.",
        ),
        (
            "I topped up with my card yesterday. The money left my bank but my balance has "
            "not changed. What happened?",
            "careful_analysis",
            "top-up-by-card",
            "I am looking into this for you",
        ),
        (
            "There is a card payment I don't recognise, I think it is fraud.",
            "escalation",
            "card-payment-not-recognised",
            "A specialist team will take over your case.",
        ),
    ],
)
def test_worker_routes_then_grounds_the_reply_on_the_knowledge_base(
    worker, fake_ollama, body, strategy, article, says
) -> None:
    """The routing step picks the strategy; the model calls search_knowledge_base, gets the
    articles as tool messages and answers from them; the insight records both."""
    event = created(body=body)
    worker.publish("message.created", event)
    (done,) = wait_for(lambda: completions(worker, event["message_id"]), what="ai.completed")
    assert done["status"] == "available"
    assert done["strategy"] == strategy
    assert article in done["articles"] and len(done["articles"]) <= 3
    assert says in done["suggested_reply"]
    assert "Our help article" in done["suggested_reply"]  # it answered from the tool result
    assert fake_ollama.stats()["tool_rounds"][body] == 1


def test_worker_skips_operator_messages(worker) -> None:
    operator = created(author_role="operator", author_id="demo")
    marker = created()
    worker.publish("message.created", operator)
    worker.publish("message.created", marker)
    wait_for(lambda: completions(worker, marker["message_id"]), what="marker analysed")
    assert completions(worker, operator["message_id"]) == []


def test_unreachable_ollama_means_unavailable(worker_without_ollama) -> None:
    event = created()
    worker_without_ollama.publish("message.created", event)
    (done,) = wait_for(
        lambda: completions(worker_without_ollama, event["message_id"]), what="ai.completed"
    )
    assert done["status"] == "unavailable"
    assert "unreachable" in done["error"]


# ---------------------------------------------------------------------------- gateway


@pytest.fixture(scope="module")
def gateway(output_dir, fake_ollama):
    stack = start_stack(output_dir, "int-gateway", fake_ollama, services=("gateway",))
    try:
        from devstack.fixtures import InboxClient

        yield Probe(stack, "gateway"), InboxClient(stack)
    finally:
        stack.stop()


def read_model(conversation_id: str, version: int) -> Conversation:
    now = datetime.now(UTC)
    summary = ConversationSummary(
        conversation_id=conversation_id,
        customer_id="cust-9",
        last_message_preview="Hi",
        last_author_role="customer",
        last_activity_at=now,
        message_count=1,
        version=version,
        awaiting_reply=True,
    )
    return Conversation(
        conversation_id=conversation_id,
        customer_id="cust-9",
        created_at=now,
        last_activity_at=now,
        version=version,
        summary=summary,
        messages=[],
    )


def test_gateway_serves_read_models_from_the_state_store(gateway) -> None:
    probe, client = gateway
    conversation_id = str(uuid.uuid4())
    model = read_model(conversation_id, 1)
    response = probe.dapr.post(
        "/state/inbox-state",
        json=[{"key": conversation_key(conversation_id), "value": model.model_dump(mode="json")}],
    )
    assert response.status_code == 204, response.text
    got = client.http.get(f"/api/v1/conversations/{conversation_id}", headers=client.auth)
    assert got.status_code == 200
    assert Conversation.model_validate(got.json()) == model


def test_gateway_publishes_submitted_messages(gateway) -> None:
    probe, client = gateway
    accepted = client.send_customer("Where is my refund?", subject="Refund")
    (event,) = wait_for(
        lambda: [
            e
            for e in probe.events("messages.submitted")
            if e["message_id"] == accepted["message_id"]
        ],
        what="messages.submitted",
    )
    assert event["author_role"] == "customer" and event["author_id"] == "cust-test"
    assert event["subject"] == "Refund" and event["body"] == "Where is my refund?"


def test_gateway_pushes_conversation_updates_to_sockets(gateway) -> None:
    probe, client = gateway
    conversation_id = str(uuid.uuid4())
    probe.dapr.post(
        "/state/inbox-state",
        json=[
            {
                "key": conversation_key(conversation_id),
                "value": read_model(conversation_id, 4).model_dump(mode="json"),
            }
        ],
    )

    async def scenario() -> dict:
        async with websockets.connect(client.ws_url, subprotocols=client.ws_subprotocols) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            await asyncio.to_thread(
                probe.publish,
                "conversation.updated",
                {"conversation_id": conversation_id, "version": 4, "reason": "ai.completed"},
            )
            async with asyncio.timeout(30):
                while True:
                    push = json.loads(await ws.recv())
                    if push.get("conversation_id") == conversation_id:
                        return push

    push = asyncio.run(scenario())
    assert push["type"] == "conversation.updated" and push["version"] == 4
    assert push["conversation"]["customer_id"] == "cust-9"


# ---------------------------------------------------------------------------- in-memory broker


def test_in_memory_broker_serves_one_service_alone(output_dir, fake_ollama) -> None:
    """``dapr-components/pubsub/in-memory``: messaging with its sidecar and nothing else.
    An event published through that sidecar is delivered to messaging and stored; a poison
    event goes to the dead-letter topic and is recorded, all inside the one sidecar."""
    stack = start_stack(
        output_dir,
        "int-in-memory",
        fake_ollama,
        services=("messaging",),
        broker="in-memory",
        state_store="postgresql",
    )
    try:
        dapr = httpx.Client(
            base_url=f"http://127.0.0.1:{stack.services['messaging'].ports.http}/v1.0",
            headers={"dapr-api-token": stack.dapr_api_token},
        )
        event = submitted()
        assert dapr.post("/publish/inbox-pubsub/messages.submitted", json=event).is_success
        poison = {"message_id": "not-a-uuid"}
        assert dapr.post("/publish/inbox-pubsub/messages.submitted", json=poison).is_success
        with psycopg.connect(stack.postgres.url, autocommit=True) as db:
            wait_for(
                lambda: db.execute(
                    "SELECT 1 FROM messages WHERE message_id = %s", (event["message_id"],)
                ).fetchone(),
                what="the message stored",
            )
            letter = wait_for(
                lambda: db.execute(
                    "SELECT topic, data FROM dead_letters WHERE data = %s::jsonb",
                    (json.dumps(poison),),
                ).fetchone(),
                what="the dead letter recorded",
            )
            assert letter == ("messages.submitted", poison)
        # and the read model went to the PostgreSQL state store through the same sidecar
        key = conversation_key(event["conversation_id"])
        state = wait_for(
            lambda: (r := dapr.get(f"/state/inbox-state/{key}")).status_code == 200 and r.json(),
            what="the read model in the state store",
        )
        assert state["version"] == 1
    finally:
        stack.stop()


def test_in_memory_broker_refuses_the_whole_inbox(output_dir, fake_ollama) -> None:
    from devstack.procs import StartError

    with pytest.raises(StartError, match="delivers only within one sidecar"):
        start_stack(output_dir, "int-in-memory-refused", fake_ollama, broker="in-memory")

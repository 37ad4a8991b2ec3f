"""messaging.store on PostgreSQL alone: a message stored once and announced in the same
transaction, and one refused entry of a bulk delivery leaving the others stored."""

import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from inbox_common.errors import PoisonError
from inbox_common.events import (
    TOPIC_CONVERSATION_UPDATED,
    TOPIC_MESSAGE_CREATED,
    AuthorRole,
    MessageCreated,
    MessageSubmitted,
)
from inbox_common.subscriptions import Entry
from messaging.store import store_messages
from opentelemetry.context import Context


def submitted(conversation_id: uuid.UUID, body: str, role: AuthorRole, author: str) -> Entry:
    event = MessageSubmitted(
        message_id=uuid.uuid4(),
        conversation_id=conversation_id,
        author_role=role,
        author_id=author,
        body=body,
        submitted_at=datetime.now(UTC),
    )
    return Entry(event=event, parent=Context())


@pytest.fixture
async def conn(database_url: str):
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
        yield c


async def topics_of(conn, message_id: uuid.UUID) -> list[str]:
    rows = await conn.execute(
        "SELECT topic FROM outbox WHERE payload->>'message_id' = %s OR"
        " (topic = %s AND payload->>'conversation_id' ="
        " (SELECT conversation_id::text FROM messages WHERE message_id = %s)) ORDER BY id",
        (str(message_id), TOPIC_CONVERSATION_UPDATED, message_id),
    )
    return [topic for (topic,) in await rows.fetchall()]


async def test_a_message_is_stored_once_and_announced(conn) -> None:
    entry = submitted(uuid.uuid4(), "Where is my card?", AuthorRole.CUSTOMER, "cust-1")
    first, again = await store_messages(conn, [entry, entry])  # a redelivery in the batch
    assert isinstance(first, MessageCreated) and first.seq == 1
    assert again is None
    (count,) = await (
        await conn.execute(
            "SELECT count(*) FROM messages WHERE message_id = %s", (entry.event.message_id,)
        )
    ).fetchone()
    assert count == 1
    # the message and the events announcing it committed together
    assert await topics_of(conn, entry.event.message_id) == [
        TOPIC_MESSAGE_CREATED,
        TOPIC_CONVERSATION_UPDATED,
    ]


async def test_one_refused_entry_leaves_the_others_stored(conn) -> None:
    conversation_id = uuid.uuid4()
    first = submitted(conversation_id, "My transfer is late.", AuthorRole.CUSTOMER, "cust-2")
    orphan = submitted(uuid.uuid4(), "Hello?", AuthorRole.OPERATOR, "alice")  # no conversation
    foreign = submitted(conversation_id, "Not my thread.", AuthorRole.CUSTOMER, "cust-other")
    second = submitted(conversation_id, "It was sent Monday.", AuthorRole.CUSTOMER, "cust-2")
    outcomes = await store_messages(conn, [first, orphan, foreign, second])
    assert isinstance(outcomes[0], MessageCreated) and outcomes[0].seq == 1
    assert isinstance(outcomes[1], PoisonError) and "does not exist" in str(outcomes[1])
    assert isinstance(outcomes[2], PoisonError)
    assert isinstance(outcomes[3], MessageCreated) and outcomes[3].seq == 2
    rows = await conn.execute(
        "SELECT body FROM messages WHERE conversation_id = %s ORDER BY seq", (conversation_id,)
    )
    assert [body for (body,) in await rows.fetchall()] == [
        "My transfer is late.",
        "It was sent Monday.",
    ]

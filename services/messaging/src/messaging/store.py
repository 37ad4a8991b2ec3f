"""Writes to the system of record. Each function is one transaction that also fills the outbox.

All SQL is parameterized. Functions take an open psycopg ``AsyncConnection`` in autocommit mode
and open their own transaction, so a change and the events announcing it commit together.
"""

from inbox_common.errors import PoisonError
from inbox_common.events import (
    TOPIC_ANALYSIS_REQUESTED,
    TOPIC_CONVERSATION_UPDATED,
    TOPIC_MESSAGE_CREATED,
    AiCompleted,
    AnalysisRequested,
    AuthorRole,
    ConversationUpdated,
    InsightRequested,
    MessageCreated,
    MessageSubmitted,
)
from inbox_common.subscriptions import DeadLetter
from opentelemetry import propagate
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb


async def store_message(conn: AsyncConnection, event: MessageSubmitted) -> MessageCreated | None:
    """Store a submitted message once, by ``message_id``.

    A customer message to an unknown conversation opens it; its insight starts ``processing``.

    Returns:
        The stored message, or ``None`` when ``message_id`` was already stored (a redelivery).

    Raises:
        PoisonError: an operator reply to a conversation that does not exist.
        psycopg.OperationalError: the database is unreachable (the caller retries).
    """
    async with conn.transaction():
        if event.author_role is AuthorRole.CUSTOMER:
            await conn.execute(
                "INSERT INTO conversations (conversation_id, customer_id, subject)"
                " VALUES (%s, %s, %s) ON CONFLICT (conversation_id) DO NOTHING",
                (event.conversation_id, event.author_id, event.subject),
            )
        cur = await conn.execute(
            "SELECT message_count FROM conversations WHERE conversation_id = %s FOR UPDATE",
            (event.conversation_id,),
        )
        row = await cur.fetchone()
        if row is None:
            raise PoisonError(f"conversation {event.conversation_id} does not exist")
        cur = await conn.execute(
            "INSERT INTO messages (message_id, conversation_id, seq, author_role, author_id,"
            " body, submitted_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (message_id) DO NOTHING RETURNING seq, created_at",
            (
                event.message_id,
                event.conversation_id,
                row[0] + 1,
                event.author_role.value,
                event.author_id,
                event.body,
                event.submitted_at,
            ),
        )
        inserted = await cur.fetchone()
        if inserted is None:
            return None
        seq, created_at = inserted
        cur = await conn.execute(
            "UPDATE conversations SET message_count = %s, last_activity_at = %s,"
            " version = version + 1 WHERE conversation_id = %s RETURNING version",
            (seq, created_at, event.conversation_id),
        )
        (version,) = await cur.fetchone()  # type: ignore[misc]
        if event.author_role is AuthorRole.CUSTOMER:
            await conn.execute(
                "INSERT INTO ai_insights (message_id, status) VALUES (%s, 'processing')",
                (event.message_id,),
            )
        created = MessageCreated(**event.model_dump(), seq=seq, created_at=created_at)
        updated = ConversationUpdated(
            conversation_id=event.conversation_id, version=version, reason="message.created"
        )
        await _enqueue(conn, TOPIC_MESSAGE_CREATED, created)
        await _enqueue(conn, TOPIC_CONVERSATION_UPDATED, updated)
        return created


async def store_insight(conn: AsyncConnection, event: AiCompleted) -> bool:
    """Store the first completion of the current revision of a message's insight; later
    ones, and completions of an older revision, are duplicates.

    Returns:
        ``True`` when stored, ``False`` when that revision was already complete or superseded.

    Raises:
        PoisonError: no customer message with this ``message_id`` exists.
    """
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE ai_insights SET status = %s, intent = %s, summary = %s,"
            " suggested_reply = %s, model = %s, duration_ms = %s, error = %s, trace_id = %s,"
            " strategy = %s, articles = %s, completed_at = now()"
            " WHERE message_id = %s AND status = 'processing' AND revision = %s"
            " RETURNING message_id",
            (
                event.status.value,
                event.intent,
                event.summary,
                event.suggested_reply,
                event.model,
                event.duration_ms,
                event.error,
                event.trace_id,
                event.strategy.value if event.strategy else None,
                event.articles,
                event.message_id,
                event.revision,
            ),
        )
        if await cur.fetchone() is None:
            cur = await conn.execute(
                "SELECT 1 FROM ai_insights WHERE message_id = %s", (event.message_id,)
            )
            if await cur.fetchone() is None:
                raise PoisonError(f"no customer message {event.message_id} awaits an insight")
            return False
        cur = await conn.execute(
            "UPDATE conversations SET version = version + 1 WHERE conversation_id ="
            " (SELECT conversation_id FROM messages WHERE message_id = %s)"
            " RETURNING conversation_id, version",
            (event.message_id,),
        )
        conversation_id, version = await cur.fetchone()  # type: ignore[misc]
        updated = ConversationUpdated(
            conversation_id=conversation_id, version=version, reason="ai.completed"
        )
        await _enqueue(conn, TOPIC_CONVERSATION_UPDATED, updated)
        return True


async def request_insight(
    conn: AsyncConnection, event: InsightRequested
) -> AnalysisRequested | None:
    """Start a new revision of a customer message's insight, unless one is in progress.

    The insight goes back to ``processing`` (its fields cleared) and ``analysis.requested``
    is enqueued with the message and the new revision.

    Returns:
        The analysis requested, or ``None`` when the request was already handled (same
        ``request_id``) or an analysis of this message is still in progress.

    Raises:
        PoisonError: no customer message with this id exists in this conversation.
    """
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT m.seq, m.author_id, m.body, m.submitted_at, m.created_at, c.subject,"
            " i.status, i.revision, i.request_id"
            " FROM messages m JOIN ai_insights i USING (message_id)"
            " JOIN conversations c USING (conversation_id)"
            " WHERE m.message_id = %s AND m.conversation_id = %s FOR UPDATE OF i",
            (event.message_id, event.conversation_id),
        )
        row = await cur.fetchone()
        if row is None:
            raise PoisonError(
                f"no customer message {event.message_id} in conversation {event.conversation_id}"
            )
        seq, author_id, body, submitted_at, created_at, subject, status, revision, request = row
        if request == event.request_id or status == "processing":
            return None
        await conn.execute(
            "UPDATE ai_insights SET status = 'processing', revision = %s, request_id = %s,"
            " requested_by = %s, intent = NULL, summary = NULL, suggested_reply = NULL,"
            " model = NULL, duration_ms = NULL, error = NULL, trace_id = NULL,"
            " strategy = NULL, articles = '{}', completed_at = NULL WHERE message_id = %s",
            (revision + 1, event.request_id, event.requested_by, event.message_id),
        )
        cur = await conn.execute(
            "UPDATE conversations SET version = version + 1 WHERE conversation_id = %s"
            " RETURNING version",
            (event.conversation_id,),
        )
        (version,) = await cur.fetchone()  # type: ignore[misc]
        analysis = AnalysisRequested(
            message_id=event.message_id,
            conversation_id=event.conversation_id,
            author_role=AuthorRole.CUSTOMER,
            author_id=author_id,
            body=body,
            subject=subject,
            submitted_at=submitted_at,
            seq=seq,
            created_at=created_at,
            revision=revision + 1,
            requested_by=event.requested_by,
        )
        updated = ConversationUpdated(
            conversation_id=event.conversation_id, version=version, reason="insight.requested"
        )
        await _enqueue(conn, TOPIC_ANALYSIS_REQUESTED, analysis)
        await _enqueue(conn, TOPIC_CONVERSATION_UPDATED, updated)
        return analysis


async def _enqueue(
    conn: AsyncConnection, topic: str, event: MessageCreated | ConversationUpdated
) -> None:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)  # the current span's W3C trace context, if any
    await conn.execute(
        "INSERT INTO outbox (topic, payload, traceparent) VALUES (%s, %s, %s)",
        (topic, Jsonb(event.model_dump(mode="json")), carrier.get("traceparent")),
    )


async def store_dead_letter(conn: AsyncConnection, letter: DeadLetter) -> bool:
    """Record a dead letter once per ``(topic, event_id)``.

    Returns:
        ``True`` when recorded, ``False`` for a redelivery of one already recorded.

    Raises:
        psycopg.OperationalError: the database is unreachable (the caller retries).
    """
    cur = await conn.execute(
        "INSERT INTO dead_letters (event_id, topic, data) VALUES (%s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        (letter.event_id, letter.topic, Jsonb(letter.data)),
    )
    return cur.rowcount == 1

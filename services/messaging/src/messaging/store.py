"""Writes to the system of record. Each function is one transaction that also fills the outbox.

All SQL is parameterized. Functions take an open psycopg ``AsyncConnection`` in autocommit mode
and open their own transaction, so a change and the events announcing it commit together. The
two writes on every message's path (:func:`store_messages`, :func:`store_insights`) take a
bulk delivery's events in one transaction, each in a savepoint of its own, and run in libpq's
pipeline mode (https://www.psycopg.org/psycopg3/docs/advanced/pipeline.html): statements
whose result is not read at once (event log, outbox, insight row) travel with the next one
that is, or with the commit, so a message costs 2 round trips and a share of one commit.
"""

import json
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar
from uuid import UUID, uuid5

import psycopg
from inbox_common.errors import PoisonError
from inbox_common.events import (
    SUMMARY_MAX_CHARS,
    SUMMARY_MAX_MESSAGES,
    TOPIC_AI_COMPLETED,
    TOPIC_ANALYSIS_REQUESTED,
    TOPIC_CONVERSATION_UPDATED,
    TOPIC_MESSAGE_CREATED,
    TOPIC_MESSAGES_SUBMITTED,
    TOPIC_SUMMARY_REQUESTED,
    AiCompleted,
    AnalysisRequested,
    AssistantMode,
    AssistantState,
    AuthorRole,
    ConversationChanged,
    ConversationStatus,
    ConversationUpdated,
    InsightRequested,
    MessageCreated,
    MessageSubmitted,
    SummaryCompleted,
    SummaryRequested,
    TranscriptLine,
)
from inbox_common.subscriptions import DeadLetter, Entry, Outcome
from opentelemetry import propagate
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from pydantic import BaseModel

INITIAL_ASSISTANT = {
    AssistantMode.OFF: AssistantState.OFF.value,
    AssistantMode.SUGGEST: None,
    AssistantMode.ANSWER: AssistantState.ANSWERING.value,
}
"""``conversations.assistant`` of a conversation opened on a channel in each mode."""


E = TypeVar("E", bound=BaseModel)
R = TypeVar("R")


async def _each(
    conn: AsyncConnection,
    topic: str,
    entries: Sequence[Entry[E]],
    store: Callable[[AsyncConnection, E], Awaitable[R]],
) -> list[R | Outcome]:
    """``store`` each entry's event, in one transaction: each entry in a savepoint, so one
    refused (:class:`PoisonError`) leaves the others; each in its own ``process <topic>``
    span, so what it enqueues carries its own trace. A statement the database refuses
    (``DataError``, ``IntegrityError``) aborts the pipeline, whose errors are not tied to the
    statement that made them: then every entry is stored again alone, and only the one
    refused is a :class:`PoisonError`.

    Returns:
        Per entry, in order: what ``store`` returned, or the :class:`PoisonError` it raised.

    Raises:
        psycopg.OperationalError: the database is unreachable (the caller retries them all).
    """
    refused = (psycopg.DataError, psycopg.IntegrityError)
    if len(entries) > 1:
        try:
            async with conn.pipeline(), conn.transaction():
                outcomes: list[R | Outcome] = []
                for entry in entries:
                    with entry.span(topic):
                        try:
                            async with conn.transaction():
                                outcomes.append(await store(conn, entry.event))
                        except PoisonError as exc:
                            outcomes.append(exc)
                return outcomes
        except refused:
            pass  # the entries are stored again one by one below
    outcomes = []
    for entry in entries:
        with entry.span(topic):
            try:
                async with conn.pipeline(), conn.transaction():
                    outcomes.append(await store(conn, entry.event))
            except PoisonError as exc:
                outcomes.append(exc)
            except refused as exc:
                outcomes.append(PoisonError(f"database refused the event: {exc}"))
    return outcomes


async def store_messages(
    conn: AsyncConnection, entries: Sequence[Entry[MessageSubmitted]]
) -> list[MessageCreated | None | Outcome]:
    """Store submitted messages (see :func:`_store_message`), one transaction for them all.

    Returns:
        Per entry, in order: the stored message, ``None`` for a redelivery, or the
        :class:`PoisonError` that refused it.

    Raises:
        psycopg.OperationalError: the database is unreachable (the caller retries).
    """
    return await _each(conn, TOPIC_MESSAGES_SUBMITTED, entries, _store_message)


async def store_insights(
    conn: AsyncConnection, entries: Sequence[Entry[AiCompleted]]
) -> list[bool | Outcome]:
    """Store insights (see :func:`_store_insight`), one transaction for them all.

    Returns:
        Per entry, in order: ``True`` stored, ``False`` a duplicate, or the
        :class:`PoisonError` that refused it.

    Raises:
        psycopg.OperationalError: the database is unreachable (the caller retries).
    """
    return await _each(conn, TOPIC_AI_COMPLETED, entries, _store_insight)


async def _store_message(conn: AsyncConnection, event: MessageSubmitted) -> MessageCreated | None:
    """Store a submitted message once, by ``message_id`` (in the caller's transaction).

    A customer message to an unknown conversation opens it, with the AI as the channel's
    ``assistant_mode`` says; its insight starts ``processing`` and ``message.created`` goes to
    the ai-worker, unless the conversation is without AI (``off``).
    A customer message to a ``pending`` or ``resolved`` conversation makes it ``open`` again.
    The message (and a reopen) goes to the event log. A conversation belongs to the customer
    who opened it: a customer message from anyone else is refused, in this transaction, so it
    is neither stored nor reopens anything (the gateway refuses it first, with 409).

    Returns:
        The stored message, or ``None`` when ``message_id`` was already stored (a redelivery).

    Raises:
        PoisonError: an operator reply to a conversation that does not exist, or a customer
            message to a conversation of another customer.
        psycopg.OperationalError: the database is unreachable (the caller retries).
    """
    if event.author_role is AuthorRole.ASSISTANT:
        raise PoisonError("assistant messages are stored from ai.completed, not submitted")
    if event.author_role is AuthorRole.CUSTOMER:
        await conn.execute(
            "INSERT INTO conversations (conversation_id, customer_id, subject, assistant)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (conversation_id) DO NOTHING",
            (
                event.conversation_id,
                event.author_id,
                event.subject,
                INITIAL_ASSISTANT[event.assistant_mode],
            ),
        )
    cur = await conn.execute(
        "SELECT message_count, status, customer_id, assistant FROM conversations"
        " WHERE conversation_id = %s FOR UPDATE",
        (event.conversation_id,),
    )
    row = await cur.fetchone()
    if row is None:
        raise PoisonError(f"conversation {event.conversation_id} does not exist")
    status, customer_id, assistant = row[1], row[2], row[3]
    if event.author_role is AuthorRole.CUSTOMER and event.author_id != customer_id:
        raise PoisonError(
            f"customer {event.author_id!r} wrote to conversation {event.conversation_id}"
            " of another customer"
        )
    # one round trip: the message, and the conversation counting it (none if a duplicate)
    cur = await conn.execute(
        "WITH m AS (INSERT INTO messages (message_id, conversation_id, seq, author_role,"
        " author_id, body, submitted_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (message_id) DO NOTHING RETURNING seq, created_at)"
        " UPDATE conversations c SET message_count = m.seq, last_activity_at = m.created_at,"
        " version = c.version + 1 FROM m WHERE c.conversation_id = %s"
        " RETURNING m.seq, m.created_at, c.version",
        (
            event.message_id,
            event.conversation_id,
            row[0] + 1,
            event.author_role.value,
            event.author_id,
            event.body,
            event.submitted_at,
            event.conversation_id,
        ),
    )
    inserted = await cur.fetchone()
    if inserted is None:
        return None
    seq, created_at, version = inserted
    await log_event(
        conn,
        event.conversation_id,
        "message",
        event.author_id,
        {"message_id": str(event.message_id), "seq": seq, "author_role": event.author_role},
    )
    if event.author_role is AuthorRole.CUSTOMER:
        if assistant != AssistantState.OFF:
            await conn.execute(
                "INSERT INTO ai_insights (message_id, status, requested_at)"
                " VALUES (%s, 'processing', now())",
                (event.message_id,),
            )
        if status != ConversationStatus.OPEN:
            # the customer wrote again: the conversation needs an operator once more
            await conn.execute(
                "UPDATE conversations SET status = 'open', resolved_at = NULL"
                " WHERE conversation_id = %s",
                (event.conversation_id,),
            )
            await log_event(
                conn,
                event.conversation_id,
                "status",
                event.author_id,
                {"from": status, "to": "open", "reason": "customer message"},
            )
    elif assistant == AssistantState.ANSWERING:
        assistant = await hand_off(
            conn, event.conversation_id, "an operator replied", event.author_id
        )
    created = MessageCreated(
        **event.model_dump(), seq=seq, created_at=created_at, assistant=assistant
    )
    updated = ConversationUpdated(
        conversation_id=event.conversation_id, version=version, reason="message.created"
    )
    if event.author_role is AuthorRole.CUSTOMER and assistant != AssistantState.OFF:
        await enqueue(conn, TOPIC_MESSAGE_CREATED, created)
    await enqueue(conn, TOPIC_CONVERSATION_UPDATED, updated)
    return created


async def _store_insight(conn: AsyncConnection, event: AiCompleted) -> bool:
    """Store the first completion of the current revision of a message's insight; later
    ones, and completions of an older revision, are duplicates (in the caller's
    transaction).

    Returns:
        ``True`` when stored, ``False`` when that revision was already complete or superseded.

    Raises:
        PoisonError: no customer message with this ``message_id`` exists.
    """
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
        " RETURNING conversation_id, version, assistant",
        (event.message_id,),
    )
    conversation_id, version, assistant = await cur.fetchone()  # type: ignore[misc]
    if assistant == AssistantState.ANSWERING:
        if event.handoff:
            await hand_off(conn, conversation_id, event.handoff, None)
        elif event.answered and event.suggested_reply:
            await _store_answer(conn, conversation_id, event)
    outcome = {"intent": event.intent} if event.intent else {"error": event.error}
    await log_event(
        conn,
        conversation_id,
        "insight",
        None,
        {
            "message_id": str(event.message_id),
            "revision": event.revision,
            "status": event.status,
            **outcome,
        },
    )
    updated = ConversationUpdated(
        conversation_id=conversation_id, version=version, reason="ai.completed"
    )
    await enqueue(conn, TOPIC_CONVERSATION_UPDATED, updated)
    return True


ANSWER_NAMESPACE = UUID("0b1f6a7e-58c4-4bb4-9d6e-6f1d7d2a3c11")
"""uuid5 namespace of the assistant's answers: one answer id per customer message and
revision, so a redelivered ``ai.completed`` stores it once."""


async def hand_off(
    conn: AsyncConnection, conversation_id: UUID, reason: str, actor: str | None
) -> AssistantState | None:
    """Move an ``answering`` conversation to ``handed_off`` for ``reason`` (logged as a
    ``handoff`` event by ``actor``, ``None`` for the assistant); other conversations are left
    as they are. Returns the conversation's assistant state afterwards."""
    cur = await conn.execute(
        "UPDATE conversations SET assistant = 'handed_off', handoff_reason = %s"
        " WHERE conversation_id = %s AND assistant = 'answering' RETURNING 1",
        (reason[:300], conversation_id),
    )
    if await cur.fetchone() is None:
        cur = await conn.execute(
            "SELECT assistant FROM conversations WHERE conversation_id = %s", (conversation_id,)
        )
        row = await cur.fetchone()
        return AssistantState(row[0]) if row and row[0] else None
    await log_event(conn, conversation_id, "handoff", actor, {"reason": reason[:300]})
    return AssistantState.HANDED_OFF


async def _store_answer(conn: AsyncConnection, conversation_id: UUID, event: AiCompleted) -> None:
    """The insight's suggested reply as the assistant's message, next in the conversation."""
    answer_id = uuid5(ANSWER_NAMESPACE, f"{event.message_id}:{event.revision}")
    cur = await conn.execute(
        "UPDATE conversations SET message_count = message_count + 1, last_activity_at = now()"
        " WHERE conversation_id = %s RETURNING message_count",
        (conversation_id,),
    )
    (seq,) = await cur.fetchone()  # type: ignore[misc]
    cur = await conn.execute(
        "INSERT INTO messages (message_id, conversation_id, seq, author_role, author_id,"
        " body, submitted_at) VALUES (%s, %s, %s, 'assistant', %s, %s, now())"
        " ON CONFLICT (message_id) DO NOTHING RETURNING seq",
        (answer_id, conversation_id, seq, event.model or "assistant", event.suggested_reply),
    )
    if await cur.fetchone() is None:  # already answered: give the seq back
        await conn.execute(
            "UPDATE conversations SET message_count = message_count - 1 WHERE conversation_id = %s",
            (conversation_id,),
        )
        return
    await log_event(
        conn,
        conversation_id,
        "message",
        None,
        {"message_id": str(answer_id), "seq": seq, "author_role": AuthorRole.ASSISTANT},
    )


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
            " strategy = NULL, articles = '{}', completed_at = NULL, requested_at = now(),"
            " redeliveries = 0 WHERE message_id = %s",
            (revision + 1, event.request_id, event.requested_by, event.message_id),
        )
        cur = await conn.execute(
            "UPDATE conversations SET version = version + 1 WHERE conversation_id = %s"
            " RETURNING version",
            (event.conversation_id,),
        )
        (version,) = await cur.fetchone()  # type: ignore[misc]
        await log_event(
            conn,
            event.conversation_id,
            "insight",
            event.requested_by,
            {"message_id": str(event.message_id), "revision": revision + 1, "status": "requested"},
        )
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
        await enqueue(conn, TOPIC_ANALYSIS_REQUESTED, analysis)
        await enqueue(conn, TOPIC_CONVERSATION_UPDATED, updated)
        return analysis


async def change_conversation(
    conn: AsyncConnection, event: ConversationChanged
) -> ConversationUpdated | None:
    """Apply an operator's status and assignee change once, by ``request_id``.

    Each real change is written to the event log. Resolving counts a new resolution, sets
    ``resolved_at`` and, unless the conversation is without AI (``off``), starts its summary
    as ``processing`` and enqueues ``summary.requested``
    with the latest messages (at most ``SUMMARY_MAX_MESSAGES`` and ``SUMMARY_MAX_CHARS``);
    leaving ``resolved`` clears ``resolved_at``. The changes are applied in arrival order
    (the last one wins).

    Returns:
        The ``conversation.updated`` enqueued, or ``None`` for a redelivered request or one
        that changes nothing (it is still recorded as handled).

    Raises:
        PoisonError: the conversation does not exist.
    """
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT status, assignee, resolution, assistant FROM conversations"
            " WHERE conversation_id = %s FOR UPDATE",
            (event.conversation_id,),
        )
        row = await cur.fetchone()
        if row is None:
            raise PoisonError(f"conversation {event.conversation_id} does not exist")
        status, assignee, resolution, assistant = row
        cur = await conn.execute(
            "INSERT INTO conversation_changes (request_id, conversation_id) VALUES (%s, %s)"
            " ON CONFLICT (request_id) DO NOTHING",
            (event.request_id, event.conversation_id),
        )
        if cur.rowcount == 0:
            return None
        new_status = event.status.value if event.status is not None else status
        new_assignee = event.assignee if event.assignee_set else assignee
        if (new_status, new_assignee) == (status, assignee):
            return None
        if new_assignee != assignee:
            await log_event(
                conn,
                event.conversation_id,
                "assignment",
                event.changed_by,
                {"from": assignee, "to": new_assignee},
            )
            if new_assignee is not None:
                await hand_off(
                    conn,
                    event.conversation_id,
                    "an operator took the conversation",
                    event.changed_by,
                )
        summary = None
        if new_status != status:
            change = {"from": status, "to": new_status}
            await log_event(
                conn,
                event.conversation_id,
                "status",
                event.changed_by,
                change | {"reason": event.reason} if event.reason else change,
            )
            if new_status == ConversationStatus.RESOLVED:
                resolution += 1
                if assistant != AssistantState.OFF:
                    summary = await _summary_request(conn, event, resolution)
        cur = await conn.execute(
            "UPDATE conversations SET status = %s, assignee = %s, resolution = %s,"
            " resolved_at = CASE WHEN %s = 'resolved' THEN coalesce(resolved_at, %s) END,"
            " version = version + 1 WHERE conversation_id = %s RETURNING version",
            (
                new_status,
                new_assignee,
                resolution,
                new_status,
                event.changed_at,
                event.conversation_id,
            ),
        )
        (version,) = await cur.fetchone()  # type: ignore[misc]
        if summary is not None:
            await conn.execute(
                "INSERT INTO resolution_summaries (conversation_id, resolution, status,"
                " requested_by) VALUES (%s, %s, 'processing', %s)",
                (event.conversation_id, resolution, event.changed_by),
            )
            await enqueue(conn, TOPIC_SUMMARY_REQUESTED, summary)
        updated = ConversationUpdated(
            conversation_id=event.conversation_id, version=version, reason="conversation.changed"
        )
        await enqueue(conn, TOPIC_CONVERSATION_UPDATED, updated)
        return updated


async def _summary_request(
    conn: AsyncConnection, event: ConversationChanged, resolution: int
) -> SummaryRequested:
    """The latest messages of the conversation within the summary bounds, oldest first."""
    cur = await conn.execute(
        "SELECT author_role, body FROM messages WHERE conversation_id = %s"
        " ORDER BY seq DESC LIMIT %s",
        (event.conversation_id, SUMMARY_MAX_MESSAGES),
    )
    newest_first = await cur.fetchall()
    cur = await conn.execute(
        "SELECT message_count FROM conversations WHERE conversation_id = %s",
        (event.conversation_id,),
    )
    (total,) = await cur.fetchone()  # type: ignore[misc]
    lines: list[TranscriptLine] = []
    budget = SUMMARY_MAX_CHARS
    for role, body in newest_first:
        if budget <= 0:
            break
        text = body if len(body) <= budget else "…" + body[len(body) - budget + 1 :]
        lines.append(TranscriptLine(role=role, body=text))
        budget -= len(text)
    lines.reverse()
    return SummaryRequested(
        conversation_id=event.conversation_id,
        resolution=resolution,
        messages=lines,
        omitted=total - len(lines),
        requested_by=event.changed_by,
    )


async def store_summary(conn: AsyncConnection, event: SummaryCompleted) -> bool:
    """Store the first completion of the conversation's current resolution summary.

    Returns:
        ``True`` when stored; ``False`` when that summary was already complete, or belongs
        to an earlier resolve (the conversation was reopened and resolved again since).

    Raises:
        PoisonError: no summary of this resolution was ever requested.
    """
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE resolution_summaries s SET status = %s, summary = %s, error = %s,"
            " model = %s, duration_ms = %s, completed_at = now()"
            " FROM conversations c WHERE c.conversation_id = s.conversation_id"
            " AND s.conversation_id = %s AND s.resolution = %s AND c.resolution = s.resolution"
            " AND s.status = 'processing' RETURNING s.resolution",
            (
                event.status.value,
                event.summary,
                event.error,
                event.model,
                event.duration_ms,
                event.conversation_id,
                event.resolution,
            ),
        )
        if await cur.fetchone() is None:
            cur = await conn.execute(
                "SELECT 1 FROM resolution_summaries WHERE conversation_id = %s AND resolution = %s",
                (event.conversation_id, event.resolution),
            )
            if await cur.fetchone() is None:
                raise PoisonError(
                    f"no summary of resolution {event.resolution} of conversation"
                    f" {event.conversation_id} was requested"
                )
            return False
        await log_event(
            conn,
            event.conversation_id,
            "summary",
            None,
            {"resolution": event.resolution, "status": event.status, "error": event.error},
        )
        cur = await conn.execute(
            "UPDATE conversations SET version = version + 1 WHERE conversation_id = %s"
            " RETURNING version",
            (event.conversation_id,),
        )
        (version,) = await cur.fetchone()  # type: ignore[misc]
        updated = ConversationUpdated(
            conversation_id=event.conversation_id, version=version, reason="summary.completed"
        )
        await enqueue(conn, TOPIC_CONVERSATION_UPDATED, updated)
        return True


async def log_event(
    conn: AsyncConnection, conversation_id: UUID, kind: str, actor: str | None, data: dict
) -> None:
    """Append one entry to the conversation's event log (inside the caller's transaction)."""
    await conn.execute(
        "INSERT INTO conversation_events (conversation_id, kind, actor, data)"
        " VALUES (%s, %s, %s, %s)",
        (conversation_id, kind, actor, Jsonb(data)),
    )


async def enqueue(conn: AsyncConnection, topic: str, event: BaseModel) -> None:
    """Add ``event`` to the outbox for ``topic`` in ``conn``'s transaction, with the current
    span's W3C trace context; the relay publishes it after the commit (transactional outbox)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)  # the current span's W3C trace context, if any
    await conn.execute(
        "INSERT INTO outbox (topic, payload, traceparent) VALUES (%s, %s, %s)",
        (topic, Jsonb(event.model_dump(mode="json")), carrier.get("traceparent")),
    )


_NOT_IN_TEXT = re.compile(r"[\x00\ud800-\udfff]")
"""What a PostgreSQL ``text`` value cannot hold: NUL, and lone surrogates (not UTF-8)."""


async def store_dead_letter(conn: AsyncConnection, letter: DeadLetter) -> bool:
    """Record a dead letter once per ``(topic, event_id)``, whatever its data holds.

    The data goes into ``data`` (jsonb); when PostgreSQL refuses it there (a NUL, a lone
    surrogate: often why the event is a dead letter), it goes into ``data_text`` as JSON text
    with every non-ASCII character escaped, which any ``text`` column can hold, and ``data``
    stays NULL. An event id that ``text`` cannot hold is kept escaped the same way.

    Returns:
        ``True`` when recorded, ``False`` for a redelivery of one already recorded.

    Raises:
        psycopg.OperationalError: the database is unreachable (the caller retries).
    """
    insert = (
        "INSERT INTO dead_letters (event_id, topic, data, data_text) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING"
    )
    event_id = letter.event_id
    if _NOT_IN_TEXT.search(event_id):
        event_id = json.dumps(event_id)[1:-1]
    try:
        async with conn.transaction():
            cur = await conn.execute(insert, (event_id, letter.topic, Jsonb(letter.data), None))
    except (psycopg.DataError, UnicodeEncodeError):
        as_text = json.dumps(letter.data, ensure_ascii=True)
        cur = await conn.execute(insert, (event_id, letter.topic, None, as_text))
    return cur.rowcount == 1

"""Build the read models (see :mod:`inbox_common.read_models`) from PostgreSQL."""

from uuid import UUID

from inbox_common.events import INBOX_MAX_ITEMS
from inbox_common.knowledge import articles
from inbox_common.read_models import (
    EVENT_LOG_ITEMS,
    ArticleRef,
    Conversation,
    ConversationEvent,
    ConversationSummary,
    Inbox,
    Insight,
    Message,
    ResolutionSummary,
)
from psycopg import AsyncConnection
from psycopg.rows import dict_row

PREVIEW_CHARS = 140


async def load_conversation(conn: AsyncConnection, conversation_id: UUID) -> Conversation | None:
    """One conversation with its messages (oldest first) and their insights, its status,
    assignee, latest resolution summary and event log; ``None`` if absent."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT conversation_id, customer_id, subject, created_at, last_activity_at, version,"
        " status, assignee, resolved_at, resolution, assistant, handoff_reason"
        " FROM conversations WHERE conversation_id = %s",
        (conversation_id,),
    )
    head = await cur.fetchone()
    if head is None:
        return None
    resolution = head.pop("resolution")
    resolution_summary = None
    if resolution:
        await cur.execute(
            "SELECT resolution, status, summary AS text, error, model, requested_at,"
            " completed_at FROM resolution_summaries"
            " WHERE conversation_id = %s AND resolution = %s",
            (conversation_id, resolution),
        )
        found = await cur.fetchone()
        resolution_summary = ResolutionSummary(**found) if found else None
    await cur.execute(
        "SELECT * FROM (SELECT id, kind, actor, data, created_at FROM conversation_events"
        " WHERE conversation_id = %s ORDER BY id DESC LIMIT %s) latest ORDER BY id",
        (conversation_id, EVENT_LOG_ITEMS),
    )
    events = [ConversationEvent(**row) for row in await cur.fetchall()]
    await cur.execute(
        "SELECT m.message_id, m.seq, m.author_role, m.author_id, m.body, m.submitted_at,"
        " m.created_at, i.status, i.intent, i.summary, i.suggested_reply, i.model,"
        " i.duration_ms, i.error, i.revision, i.requested_by, i.trace_id, i.strategy, i.articles"
        " FROM messages m LEFT JOIN ai_insights i USING (message_id)"
        " WHERE m.conversation_id = %s ORDER BY m.seq",
        (conversation_id,),
    )
    messages = []
    known = articles()
    for row in await cur.fetchall():
        insight = None
        if row["status"] is not None:
            insight = Insight(
                status=row["status"],
                intent=row["intent"],
                summary=row["summary"],
                suggested_reply=row["suggested_reply"],
                model=row["model"],
                duration_ms=row["duration_ms"],
                error=row["error"],
                revision=row["revision"],
                requested_by=row["requested_by"],
                trace_id=row["trace_id"],
                strategy=row["strategy"],
                articles=[
                    ArticleRef(slug=slug, title=known[slug].title)
                    for slug in row["articles"] or []
                    if slug in known
                ],
            )
        messages.append(
            Message(
                message_id=row["message_id"],
                seq=row["seq"],
                author_role=row["author_role"],
                author_id=row["author_id"],
                body=row["body"],
                submitted_at=row["submitted_at"],
                created_at=row["created_at"],
                insight=insight,
            )
        )
    (summary,) = await load_summaries(conn, [conversation_id])
    return Conversation(
        **head,
        summary=summary,
        messages=messages,
        resolution_summary=resolution_summary,
        events=events,
    )


async def load_inbox(conn: AsyncConnection) -> Inbox:
    """The newest ``INBOX_MAX_ITEMS`` conversations by last activity, and the total count."""
    return Inbox(items=await load_summaries(conn), total=await count_conversations(conn))


async def count_conversations(conn: AsyncConnection) -> int:
    """Conversations with at least one message: those the inbox lists."""
    cur = await conn.execute("SELECT count(*) FROM conversations WHERE message_count > 0")
    (total,) = await cur.fetchone()  # type: ignore[misc]
    return total


async def load_summaries(
    conn: AsyncConnection,
    conversation_ids: list[UUID] | None = None,
    limit: int = INBOX_MAX_ITEMS,
    offset: int = 0,
) -> list[ConversationSummary]:
    """Inbox rows, newest activity first: of ``conversation_ids``, or of every conversation
    when ``None``; ``limit`` of them from ``offset``. The page is cut first, from the index
    ``conversations_inbox_order`` alone (an index-only scan once vacuumed), so the rows, their
    last message and insight are read for the page only, however deep it starts."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT c.conversation_id, c.customer_id, c.subject, c.last_activity_at,"
        " c.message_count, c.version, c.status, c.assignee, last.body, last.author_role,"
        " insight.intent, insight.status AS insight_status"
        " FROM (SELECT conversation_id FROM conversations"
        "   WHERE message_count > 0"
        "   AND (%(ids)s::uuid[] IS NULL OR conversation_id = ANY(%(ids)s::uuid[]))"
        "   ORDER BY last_activity_at DESC, conversation_id"
        "   LIMIT %(limit)s OFFSET %(offset)s) page"
        " JOIN conversations c USING (conversation_id)"
        " LEFT JOIN LATERAL (SELECT body, author_role FROM messages m"
        "   WHERE m.conversation_id = c.conversation_id ORDER BY seq DESC LIMIT 1) last ON true"
        " LEFT JOIN LATERAL (SELECT i.intent, i.status FROM messages m"
        "   JOIN ai_insights i USING (message_id)"
        "   WHERE m.conversation_id = c.conversation_id ORDER BY m.seq DESC LIMIT 1) insight"
        "   ON true"
        " ORDER BY c.last_activity_at DESC, c.conversation_id",
        {"ids": conversation_ids, "limit": limit, "offset": offset},
    )
    return [
        ConversationSummary(
            conversation_id=row["conversation_id"],
            customer_id=row["customer_id"],
            subject=row["subject"],
            last_message_preview=(row["body"] or "")[:PREVIEW_CHARS],
            last_author_role=row["author_role"],
            last_activity_at=row["last_activity_at"],
            message_count=row["message_count"],
            version=row["version"],
            awaiting_reply=row["author_role"] == "customer",
            latest_intent=row["intent"],
            latest_insight_status=row["insight_status"],
            status=row["status"],
            assignee=row["assignee"],
        )
        for row in await cur.fetchall()
    ]

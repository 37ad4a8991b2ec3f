"""Operators' intent corrections: stored as labelled examples, announced to the ai-worker.

A correction sets the insight's intent at once (the operators see it) and becomes a labelled
example with who and when; the read model of every correction (``intent-examples``) is what
each ai-worker replica's intent step learns from beside its seed examples.
"""

from inbox_common.errors import PoisonError
from inbox_common.events import (
    TOPIC_CONVERSATION_UPDATED,
    TOPIC_INTENT_EXAMPLES_CHANGED,
    ConversationUpdated,
    IntentCorrected,
    IntentExamplesChanged,
)
from inbox_common.read_models import IntentExamples, LabelledExample
from psycopg import AsyncConnection

from messaging.store import enqueue

MAX_EXAMPLES = 20_000
"""Most corrections in the read model (the newest); about 3 MB of JSON at most."""


async def correct_intent(conn: AsyncConnection, event: IntentCorrected) -> bool:
    """Store ``event`` once (by ``request_id``; a message's latest correction wins), set its
    insight's intent, and enqueue ``conversation.updated`` and ``intent.examples.changed``.

    Returns:
        ``False`` for a redelivered request, else ``True``.

    Raises:
        PoisonError: no customer message ``message_id`` in ``conversation_id``.
    """
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT 1 FROM messages WHERE message_id = %s AND conversation_id = %s"
            " AND author_role = 'customer'",
            (event.message_id, event.conversation_id),
        )
        if await cur.fetchone() is None:
            raise PoisonError(
                f"no customer message {event.message_id} in conversation {event.conversation_id}"
            )
        cur = await conn.execute(
            "INSERT INTO intent_corrections"
            " (message_id, intent, corrected_by, corrected_at, request_id, version)"
            " VALUES (%s, %s, %s, %s, %s, nextval('intent_corrections_version'))"
            " ON CONFLICT (message_id) DO UPDATE SET intent = excluded.intent,"
            " corrected_by = excluded.corrected_by, corrected_at = excluded.corrected_at,"
            " request_id = excluded.request_id, version = excluded.version"
            " WHERE intent_corrections.request_id <> excluded.request_id"
            " RETURNING version",
            (
                event.message_id,
                event.intent,
                event.corrected_by,
                event.corrected_at,
                event.request_id,
            ),
        )
        row = await cur.fetchone()
        if row is None:
            return False
        await conn.execute(
            "UPDATE ai_insights SET intent = %s WHERE message_id = %s",
            (event.intent, event.message_id),
        )
        cur = await conn.execute(
            "UPDATE conversations SET version = version + 1 WHERE conversation_id = %s"
            " RETURNING version",
            (event.conversation_id,),
        )
        (version,) = await cur.fetchone()  # type: ignore[misc]
        await enqueue(
            conn,
            TOPIC_CONVERSATION_UPDATED,
            ConversationUpdated(
                conversation_id=event.conversation_id, version=version, reason="intent.corrected"
            ),
        )
        count = await conn.execute("SELECT count(*) FROM intent_corrections")
        (total,) = await count.fetchone()  # type: ignore[misc]
        await enqueue(
            conn,
            TOPIC_INTENT_EXAMPLES_CHANGED,
            IntentExamplesChanged(version=row[0], count=min(total, MAX_EXAMPLES)),
        )
        return True


async def load_examples(conn: AsyncConnection) -> IntentExamples:
    """The read model: the newest :data:`MAX_EXAMPLES` corrections with their messages' text,
    oldest first, and the highest version."""
    cur = await conn.execute(
        "SELECT * FROM (SELECT m.body, c.intent, c.corrected_by, c.corrected_at, c.version"
        " FROM intent_corrections c JOIN messages m USING (message_id)"
        " ORDER BY c.version DESC LIMIT %s) newest ORDER BY version",
        (MAX_EXAMPLES,),
    )
    rows = await cur.fetchall()
    return IntentExamples(
        version=rows[-1][4] if rows else 0,
        examples=[
            LabelledExample(text=body, intent=intent, corrected_by=by, corrected_at=at)
            for body, intent, by, at, _ in rows
        ],
    )

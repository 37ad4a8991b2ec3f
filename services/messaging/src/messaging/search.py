"""Full-text search over conversations (PostgreSQL ``tsvector``, migration 0007).

Read only: the query runs on the generated ``search`` columns of ``messages`` (each body) and
``conversations`` (each subject), both in the ``english`` configuration with GIN indexes.

Bounded: a query the GIN indexes cannot answer (only excluded words, ``-x``: it matches
nearly everything) is refused before it runs, and every statement of a search is cut at a
statement timeout, so no search scans the whole table or holds a pooled connection for long.
"""

from uuid import UUID

from inbox_common.read_models import HeadlinePart, SearchHit
from psycopg import AsyncConnection
from psycopg.errors import QueryCanceled
from psycopg.rows import dict_row

from messaging.projections import load_summaries

START_SEL = "\x01"
"""Marks the start of a matched word in ``ts_headline``'s output; never shown."""
STOP_SEL = "\x02"
"""Marks the end of a matched word."""
HEADLINE_OPTIONS = (
    f'StartSel="{START_SEL}", StopSel="{STOP_SEL}", MaxWords=24, MinWords=10, ShortWord=2,'
    ' MaxFragments=2, FragmentDelimiter=" … "'
)
"""``ts_headline`` options: up to two fragments of about 10 to 24 words each."""

_INDEX_PART = "SELECT querytree(websearch_to_tsquery('english', %(query)s))"
"""The part of the query that the GIN indexes can look up: ``T`` when there is none (only
negations), empty for stop words only (which match nothing, cheaply)."""


class SearchRefused(Exception):
    """A query that cannot be answered within bounds; the message, starting ``q:``, tells the
    operator why and what to change."""


_SEARCH = """
WITH q AS (SELECT websearch_to_tsquery('english', %(query)s) AS query),
hits AS (
    SELECT m.conversation_id, m.body AS text, m.seq, ts_rank(m.search, q.query) AS rank
    FROM messages m CROSS JOIN q WHERE m.search @@ q.query
    UNION ALL
    SELECT c.conversation_id, c.subject, 0, ts_rank(c.search, q.query)
    FROM conversations c CROSS JOIN q WHERE c.search @@ q.query
),
best AS (
    SELECT DISTINCT ON (conversation_id) conversation_id, text,
        sum(rank) OVER (PARTITION BY conversation_id) AS total
    FROM hits ORDER BY conversation_id, rank DESC, seq DESC
)
SELECT best.conversation_id, best.total AS rank,
    ts_headline('english', best.text, q.query, %(options)s) AS headline
FROM best CROSS JOIN q JOIN conversations c ON c.conversation_id = best.conversation_id
WHERE c.message_count > 0
ORDER BY best.total DESC, c.last_activity_at DESC, best.conversation_id
LIMIT %(limit)s
"""


async def search_conversations(
    conn: AsyncConnection, query: str, limit: int, statement_timeout_ms: int = 2000
) -> list[SearchHit]:
    """The conversations that match ``query``, best first.

    Args:
        conn: an open connection (autocommit; the search runs in one read-only transaction,
            and the connection is left as it was, whatever happens).
        query: web-search syntax for ``websearch_to_tsquery('english', …)``: words (stemmed:
            "cards" finds "card"), ``"quoted phrases"``, ``or``, ``-excluded``. It never
            raises a syntax error; a query of stop words only matches nothing.
        limit: most conversations returned.
        statement_timeout_ms: PostgreSQL's ``statement_timeout`` for each statement of the
            search, in milliseconds (set for this transaction only).

    Returns:
        Up to ``limit`` hits, ranked by the sum of ``ts_rank`` over the conversation's matching
        subject and messages, then by newest activity. Each carries the inbox row and a
        headline of its best-matching text. Empty when nothing matches.

    Raises:
        SearchRefused: the query has no word to look up (only ``-excluded`` words, or an
            ``or`` with such a branch), or it matched too much to rank within
            ``statement_timeout_ms``.
        psycopg.Error: the database refused or is unreachable.
    """
    try:
        async with conn.transaction():
            await conn.execute("SET TRANSACTION READ ONLY")
            # is_local: the setting ends with this transaction, so the pooled connection goes
            # back with the server's default
            await conn.execute(
                "SELECT set_config('statement_timeout', %s, true)", (f"{statement_timeout_ms}ms",)
            )
            index_part = await (await conn.execute(_INDEX_PART, {"query": query})).fetchone()
            if index_part and index_part[0] == "T":
                raise SearchRefused(
                    "q: has only excluded words (-word), which match nearly every conversation;"
                    " add a word or a \"quoted phrase\" to look for"
                )
            cur = conn.cursor(row_factory=dict_row)
            params = {"query": query, "limit": limit, "options": HEADLINE_OPTIONS}
            await cur.execute(_SEARCH, params)
            rows = await cur.fetchall()
            ids: list[UUID] = [row["conversation_id"] for row in rows]
            found = await load_summaries(conn, ids) if ids else []
    except QueryCanceled as exc:
        raise SearchRefused(
            f"q: matches too many messages to rank within {statement_timeout_ms} ms; narrow it"
            ' with more words or a "quoted phrase"'
        ) from exc
    summaries = {s.conversation_id: s for s in found}
    return [
        SearchHit(
            **summaries[row["conversation_id"]].model_dump(),
            rank=row["rank"],
            headline=headline_parts(row["headline"] or ""),
        )
        for row in rows
        if row["conversation_id"] in summaries
    ]


def headline_parts(text: str) -> list[HeadlinePart]:
    """Split ``ts_headline`` output at :data:`START_SEL` / :data:`STOP_SEL` into plain-text
    parts, matched words flagged; stray markers are dropped, so no marker reaches the page.

    >>> [(p.text, p.match) for p in headline_parts("my \\x01card\\x02 is lost")]
    [('my ', False), ('card', True), (' is lost', False)]
    """
    parts: list[HeadlinePart] = []

    def add(piece: str, match: bool) -> None:
        piece = piece.replace(START_SEL, "").replace(STOP_SEL, "")
        if not piece:
            return
        if parts and parts[-1].match == match:
            parts[-1] = HeadlinePart(text=parts[-1].text + piece, match=match)
        else:
            parts.append(HeadlinePart(text=piece, match=match))

    first, *rest = text.split(START_SEL)
    add(first, False)
    for chunk in rest:
        matched, found, after = chunk.partition(STOP_SEL)
        add(matched, bool(found))
        add(after, False)
    return parts

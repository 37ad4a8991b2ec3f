"""The insight watchdog: ask again for analyses that never came back.

An analysis can be lost between messaging and the ai-worker although both are at-least-once:
when the broker is switched under running pods (a ``message.created`` left pending in the old
broker's consumer group of a terminated ai-worker, or an ``ai.completed`` published to a broker
no messaging replica reads any more), or when a broker acknowledges and drops an event whose
retries ran out. The insight then stays ``processing`` for ever. Messaging is the system of
record, so it is the one that notices: every ``INSIGHT_REDELIVERY_INTERVAL_S`` each replica
looks for insights whose current revision was last requested longer ago than its wait, and
enqueues in the outbox, in the same transaction, the very event that asked for it (revision 1:
``message.created`` rebuilt from the stored message, same ``message_id``; later revisions:
``analysis.requested``). The ai-worker and messaging are idempotent on ``(message_id,
revision)``, so an analysis that was merely slow and now arrives twice is stored once.

The wait is ``INSIGHT_REDELIVER_AFTER_S`` and doubles after each re-request (capped at 64
times), so a backlog behind a slow model is not multiplied by the watchdog. After
``INSIGHT_MAX_REDELIVERIES`` re-requests and one more wait, the insight is stored
``unavailable`` with a reason, announced like any completion, so the operator sees it and can
Regenerate it: an insight is never silently lost, nor retried for ever against a worker that
cannot answer it. Rows are taken ``FOR UPDATE SKIP LOCKED``: two replicas never re-request the
same insight, and a completion being stored at that moment is left alone.
"""

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from inbox_common import metrics
from inbox_common.events import (
    TOPIC_ANALYSIS_REQUESTED,
    TOPIC_CONVERSATION_UPDATED,
    TOPIC_MESSAGE_CREATED,
    AnalysisRequested,
    AuthorRole,
    ConversationUpdated,
    MessageCreated,
)
from opentelemetry import trace
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from messaging.outbox import MAX_BACKOFF_S, OutboxRelay
from messaging.store import enqueue, log_event

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

MAX_BACKOFF_DOUBLINGS = 6
"""The wait before a re-request doubles after each one, at most this many times (x64)."""


def wait_s(after_s: float, redeliveries: int) -> float:
    """Seconds an insight re-requested ``redeliveries`` times waits before the next step.

    ``after_s`` x 2^min(redeliveries, :data:`MAX_BACKOFF_DOUBLINGS`); the same formula the
    selection computes in SQL.
    """
    return after_s * 2 ** min(max(redeliveries, 0), MAX_BACKOFF_DOUBLINGS)


def abandon_reason(redeliveries: int) -> str:
    """The ``error`` stored on an insight the watchdog gave up on."""
    return (
        f"no analysis arrived after {redeliveries} re-requests; the event was lost or the"
        " ai-worker cannot answer it. Regenerate to try again"
    )


_STALE = (
    "SELECT i.message_id, i.revision, i.redeliveries, i.requested_by, m.conversation_id,"
    " m.seq, m.author_id, m.body, m.submitted_at, m.created_at, c.subject"
    " FROM ai_insights i JOIN messages m USING (message_id)"
    " JOIN conversations c ON c.conversation_id = m.conversation_id"
    " WHERE i.status = 'processing' AND i.requested_at < now()"
    " - make_interval(secs => %(after_s)s * power(2, least(i.redeliveries, %(doublings)s)))"
    " ORDER BY i.requested_at LIMIT %(limit)s FOR UPDATE OF i SKIP LOCKED"
)


@dataclass(frozen=True)
class Stale:
    """One insight left ``processing`` past its wait (a row of the selection)."""

    message_id: UUID
    revision: int
    redeliveries: int
    requested_by: str | None
    conversation_id: UUID
    seq: int
    author_id: str
    body: str
    submitted_at: datetime
    created_at: datetime
    subject: str | None

    def request(self) -> tuple[str, MessageCreated]:
        """The topic and event that asked for this revision: ``message.created`` for
        revision 1, ``analysis.requested`` for a regenerated one."""
        created = MessageCreated(
            message_id=self.message_id,
            conversation_id=self.conversation_id,
            author_role=AuthorRole.CUSTOMER,
            author_id=self.author_id,
            body=self.body,
            subject=self.subject,
            submitted_at=self.submitted_at,
            seq=self.seq,
            created_at=self.created_at,
        )
        if self.revision == 1:
            return TOPIC_MESSAGE_CREATED, created
        analysis = AnalysisRequested(
            **created.model_dump(),
            revision=self.revision,
            requested_by=self.requested_by or "system",
        )
        return TOPIC_ANALYSIS_REQUESTED, analysis


async def select_stale(conn: AsyncConnection, after_s: float, limit: int) -> list[Stale]:
    """Lock and return at most ``limit`` insights left ``processing`` past their wait
    (:func:`wait_s`), oldest request first; rows another transaction holds are skipped.

    Must run inside the caller's transaction (the locks last until it ends).
    """
    cur = await conn.execute(
        _STALE, {"after_s": after_s, "doublings": MAX_BACKOFF_DOUBLINGS, "limit": limit}
    )
    return [Stale(*row) for row in await cur.fetchall()]


async def redeliver_batch(
    conn: AsyncConnection, after_s: float, max_redeliveries: int, limit: int
) -> tuple[int, int]:
    """In one transaction, re-request or give up on at most ``limit`` stale insights.

    An insight re-requested fewer than ``max_redeliveries`` times gets its request enqueued
    again (see :meth:`Stale.request`), ``requested_at`` set to now and ``redeliveries`` + 1.
    One re-requested ``max_redeliveries`` times is stored ``unavailable`` with
    :func:`abandon_reason`, logged in the conversation's event log, and announced with
    ``conversation.updated``. Each step is logged at WARNING with ``message_id`` and
    ``revision`` and counted in ``inbox_insight_redeliveries_total{outcome}``.

    Returns:
        ``(requested, abandoned)`` counts.

    Raises:
        psycopg.Error: the database failed; nothing of the batch is kept.
    """
    requested: list[Stale] = []
    abandoned: list[Stale] = []
    async with conn.transaction():
        for stale in await select_stale(conn, after_s, limit):
            ids = {"message_id": str(stale.message_id), "revision": stale.revision}
            if stale.redeliveries >= max_redeliveries:
                await _abandon(conn, stale)
                abandoned.append(stale)
                log.warning(
                    "insight abandoned: no analysis after re-requests",
                    extra={**ids, "redeliveries": stale.redeliveries},
                )
                continue
            topic, event = stale.request()
            with _tracer.start_as_current_span(f"redeliver {topic}"):
                await enqueue(conn, topic, event)
            await conn.execute(
                "UPDATE ai_insights SET requested_at = now(), redeliveries = redeliveries + 1"
                " WHERE message_id = %s",
                (stale.message_id,),
            )
            requested.append(stale)
            log.warning(
                "insight still processing; analysis requested again",
                extra={**ids, "topic": topic, "redelivery": stale.redeliveries + 1},
            )
    # counted once committed: a rolled-back batch is retried, not counted twice
    metrics.INSIGHT_REDELIVERIES.labels("requested").inc(len(requested))
    metrics.INSIGHT_REDELIVERIES.labels("abandoned").inc(len(abandoned))
    return len(requested), len(abandoned)


async def _abandon(conn: AsyncConnection, stale: Stale) -> None:
    reason = abandon_reason(stale.redeliveries)
    await conn.execute(
        "UPDATE ai_insights SET status = 'unavailable', error = %s, completed_at = now()"
        " WHERE message_id = %s",
        (reason, stale.message_id),
    )
    cur = await conn.execute(
        "UPDATE conversations SET version = version + 1 WHERE conversation_id = %s"
        " RETURNING version",
        (stale.conversation_id,),
    )
    (version,) = await cur.fetchone()  # type: ignore[misc]
    await log_event(
        conn,
        stale.conversation_id,
        "insight",
        None,
        {
            "message_id": str(stale.message_id),
            "revision": stale.revision,
            "status": "unavailable",
            "error": reason,
        },
    )
    updated = ConversationUpdated(
        conversation_id=stale.conversation_id, version=version, reason="ai.completed"
    )
    await enqueue(conn, TOPIC_CONVERSATION_UPDATED, updated)


class InsightWatchdog:
    """Background task re-requesting insights left ``processing`` (see the module docstring).

    Args:
        pool: the service's connection pool.
        relay: woken after a batch enqueued events, so they go out at once.
        interval_s: seconds between scans (``INSIGHT_REDELIVERY_INTERVAL_S``).
        after_s: first wait before a re-request, in seconds (``INSIGHT_REDELIVER_AFTER_S``).
        max_redeliveries: re-requests before giving up (``INSIGHT_MAX_REDELIVERIES``).
        batch_size: most insights handled per transaction (``INSIGHT_REDELIVERY_BATCH_SIZE``).
    """

    def __init__(
        self,
        pool: AsyncConnectionPool,
        relay: OutboxRelay,
        interval_s: float,
        after_s: float,
        max_redeliveries: int,
        batch_size: int,
    ) -> None:
        self._pool = pool
        self._relay = relay
        self._interval_s = interval_s
        self._after_s = after_s
        self._max_redeliveries = max_redeliveries
        self._batch_size = batch_size

    async def scan(self) -> tuple[int, int]:
        """Handle every stale insight, a batch per transaction.

        Returns:
            ``(requested, abandoned)`` totals of this scan.

        Raises:
            psycopg.Error, psycopg_pool.PoolTimeout: the database failed (batches already
                committed stay done).
        """
        total_requested = total_abandoned = 0
        while True:
            async with self._pool.connection() as conn:
                requested, abandoned = await redeliver_batch(
                    conn, self._after_s, self._max_redeliveries, self._batch_size
                )
            total_requested += requested
            total_abandoned += abandoned
            if requested or abandoned:
                self._relay.wake()
            if requested + abandoned < self._batch_size:
                return total_requested, total_abandoned

    async def run(self) -> None:
        """Scan every interval until cancelled; a failure is logged and backs off
        exponentially (up to 30 s beyond the interval) and never stops it."""
        backoff_s = 0.0
        while True:
            try:
                await self.scan()
                backoff_s = 0.0
            except Exception as exc:  # noqa: BLE001 - the watchdog must outlive any failure
                backoff_s = min(MAX_BACKOFF_S, max(0.5, backoff_s * 2))
                log.warning(
                    "insight watchdog failed; backing off",
                    extra={"reason": str(exc), "backoff_s": backoff_s},
                )
            await asyncio.sleep(self._interval_s + backoff_s)

"""The outbox relay: publish committed outbox rows through Dapr, read models first.

Every messaging replica runs one relay loop, but a batch is only taken under a PostgreSQL
transaction-level advisory lock, so one replica relays at a time (no double-publish storm)
and another takes over the moment it stops. Before a ``conversation.updated`` row is
published, the conversation's read model is written to the state store, so a gateway that
reacts to the event reads the new state. The inbox list (up to ``INBOX_MAX_ITEMS`` rows, some
400 KB, and a count of all conversations) is rebuilt at most once per
``inbox_interval_s``: at once when the last rebuild is older, else when that interval has
passed, still under the lock (so an older list never overwrites a newer one). A batch of a
few rows no longer pays for a rebuild of the whole list. A row is stamped published only
after Dapr accepted it; a crash in between publishes it again (consumers are idempotent).

Each relay also measures the outbox lag (rows not yet published, age of the oldest) for the
``inbox_outbox_*`` gauges, at most once per poll interval, whether or not it holds the lock.
"""

import asyncio
import logging
import time
from uuid import UUID

from inbox_common import metrics
from inbox_common.errors import TransientError
from inbox_common.events import (
    TOPIC_ANALYSIS_REQUESTED,
    TOPIC_CONVERSATION_UPDATED,
    TOPIC_INTENT_EXAMPLES_CHANGED,
    TOPIC_MESSAGE_CREATED,
    TOPIC_SUMMARY_REQUESTED,
    AnalysisRequested,
    ConversationUpdated,
    IntentExamplesChanged,
    MessageCreated,
    SummaryRequested,
)
from inbox_common.keys import INBOX_KEY, INTENT_EXAMPLES_KEY, conversation_key
from inbox_common.sidecar import Sidecar
from opentelemetry import propagate, trace
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from messaging.corrections import load_examples
from messaging.projections import load_conversation, load_inbox

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

RELAY_LOCK_ID = 0x1B0C_0001
"""pg_advisory_xact_lock key that makes one replica at a time the relay."""
MAX_BACKOFF_S = 30.0
MIN_WAIT_S = 0.05
"""Shortest wait between two scans while the inbox list waits to be rebuilt."""
LAG_QUERY_TIMEOUT_S = 2.0
"""Longest wait for a connection to measure the lag: a database that is down must not hold
the relay up twice."""

_MODELS: dict[str, type[BaseModel]] = {
    TOPIC_MESSAGE_CREATED: MessageCreated,
    TOPIC_ANALYSIS_REQUESTED: AnalysisRequested,
    TOPIC_CONVERSATION_UPDATED: ConversationUpdated,
    TOPIC_SUMMARY_REQUESTED: SummaryRequested,
    TOPIC_INTENT_EXAMPLES_CHANGED: IntentExamplesChanged,
}
"""The event model of each topic messaging announces through the outbox."""


class OutboxRelay:
    """Background task draining the outbox.

    Args:
        pool: the service's connection pool.
        sidecar: where to publish and write read models.
        batch_size: rows per transaction.
        poll_interval_s: longest idle wait before scanning again; :meth:`wake` cuts it short.
        inbox_interval_s: shortest time between two rebuilds of the inbox list (s).
    """

    def __init__(
        self,
        pool: AsyncConnectionPool,
        sidecar: Sidecar,
        batch_size: int,
        poll_interval_s: float,
        inbox_interval_s: float = 0.25,
    ) -> None:
        self._pool = pool
        self._sidecar = sidecar
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._inbox_interval_s = inbox_interval_s
        self._inbox_stale = False
        self._inbox_written_at = float("-inf")
        self._wake = asyncio.Event()
        self._measured_at = float("-inf")

    def wake(self) -> None:
        """Ask for a scan now (called after a transaction that wrote outbox rows commits)."""
        self._wake.set()

    async def run(self) -> None:
        """Relay until cancelled; failures back off exponentially up to 30 s and never stop it."""
        backoff_s = 0.0
        while True:
            try:
                drained = await self.relay_batch()
                backoff_s = 0.0
            except Exception as exc:  # noqa: BLE001 - the relay must outlive any failure
                backoff_s = min(MAX_BACKOFF_S, max(0.5, backoff_s * 2))
                log.warning(
                    "outbox relay failed; backing off",
                    extra={"reason": str(exc), "backoff_s": backoff_s},
                )
                await self._measure_lag_when_due()
                await asyncio.sleep(backoff_s)
                continue
            await self._measure_lag_when_due()
            if drained:
                continue
            wait_s = self._poll_interval_s
            if self._inbox_stale:
                # not 0: while another replica holds the lock this would spin
                wait_s = min(wait_s, max(MIN_WAIT_S, self._inbox_due_in()))
            try:
                await asyncio.wait_for(self._wake.wait(), wait_s)
            except TimeoutError:
                pass
            self._wake.clear()

    def _inbox_due_in(self) -> float:
        """Seconds until the inbox list may be rebuilt again (<= 0: now)."""
        return self._inbox_written_at + self._inbox_interval_s - time.monotonic()

    async def measure_lag(self) -> tuple[int, float]:
        """Measure the outbox lag and set the ``inbox_outbox_*`` gauges.

        Returns:
            Rows committed but not yet published, and the age in seconds of the oldest of
            them (0.0 when there is none). Reads only the pending rows (index `outbox_pending`).

        Raises:
            psycopg.Error: the database is unreachable.
            psycopg_pool.PoolTimeout: no connection within ``LAG_QUERY_TIMEOUT_S``.
        """
        async with self._pool.connection(timeout=LAG_QUERY_TIMEOUT_S) as conn:
            cur = await conn.execute(
                "SELECT count(*), coalesce(extract(epoch FROM clock_timestamp()"
                " - min(created_at)), 0) FROM outbox WHERE published_at IS NULL"
            )
            rows, age_s = await cur.fetchone()  # type: ignore[misc]
        metrics.OUTBOX_UNPUBLISHED_ROWS.set(rows)
        metrics.OUTBOX_OLDEST_UNPUBLISHED_AGE.set(max(0.0, float(age_s)))
        return rows, float(age_s)

    async def _measure_lag_when_due(self) -> None:
        """:meth:`measure_lag` when the last measurement is a poll interval old; a failure
        leaves the gauges as they were."""
        if time.monotonic() - self._measured_at < self._poll_interval_s:
            return
        self._measured_at = time.monotonic()
        try:
            await self.measure_lag()
        except Exception as exc:  # noqa: BLE001 - a metric never stops the relay
            log.debug("outbox lag not measured", extra={"reason": str(exc)})

    async def relay_batch(self) -> bool:
        """Publish one batch.

        Returns:
            ``True`` when a full batch was published (more may be waiting), else ``False``.

        Raises:
            TransientError: the sidecar refused a publish or a state write.
        """
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (RELAY_LOCK_ID,))
            (locked,) = await cur.fetchone()  # type: ignore[misc]
            if not locked:
                return False
            cur = await conn.execute(
                "SELECT id, topic, payload, traceparent FROM outbox WHERE published_at IS NULL"
                " ORDER BY id LIMIT %s",
                (self._batch_size,),
            )
            rows = await cur.fetchall()
            if not rows:
                if self._inbox_stale and self._inbox_due_in() <= 0:
                    await self._project(conn, set())
                return False
            events = [
                (row_id, topic, _MODELS[topic].model_validate(p)) for row_id, topic, p, _ in rows
            ]
            parents = [traceparent for *_, traceparent in rows]
            conversation_ids = {
                e.conversation_id for _, t, e in events if t == TOPIC_CONVERSATION_UPDATED
            }
            examples = any(t == TOPIC_INTENT_EXAMPLES_CHANGED for _, t, _ in events)
            if conversation_ids or examples:
                await self._project(conn, conversation_ids, examples)
            results = await asyncio.gather(
                *(
                    self._publish(topic, event, parent)
                    for (_, topic, event), parent in zip(events, parents, strict=True)
                ),
                return_exceptions=True,
            )
            published = [
                row_id for (row_id, _, _), r in zip(events, results, strict=True) if r is None
            ]
            failed = [
                (row_id, r)
                for (row_id, _, _), r in zip(events, results, strict=True)
                if r is not None
            ]
            await conn.execute(
                "UPDATE outbox SET published_at = now(), attempts = attempts + 1"
                " WHERE id = ANY(%s)",
                (published,),
            )
            for row_id, exc in failed:
                await conn.execute(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = %s WHERE id = %s",
                    (str(exc)[:500], row_id),
                )
        if failed:
            raise TransientError(f"{len(failed)} of {len(events)} outbox rows not published")
        return len(rows) == self._batch_size

    async def _publish(self, topic: str, event: BaseModel, traceparent: str | None) -> None:
        """Publish in the trace of the change the row announces (its stored traceparent)."""
        parent = propagate.extract({"traceparent": traceparent} if traceparent else {})
        with _tracer.start_as_current_span(f"outbox publish {topic}", context=parent):
            await self._sidecar.publish(topic, event)

    async def _project(  # noqa: ANN001
        self, conn, conversation_ids: set[UUID], examples: bool = False
    ) -> None:
        """Write the read models of ``conversation_ids``, the labelled examples when
        ``examples``, and the inbox list when it is due (else mark it stale, for :meth:`run`
        to come back to)."""
        states: dict[str, BaseModel] = {}
        if examples:
            states[INTENT_EXAMPLES_KEY] = await load_examples(conn)
        for conversation_id in conversation_ids:
            conversation = await load_conversation(conn, conversation_id)
            if conversation is not None:
                states[conversation_key(conversation_id)] = conversation
        inbox_due = self._inbox_due_in() <= 0
        if inbox_due:
            states[INBOX_KEY] = await load_inbox(conn)
        if states:
            await self._sidecar.save_states(states)
        if inbox_due:
            self._inbox_written_at = time.monotonic()
            self._inbox_stale = False
            metrics.INBOX_LIST_REBUILDS.inc()
        elif conversation_ids:
            self._inbox_stale = True

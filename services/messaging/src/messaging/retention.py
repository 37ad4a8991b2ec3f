"""Outbox retention: published rows are deleted once ``OUTBOX_RETENTION_S`` old.

A published row has done its work; kept for a while it shows what was announced and when
(``published_at``, ``attempts``), but kept for ever it makes the outbox grow with every
message, and with it the index the relay scans. Every ``OUTBOX_PRUNE_INTERVAL_S`` each replica
deletes published rows older than the retention, oldest first, in batches of
:data:`PRUNE_BATCH_ROWS` (one short transaction each, so the relay is never held up), counted
in ``inbox_outbox_rows_pruned_total``. Unpublished rows are never touched, however old. Two
replicas pruning at once delete disjoint rows or nothing: a row is deleted once.
"""

import asyncio
import logging

from inbox_common import metrics
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

PRUNE_BATCH_ROWS = 5000
"""Most rows one delete removes."""

_PRUNE = (
    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox"
    " WHERE published_at < clock_timestamp() - %s * interval '1 second'"
    " ORDER BY id LIMIT %s)"
)


class OutboxPruner:
    """Background task deleting published outbox rows older than ``retention_s`` seconds,
    every ``interval_s`` seconds."""

    def __init__(self, pool: AsyncConnectionPool, retention_s: float, interval_s: float) -> None:
        self._pool = pool
        self._retention_s = retention_s
        self._interval_s = interval_s

    async def prune(self) -> int:
        """Delete every published row older than the retention, a batch at a time.

        Returns:
            Rows deleted.

        Raises:
            psycopg.Error: the database is unreachable or refused.
        """
        deleted = 0
        while True:
            async with self._pool.connection() as conn:
                cur = await conn.execute(_PRUNE, (self._retention_s, PRUNE_BATCH_ROWS))
            deleted += cur.rowcount
            metrics.OUTBOX_ROWS_PRUNED.inc(cur.rowcount)
            if cur.rowcount < PRUNE_BATCH_ROWS:
                return deleted

    async def run(self) -> None:
        """Prune every interval until cancelled; a failure is logged and retried next time."""
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                deleted = await self.prune()
            except Exception as exc:  # noqa: BLE001 - retention must outlive any failure
                log.warning("outbox not pruned", extra={"reason": str(exc)[:300]})
                continue
            if deleted:
                log.info("outbox pruned", extra={"rows": deleted})

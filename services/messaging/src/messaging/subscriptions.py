"""Messaging's Dapr subscriptions: thin adapters over :mod:`messaging.store`."""

import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import psycopg
from dapr.ext.fastapi import DaprApp
from inbox_common import metrics
from inbox_common.errors import PoisonError, TransientError
from inbox_common.events import (
    SEARCH_RESULT_TTL_S,
    TOPIC_AI_COMPLETED,
    TOPIC_ANALYSIS_REQUESTED,
    TOPIC_CONVERSATION_CHANGED,
    TOPIC_INBOX_PAGE_REQUESTED,
    TOPIC_INSIGHT_REQUESTED,
    TOPIC_INTENT_CORRECTED,
    TOPIC_MESSAGE_CREATED,
    TOPIC_MESSAGES_SUBMITTED,
    TOPIC_SEARCH_REQUESTED,
    TOPIC_SUMMARY_COMPLETED,
    TOPIC_SUMMARY_REQUESTED,
    AiCompleted,
    ConversationChanged,
    InboxPageRequested,
    InsightRequested,
    IntentCorrected,
    MessageCreated,
    MessageSubmitted,
    SearchRequested,
    SummaryCompleted,
)
from inbox_common.keys import inbox_page_key, search_key
from inbox_common.read_models import InboxPageResult, SearchResult
from inbox_common.settings import BULK_MAX_AWAIT_MS, BULK_MAX_MESSAGES
from inbox_common.subscriptions import (
    DeadLetter,
    Entry,
    Outcome,
    subscribe,
    subscribe_bulk,
    subscribe_dead_letters,
)

from messaging.corrections import correct_intent
from messaging.projections import load_summaries
from messaging.runtime import Runtime
from messaging.search import SearchRefused, search_conversations
from messaging.store import (
    change_conversation,
    request_insight,
    store_dead_letter,
    store_insights,
    store_messages,
    store_summary,
)

log = logging.getLogger(__name__)


async def handle_submitted(
    runtime: Runtime, entries: Sequence[Entry[MessageSubmitted]]
) -> list[Outcome]:
    """Store submitted messages (idempotent by ``message_id``) in one transaction and wake
    the outbox relay.

    Each is counted in ``inbox_messages_stored_total``, or
    ``inbox_redeliveries_total{kind="message"}`` when it was stored already.

    Returns:
        Per entry: ``None`` (SUCCESS), or a :class:`PoisonError` (DROP) for an operator reply
        to an unknown conversation, a customer message to a conversation of another
        customer, or data the schema refuses.

    Raises:
        TransientError: the database is unreachable or the transaction failed transiently
            (every entry is retried).
    """
    async with _connection(runtime) as conn:
        stored = await store_messages(conn, entries)
    for entry, created in zip(entries, stored, strict=True):
        if created is None:
            metrics.REDELIVERIES.labels("message").inc()
            log.info("duplicate message ignored", extra={"message_id": str(entry.event.message_id)})
        elif isinstance(created, MessageCreated):
            metrics.MESSAGES_STORED.labels(created.author_role.value).inc()
    runtime.relay.wake()
    return [None if isinstance(s, MessageCreated | None) else s for s in stored]


async def handle_ai_completed(
    runtime: Runtime, entries: Sequence[Entry[AiCompleted]]
) -> list[Outcome]:
    """Store the first insight for each message in one transaction and wake the outbox
    relay. A duplicate is counted in ``inbox_redeliveries_total{kind="insight"}``.

    Returns:
        Per entry: ``None`` (SUCCESS), or a :class:`PoisonError` (DROP): the message does not
        exist.

    Raises:
        TransientError: the database is unreachable (every entry is retried).
    """
    async with _connection(runtime) as conn:
        stored = await store_insights(conn, entries)
    for entry, outcome in zip(entries, stored, strict=True):
        if outcome is False:
            metrics.REDELIVERIES.labels("insight").inc()
            log.info("duplicate insight ignored", extra={"message_id": str(entry.event.message_id)})
    runtime.relay.wake()
    return [None if isinstance(s, bool) else s for s in stored]


async def handle_insight_requested(runtime: Runtime, event: InsightRequested) -> None:
    """Start a new insight revision (idempotent by ``request_id``) and wake the outbox relay.

    RETRY: the database is unreachable. DROP: the message is not a stored customer message.
    """
    async with _connection(runtime) as conn:
        analysis = await request_insight(conn, event)
    ids = {"message_id": str(event.message_id), "request_id": str(event.request_id)}
    if analysis is None:
        log.info("insight request ignored: handled or analysis in progress", extra=ids)
    else:
        log.info("insight requested", extra={**ids, "revision": analysis.revision})
    runtime.relay.wake()


async def handle_conversation_changed(runtime: Runtime, event: ConversationChanged) -> None:
    """Apply an operator's status or assignee change (idempotent by ``request_id``) and wake
    the outbox relay; resolving also enqueues ``summary.requested``.

    RETRY: the database is unreachable. DROP: the conversation does not exist.
    """
    async with _connection(runtime) as conn:
        updated = await change_conversation(conn, event)
    ids = {"conversation_id": str(event.conversation_id), "request_id": str(event.request_id)}
    if updated is None:
        log.info("conversation change ignored: handled already or nothing to change", extra=ids)
    else:
        log.info("conversation changed", extra={**ids, "version": updated.version})
    runtime.relay.wake()


async def handle_intent_corrected(runtime: Runtime, event: IntentCorrected) -> None:
    """Store an operator's intent correction as a labelled example (idempotent by
    ``request_id``) and wake the outbox relay.

    RETRY: the database is unreachable. DROP: no such customer message.
    """
    async with _connection(runtime) as conn:
        stored = await correct_intent(conn, event)
    ids = {"message_id": str(event.message_id), "request_id": str(event.request_id)}
    log.info("intent corrected" if stored else "intent correction handled already", extra=ids)
    runtime.relay.wake()


async def handle_summary_completed(runtime: Runtime, event: SummaryCompleted) -> None:
    """Store a resolution summary, if it is of the current resolution, and wake the relay.

    A duplicate or stale one is counted in ``inbox_redeliveries_total{kind="summary"}``.
    RETRY: the database is unreachable. DROP: no such summary was requested.
    """
    async with _connection(runtime) as conn:
        stored = await store_summary(conn, event)
    if not stored:
        metrics.REDELIVERIES.labels("summary").inc()
        log.info(
            "summary ignored: stored already or of an earlier resolve",
            extra={"conversation_id": str(event.conversation_id), "resolution": event.resolution},
        )
    runtime.relay.wake()


async def handle_search_requested(runtime: Runtime, event: SearchRequested) -> None:
    """Run an operator's full-text search and write the :class:`SearchResult` under
    ``search:{request_id}`` with a TTL of ``SEARCH_RESULT_TTL_S``, where the gateway that
    published the request is waiting. Read only, so a redelivery just writes the key again; a
    request older than the TTL is skipped (its gateway gave up long ago).

    RETRY: the database or the state store is unreachable. DROP: data the schema refuses (an
    empty or over-long query, a bad limit), or a query the database refuses. A query that
    cannot be answered within bounds (:class:`~messaging.search.SearchRefused`) is answered:
    its result carries the reason in ``error`` and no items.
    """
    ids = {"request_id": str(event.request_id), "requested_by": event.requested_by}
    if _nobody_waits(event.requested_at, "search", ids):
        return
    started = time.perf_counter()
    refused = None
    try:
        async with _connection(runtime) as conn:
            items = await search_conversations(
                conn, event.query, event.limit, runtime.settings.search_statement_timeout_ms
            )
    except SearchRefused as exc:
        items, refused = [], str(exc)
        log.info("search refused", extra={**ids, "reason": refused})
    took_ms = (time.perf_counter() - started) * 1000
    result = SearchResult(
        request_id=event.request_id,
        query=event.query,
        items=items,
        took_ms=round(took_ms, 2),
        error=refused,
    )
    await runtime.sidecar.save_states(
        {search_key(event.request_id): result}, ttl_s=SEARCH_RESULT_TTL_S
    )
    log.info("search answered", extra={**ids, "hits": len(items), "took_ms": round(took_ms, 1)})


async def handle_inbox_page_requested(runtime: Runtime, event: InboxPageRequested) -> None:
    """Read one page of the inbox from PostgreSQL (``limit`` conversations from ``offset``,
    newest activity first) and write the :class:`InboxPageResult` under
    ``inbox-page:{request_id}`` with a TTL of ``SEARCH_RESULT_TTL_S``, where the gateway that
    published the request is waiting. Read only, so a redelivery writes the key again; a
    request older than the TTL is skipped.

    RETRY: the database or the state store is unreachable. DROP: a bad offset or limit.
    """
    ids = {"request_id": str(event.request_id), "requested_by": event.requested_by}
    if _nobody_waits(event.requested_at, "inbox page", ids):
        return
    started = time.perf_counter()
    async with _connection(runtime) as conn:
        items = await load_summaries(conn, limit=event.limit, offset=event.offset)
    took_ms = round((time.perf_counter() - started) * 1000, 2)
    result = InboxPageResult(request_id=event.request_id, items=items, took_ms=took_ms)
    await runtime.sidecar.save_states(
        {inbox_page_key(event.request_id): result}, ttl_s=SEARCH_RESULT_TTL_S
    )
    log.info("inbox page answered", extra={**ids, "offset": event.offset, "took_ms": took_ms})


async def handle_dead_letter(runtime: Runtime, letter: DeadLetter) -> None:
    """Keep a dead letter in ``dead_letters`` (once per topic and event id), as JSON text when
    ``jsonb`` cannot hold its data (see :func:`~messaging.store.store_dead_letter`). RETRY:
    the database is unreachable."""
    async with _connection(runtime) as conn:
        await store_dead_letter(conn, letter)


def _nobody_waits(requested_at: datetime | None, what: str, ids: dict[str, str]) -> bool:
    """Whether a query was published longer than ``SEARCH_RESULT_TTL_S`` ago: its gateway
    has given up, so it is skipped (and logged as such)."""
    if requested_at is None:
        return False
    age_s = (datetime.now(UTC) - requested_at).total_seconds()
    if age_s <= SEARCH_RESULT_TTL_S:
        return False
    log.info(f"{what} skipped: nobody waits for it", extra={**ids, "age_s": age_s})
    return True


@asynccontextmanager
async def _connection(runtime: Runtime) -> AsyncIterator[psycopg.AsyncConnection]:
    """A pooled connection; psycopg errors become the two error types."""
    try:
        async with runtime.pool.connection() as conn:
            yield conn
    except (psycopg.DataError, psycopg.IntegrityError) as exc:
        raise PoisonError(f"database refused the event: {exc}") from exc
    except psycopg.Error as exc:
        raise TransientError(f"database unavailable: {exc}") from exc


def register(
    dapr_app: DaprApp,
    runtime: Runtime,
    bulk: tuple[int, int] = (BULK_MAX_MESSAGES, BULK_MAX_AWAIT_MS),
) -> None:
    """Subscribe messaging to ``messages.submitted`` and ``ai.completed`` in bulk (many events
    to a request: ``bulk`` is ``(BULK_MAX_MESSAGES, BULK_MAX_AWAIT_MS)``), and to
    ``insight.requested``, ``conversation.changed``, ``intent.corrected``, ``summary.completed``,
    ``search.requested`` and ``inbox.page.requested``, and to the
    dead-letter topics of every work topic."""
    options = {"max_messages": bulk[0], "max_await_ms": bulk[1]}
    subscribe_bulk(
        dapr_app,
        TOPIC_MESSAGES_SUBMITTED,
        MessageSubmitted,
        lambda entries: handle_submitted(runtime, entries),
        **options,
    )
    subscribe_bulk(
        dapr_app,
        TOPIC_AI_COMPLETED,
        AiCompleted,
        lambda entries: handle_ai_completed(runtime, entries),
        **options,
    )
    subscribe(
        dapr_app,
        TOPIC_INSIGHT_REQUESTED,
        InsightRequested,
        lambda e: handle_insight_requested(runtime, e),
    )
    subscribe(
        dapr_app,
        TOPIC_CONVERSATION_CHANGED,
        ConversationChanged,
        lambda e: handle_conversation_changed(runtime, e),
    )
    subscribe(
        dapr_app,
        TOPIC_INTENT_CORRECTED,
        IntentCorrected,
        lambda e: handle_intent_corrected(runtime, e),
    )
    subscribe(
        dapr_app,
        TOPIC_SUMMARY_COMPLETED,
        SummaryCompleted,
        lambda e: handle_summary_completed(runtime, e),
    )
    subscribe(
        dapr_app,
        TOPIC_SEARCH_REQUESTED,
        SearchRequested,
        lambda e: handle_search_requested(runtime, e),
    )
    subscribe(
        dapr_app,
        TOPIC_INBOX_PAGE_REQUESTED,
        InboxPageRequested,
        lambda e: handle_inbox_page_requested(runtime, e),
    )
    work_topics = (
        TOPIC_MESSAGES_SUBMITTED,
        TOPIC_MESSAGE_CREATED,
        TOPIC_AI_COMPLETED,
        TOPIC_INSIGHT_REQUESTED,
        TOPIC_ANALYSIS_REQUESTED,
        TOPIC_CONVERSATION_CHANGED,
        TOPIC_SUMMARY_REQUESTED,
        TOPIC_SUMMARY_COMPLETED,
        TOPIC_SEARCH_REQUESTED,
        TOPIC_INBOX_PAGE_REQUESTED,
        TOPIC_INTENT_CORRECTED,
    )
    for topic in work_topics:
        subscribe_dead_letters(dapr_app, topic, lambda letter: handle_dead_letter(runtime, letter))

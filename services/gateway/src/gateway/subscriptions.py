"""The gateway's Dapr subscriptions: ``conversation.updated`` and ``insight.delta`` -> every
operator socket connected to this replica; ``conversation.updated`` also -> the chat widget's
sockets of that conversation."""

from collections.abc import Sequence
from uuid import UUID

from dapr.ext.fastapi import DaprApp
from inbox_common.errors import TransientError
from inbox_common.events import (
    TOPIC_CONVERSATION_UPDATED,
    TOPIC_INSIGHT_DELTA,
    ConversationUpdated,
    InsightDelta,
)
from inbox_common.keys import conversation_key
from inbox_common.read_models import Conversation
from inbox_common.settings import BULK_MAX_AWAIT_MS, BULK_MAX_MESSAGES
from inbox_common.sidecar import Sidecar
from inbox_common.subscriptions import Entry, Outcome, subscribe, subscribe_bulk
from opentelemetry import trace

from gateway.core.customers import customer_view
from gateway.live import CustomerHub, Hub

_tracer = trace.get_tracer(__name__)


async def handle_updated(
    sidecar: Sidecar,
    hub: Hub,
    entries: Sequence[Entry[ConversationUpdated]],
    customers: CustomerHub | None = None,
) -> list[Outcome]:
    """Push each changed conversation's inbox row to every operator connected to this
    replica, and what the customer sees of it (:func:`~gateway.core.customers.customer_view`)
    to the widget sockets of that conversation here, once per conversation and delivery: of
    several events of one conversation the newest is pushed, since the read model it reads
    holds what the older ones announced too. The read models come in one bulk read.

    Returns:
        Per entry: ``None``, or a :class:`TransientError` (RETRY) when its conversation's read
        model is missing or older than the newest event (messaging writes it before
        publishing, so that means a lagging replica of the state store). Never DROP. With no
        socket for a conversation connected nothing is read for it: a new replica's fresh
        consumer group may start with a backlog of old events.

    Raises:
        TransientError: the state store cannot be read (every entry is retried).
    """
    newest: dict[UUID, Entry[ConversationUpdated]] = {}
    for entry in entries:
        conversation_id = entry.event.conversation_id
        if not len(hub) and not (customers is not None and customers.watched(conversation_id)):
            continue
        known = newest.get(conversation_id)
        if known is None or entry.event.version > known.event.version:
            newest[conversation_id] = entry
    if not newest:
        return [None] * len(entries)
    models = await sidecar.get_states([conversation_key(c) for c in newest])
    failed: dict[UUID, TransientError] = {}
    for conversation_id, entry in newest.items():
        with entry.span(TOPIC_CONVERSATION_UPDATED):
            try:
                _push(hub, customers, entry.event, models[conversation_key(conversation_id)])
            except TransientError as exc:
                failed[conversation_id] = exc
    return [failed.get(entry.event.conversation_id) for entry in entries]


def _push(
    hub: Hub, customers: CustomerHub | None, event: ConversationUpdated, raw: bytes | None
) -> int:
    """Push the read model ``raw`` of ``event``'s conversation; returns how many sockets got
    it. Raises :class:`TransientError` when it is missing or older than ``event``."""
    if raw is None:
        raise TransientError(f"read model for {event.conversation_id} not found yet")
    conversation = Conversation.model_validate_json(raw)
    if conversation.version < event.version:
        raise TransientError(
            f"read model version {conversation.version} older than event {event.version}"
        )
    with _tracer.start_as_current_span("websocket push conversation.updated") as span:
        context = span.get_span_context()
        sent = 0
        if customers is not None and customers.watched(event.conversation_id):
            view = customer_view(event.conversation_id, conversation)
            sent += customers.send(event.conversation_id, {"type": "conversation", **view})
        sent += hub.broadcast(
            {
                "type": "conversation.updated",
                "conversation_id": str(event.conversation_id),
                "version": conversation.version,
                "reason": event.reason,
                "conversation": conversation.summary.model_dump(mode="json"),
                # the trace this change travelled in, for the UI's link to it (None untraced)
                "trace_id": f"{context.trace_id:032x}" if context.is_valid else None,
            }
        )
        span.set_attribute("inbox.websocket.sockets", sent)
        span.set_attribute("inbox.conversation_id", str(event.conversation_id))
        return sent


def handle_delta(hub: Hub, event: InsightDelta, customers: CustomerHub | None = None) -> int:
    """Push a partial suggested reply to every operator socket here, and to the widget
    sockets of its conversation when the AI assistant answers that customer itself; returns
    how many got it. The page shows it only under its message while that insight is
    ``processing``; the widget as the assistant's reply being written."""
    payload = {"type": "insight.delta", **event.model_dump(mode="json")}
    sent = hub.broadcast(payload)
    if event.to_customer and customers is not None and customers.watched(event.conversation_id):
        sent += customers.send(event.conversation_id, payload)
    return sent


def register(
    dapr_app: DaprApp,
    sidecar: Sidecar,
    hub: Hub,
    customers: CustomerHub,
    bulk: tuple[int, int] = (BULK_MAX_MESSAGES, BULK_MAX_AWAIT_MS),
) -> None:
    """Subscribe the gateway to ``conversation.updated`` and ``insight.delta``; the first in
    bulk, ``bulk`` being ``(BULK_MAX_MESSAGES, BULK_MAX_AWAIT_MS)``."""

    async def on_updated(entries: Sequence[Entry[ConversationUpdated]]) -> list[Outcome]:
        return await handle_updated(sidecar, hub, entries, customers)

    async def on_delta(event: InsightDelta) -> None:
        handle_delta(hub, event, customers)

    subscribe_bulk(
        dapr_app,
        TOPIC_CONVERSATION_UPDATED,
        ConversationUpdated,
        on_updated,
        max_messages=bulk[0],
        max_await_ms=bulk[1],
    )
    subscribe(dapr_app, TOPIC_INSIGHT_DELTA, InsightDelta, on_delta)

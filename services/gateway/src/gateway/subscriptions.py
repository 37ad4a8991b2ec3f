"""The gateway's Dapr subscriptions: ``conversation.updated`` and ``insight.delta`` -> every
operator socket connected to this replica; ``conversation.updated`` also -> the chat widget's
sockets of that conversation."""

from dapr.ext.fastapi import DaprApp
from inbox_common.errors import TransientError
from inbox_common.events import (
    TOPIC_CONVERSATION_UPDATED,
    TOPIC_INSIGHT_DELTA,
    ConversationUpdated,
    InsightDelta,
    conversation_key,
)
from inbox_common.read_models import Conversation
from inbox_common.sidecar import Sidecar
from inbox_common.subscriptions import subscribe
from opentelemetry import trace

from gateway.core.customers import customer_view
from gateway.live import CustomerHub, Hub

_tracer = trace.get_tracer(__name__)


async def handle_updated(
    sidecar: Sidecar, hub: Hub, event: ConversationUpdated, customers: CustomerHub | None = None
) -> int:
    """Push the conversation's inbox row to every operator connected to this replica, and
    what the customer sees of it (:func:`~gateway.core.customers.customer_view`) to the
    widget sockets of that conversation here.

    Returns how many sockets got it. RETRY: the read model cannot be read, or is older than
    the event (messaging writes it before publishing, so that means a lagging replica of the
    state store). Never DROP. With no socket for it connected it returns 0 without reading
    state: a new replica's fresh consumer group may start with a backlog of old events.
    """
    watched = customers is not None and customers.watched(event.conversation_id)
    if not len(hub) and not watched:
        return 0
    raw = await sidecar.get_state(conversation_key(event.conversation_id))
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
        if watched:
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


def register(dapr_app: DaprApp, sidecar: Sidecar, hub: Hub, customers: CustomerHub) -> None:
    """Subscribe the gateway to ``conversation.updated`` and ``insight.delta``."""

    async def on_updated(event: ConversationUpdated) -> None:
        await handle_updated(sidecar, hub, event, customers)

    async def on_delta(event: InsightDelta) -> None:
        handle_delta(hub, event, customers)

    subscribe(dapr_app, TOPIC_CONVERSATION_UPDATED, ConversationUpdated, on_updated)
    subscribe(dapr_app, TOPIC_INSIGHT_DELTA, InsightDelta, on_delta)

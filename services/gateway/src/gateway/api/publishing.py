"""Publishing submitted messages and conversation changes, shared by the operator and
customer routes."""

from typing import Literal
from uuid import UUID

from fastapi import HTTPException, status
from inbox_common import metrics
from inbox_common.errors import TransientError
from inbox_common.events import TOPIC_MESSAGES_SUBMITTED, MessageSubmitted
from inbox_common.sidecar import Sidecar
from pydantic import BaseModel


class Accepted(BaseModel):
    message_id: UUID
    conversation_id: UUID
    status: Literal["accepted"] = "accepted"


class ChangeAccepted(BaseModel):
    request_id: UUID
    conversation_id: UUID
    status: Literal["accepted"] = "accepted"


async def publish(sidecar: Sidecar, topic: str, event: BaseModel, retry_hint: str) -> None:
    """Publish ``event`` on ``topic``; 503 with ``Retry-After: 2`` and ``retry_hint`` in the
    reason when the sidecar or broker is down."""
    try:
        await sidecar.publish(topic, event)
    except TransientError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"message bus unavailable, {retry_hint}: {exc}",
            headers={"Retry-After": "2"},
        ) from None


async def publish_submitted(sidecar: Sidecar, event: MessageSubmitted) -> Accepted:
    """Publish ``event`` on ``messages.submitted``; 503 with ``Retry-After`` if the bus is down.
    Counted in ``inbox_messages_received_total{author_role}`` once published."""
    await publish(sidecar, TOPIC_MESSAGES_SUBMITTED, event, "retry with the same message_id")
    metrics.MESSAGES_RECEIVED.labels(event.author_role.value).inc()
    return Accepted(message_id=event.message_id, conversation_id=event.conversation_id)

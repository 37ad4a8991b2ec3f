"""Submitting messages and publishing conversation changes, shared by the operator and
customer routes."""

from datetime import UTC, datetime
from typing import Literal
from uuid import UUID, uuid4

from fastapi import HTTPException, status
from inbox_common import metrics
from inbox_common.errors import TransientError
from inbox_common.events import (
    TOPIC_MESSAGES_SUBMITTED,
    AssistantMode,
    AuthorRole,
    MessageSubmitted,
)
from inbox_common.sidecar import Sidecar
from pydantic import BaseModel

from gateway.core.owners import NotTheOwner, claim
from gateway.core.polling import wait_for_state


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


async def ask(
    sidecar: Sidecar, topic: str, query: BaseModel, answer_key: str, timeout_s: float, what: str
) -> bytes:
    """Publish ``query`` on ``topic`` and wait for its answer under ``answer_key`` in the
    state store, where messaging writes it: a query to another service through Dapr alone.

    Args:
        query: an event with a ``request_id``, named in the 504's reason.
        timeout_s: how long to wait for the answer, in seconds.
        what: what was asked, for the reasons (``"search"``).

    Returns:
        The answer as stored (JSON bytes).

    Raises:
        HTTPException: 503 with ``Retry-After`` when the bus is down; 504 when no answer
            came within ``timeout_s``.
        TransientError: the state store did not answer.
    """
    await publish(sidecar, topic, query, "retry shortly")
    raw = await wait_for_state(sidecar, answer_key, timeout_s)
    if raw is None:
        raise HTTPException(
            status.HTTP_504_GATEWAY_TIMEOUT,
            f"{what} timed out: messaging did not answer request "
            f"{getattr(query, 'request_id', '')} within {timeout_s:g} s; retry shortly",
        )
    return raw


async def submit(
    sidecar: Sidecar,
    conversation_id: UUID,
    author_role: AuthorRole,
    author_id: str,
    body: str,
    message_id: UUID | None = None,
    subject: str | None = None,
    assistant_mode: AssistantMode = AssistantMode.SUGGEST,
    not_the_owner_hint: str = "",
) -> Accepted:
    """The one way a message enters: a customer's claims the conversation first
    (:func:`gateway.core.owners.claim`), then ``messages.submitted`` is published (a new
    ``message_id`` when none is given) and counted in
    ``inbox_messages_received_total{author_role}``.

    Raises:
        HTTPException: 409 when the conversation belongs to another customer (the reason
            ends with ``not_the_owner_hint``); 503 with ``Retry-After`` when the bus is down.
        TransientError: the state store did not answer the claim (a 503 to retry).
    """
    if author_role is AuthorRole.CUSTOMER:
        try:
            await claim(sidecar, conversation_id, author_id)
        except NotTheOwner as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, f"{exc}{not_the_owner_hint}") from None
    event = MessageSubmitted(
        message_id=message_id or uuid4(),
        conversation_id=conversation_id,
        author_role=author_role,
        author_id=author_id,
        subject=subject,
        body=body,
        submitted_at=datetime.now(UTC),
        assistant_mode=assistant_mode,
    )
    await publish(sidecar, TOPIC_MESSAGES_SUBMITTED, event, "retry with the same message_id")
    metrics.MESSAGES_RECEIVED.labels(event.author_role.value).inc()
    return Accepted(message_id=event.message_id, conversation_id=event.conversation_id)

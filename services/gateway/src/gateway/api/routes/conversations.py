"""The operators' REST API: the inbox, one conversation, operator replies, regenerating an
insight, changing a conversation's status and assignee.

Reads come from the read models messaging projects into the Dapr state store; a reply is
published as ``messages.submitted`` and shows up once messaging has stored it; a regenerate
request is published as ``insight.requested`` and shows up as the insight going back to
``processing``; a status or assignee change is published as ``conversation.changed``.
"""

from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import UUID, uuid4

from fastapi import APIRouter, HTTPException, Query, status
from inbox_common.events import (
    INBOX_KEY,
    TOPIC_CONVERSATION_CHANGED,
    TOPIC_INSIGHT_REQUESTED,
    AuthorRole,
    ConversationChanged,
    ConversationStatus,
    InsightRequested,
    InsightStatus,
    MessageBody,
    MessageSubmitted,
    conversation_key,
)
from inbox_common.read_models import Conversation, ConversationSummary, Inbox
from inbox_common.sidecar import Sidecar
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.api.deps import CurrentOperator, SettingsDep, SidecarDep
from gateway.api.publishing import Accepted, publish, publish_submitted

router = APIRouter(prefix="/api/v1/conversations", tags=["conversations"])


class InboxPage(BaseModel):
    items: list[ConversationSummary] = Field(description="Newest activity first")
    total: int
    limit: int
    offset: int


class ReplyRequest(BaseModel):
    message_id: UUID | None = Field(
        default=None, description="Idempotency key; the gateway makes one when omitted"
    )
    body: MessageBody


async def read_conversation(sidecar: Sidecar, conversation_id: UUID) -> Conversation:
    """The conversation read model; 404 when messaging has not stored it."""
    raw = await sidecar.get_state(conversation_key(conversation_id))
    if raw is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"conversation {conversation_id} not found")
    return Conversation.model_validate_json(raw)


@router.get("")
async def list_conversations(
    _: CurrentOperator,
    sidecar: SidecarDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> InboxPage:
    """The inbox, newest activity first, ``limit`` items from ``offset``."""
    raw = await sidecar.get_state(INBOX_KEY)
    inbox = Inbox.model_validate_json(raw) if raw else Inbox(items=[], total=0)
    return InboxPage(
        items=inbox.items[offset : offset + limit], total=inbox.total, limit=limit, offset=offset
    )


@router.get("/{conversation_id}", responses={404: {"description": "Unknown conversation"}})
async def get_conversation(
    conversation_id: UUID, _: CurrentOperator, sidecar: SidecarDep
) -> Conversation:
    """One conversation with its messages (oldest first) and their AI insights."""
    return await read_conversation(sidecar, conversation_id)


@router.post(
    "/{conversation_id}/messages",
    status_code=status.HTTP_202_ACCEPTED,
    responses={404: {"description": "Unknown conversation"}, 503: {"description": "Bus down"}},
)
async def reply(
    conversation_id: UUID, body: ReplyRequest, operator: CurrentOperator, sidecar: SidecarDep
) -> Accepted:
    """Send an operator reply. Accepted for delivery; retry with the same ``message_id``."""
    await read_conversation(sidecar, conversation_id)
    event = MessageSubmitted(
        message_id=body.message_id or uuid4(),
        conversation_id=conversation_id,
        author_role=AuthorRole.OPERATOR,
        author_id=operator.username,
        body=body.body,
        submitted_at=datetime.now(UTC),
    )
    return await publish_submitted(sidecar, event)


class InsightRequestAccepted(BaseModel):
    request_id: UUID
    message_id: UUID
    conversation_id: UUID
    status: Literal["accepted"] = "accepted"


@router.post(
    "/{conversation_id}/messages/{message_id}/regenerate-insight",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        404: {"description": "Unknown conversation or message"},
        409: {"description": "Not a customer message, or its insight is being made"},
        503: {"description": "Bus down"},
    },
)
async def regenerate_insight(
    conversation_id: UUID, message_id: UUID, operator: CurrentOperator, sidecar: SidecarDep
) -> InsightRequestAccepted:
    """Ask the AI for a fresh insight on a customer message (a new revision replaces the
    shown one once it is ready). 409 while an analysis of the message is in progress."""
    conversation = await read_conversation(sidecar, conversation_id)
    message = next((m for m in conversation.messages if m.message_id == message_id), None)
    if message is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"message {message_id} not found")
    if message.insight is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "only customer messages have an insight")
    if message.insight.status is InsightStatus.PROCESSING:
        raise HTTPException(status.HTTP_409_CONFLICT, "the insight is already being made")
    event = InsightRequested(
        request_id=uuid4(),
        message_id=message_id,
        conversation_id=conversation_id,
        requested_by=operator.username,
        requested_at=datetime.now(UTC),
    )
    await publish(sidecar, TOPIC_INSIGHT_REQUESTED, event, "retry shortly")
    return InsightRequestAccepted(
        request_id=event.request_id, message_id=message_id, conversation_id=conversation_id
    )


class ConversationPatch(BaseModel):
    """A change of status, assignee, or both; a field left out is left as it is."""

    model_config = ConfigDict(extra="forbid")

    status: ConversationStatus | None = Field(
        default=None, description="`open`, `pending` or `resolved`"
    )
    assignee: str | None = Field(
        default=None,
        max_length=128,
        description="A configured operator's username, or null to unassign",
    )

    @model_validator(mode="after")
    def _something_changes(self) -> "ConversationPatch":
        if not self.model_fields_set:
            raise ValueError("give `status`, `assignee` or both")
        if "status" in self.model_fields_set and self.status is None:
            raise ValueError("`status` must be open, pending or resolved, not null")
        return self


class ChangeAccepted(BaseModel):
    request_id: UUID
    conversation_id: UUID
    status: Literal["accepted"] = "accepted"


@router.patch(
    "/{conversation_id}",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        404: {"description": "Unknown conversation"},
        422: {"description": "Empty body, unknown status or assignee"},
        503: {"description": "Bus down"},
    },
)
async def change_conversation(
    conversation_id: UUID,
    body: ConversationPatch,
    operator: CurrentOperator,
    sidecar: SidecarDep,
    settings: SettingsDep,
) -> ChangeAccepted:
    """Change the status (``open``, ``pending``, ``resolved``) or the assignee (a configured
    operator, or null). Accepted for delivery: the read model shows the change once messaging
    has stored it. Resolving also starts an AI summary of the whole conversation, in the
    background."""
    assignee_set = "assignee" in body.model_fields_set
    if assignee_set and body.assignee is not None and body.assignee not in settings.accounts:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            f"assignee: {body.assignee!r} is not an operator",
        )
    await read_conversation(sidecar, conversation_id)
    event = ConversationChanged(
        request_id=uuid4(),
        conversation_id=conversation_id,
        status=body.status,
        assignee_set=assignee_set,
        assignee=body.assignee if assignee_set else None,
        changed_by=operator.username,
        changed_at=datetime.now(UTC),
    )
    await publish(sidecar, TOPIC_CONVERSATION_CHANGED, event, "retry shortly")
    return ChangeAccepted(request_id=event.request_id, conversation_id=conversation_id)

"""The customer channel: where customer messages enter, authenticated by an API key."""

from datetime import UTC, datetime
from uuid import UUID, uuid4

from fastapi import APIRouter, status
from inbox_common.events import AuthorId, AuthorRole, MessageBody, MessageSubmitted
from pydantic import BaseModel, Field

from gateway.api.deps import ChannelKey, SidecarDep
from gateway.api.publishing import Accepted, publish_submitted

router = APIRouter(prefix="/api/v1/inbound", tags=["customer channel"])


class InboundMessage(BaseModel):
    message_id: UUID | None = Field(
        default=None, description="Idempotency key; resending the same one stores it once"
    )
    conversation_id: UUID | None = Field(
        default=None, description="Existing thread to continue; omitted opens a new one"
    )
    customer_id: AuthorId = Field(description="The customer's handle on this channel")
    subject: str | None = Field(default=None, max_length=200)
    body: MessageBody


@router.post(
    "/messages",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[ChannelKey],
    responses={
        401: {"description": "Missing or unknown API key"},
        503: {"description": "Bus down"},
    },
)
async def receive(message: InboundMessage, sidecar: SidecarDep) -> Accepted:
    """Accept a customer message for storage; it reaches operators within moments."""
    event = MessageSubmitted(
        message_id=message.message_id or uuid4(),
        conversation_id=message.conversation_id or uuid4(),
        author_role=AuthorRole.CUSTOMER,
        author_id=message.customer_id,
        subject=message.subject,
        body=message.body,
        submitted_at=datetime.now(UTC),
    )
    return await publish_submitted(sidecar, event)

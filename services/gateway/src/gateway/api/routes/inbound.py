"""The customer channel: where customer messages enter, authenticated by an API key."""

from uuid import UUID, uuid4

from fastapi import APIRouter, status
from inbox_common.events import AuthorId, AuthorRole, MessageBody, Subject
from pydantic import BaseModel, Field

from gateway.api.deps import ChannelKey, SidecarDep
from gateway.api.publishing import Accepted, submit

router = APIRouter(prefix="/api/v1/inbound", tags=["customer channel"])


class InboundMessage(BaseModel):
    message_id: UUID | None = Field(
        default=None, description="Idempotency key; resending the same one stores it once"
    )
    conversation_id: UUID | None = Field(
        default=None,
        description="Existing thread of this customer to continue; omitted opens a new one",
    )
    customer_id: AuthorId = Field(description="The customer's handle on this channel")
    subject: Subject | None = Field(default=None, description="Subject of a new conversation")
    body: MessageBody


@router.post(
    "/messages",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[ChannelKey],
    responses={
        401: {"description": "Missing or unknown API key"},
        409: {"description": "The conversation belongs to another customer"},
        422: {"description": "A field missing, too long, or holding a control character"},
        503: {"description": "Bus or state store down"},
    },
)
async def receive(message: InboundMessage, sidecar: SidecarDep) -> Accepted:
    """Accept a customer message for storage; it reaches operators within moments. A 202
    means it will be stored: resend with the same ``message_id`` after a 503 or no answer.

    422 names the field that is missing, too long, or holds a character the store cannot
    keep (a control character other than tab and line breaks in ``body``, any in
    ``customer_id`` and ``subject``, or a lone surrogate). 409 when ``conversation_id``
    belongs to another ``customer_id`` (the first customer to write to it owns it): nothing
    is stored, and the conversation is not reopened.
    """
    return await submit(
        sidecar,
        message.conversation_id or uuid4(),
        AuthorRole.CUSTOMER,
        message.customer_id,
        message.body,
        message_id=message.message_id,
        subject=message.subject,
        not_the_owner_hint="; omit conversation_id to open a new conversation",
    )

"""The intent taxonomy, and operators' corrections of a message's intent.

A correction is published as ``intent.corrected``; messaging stores it as a labelled example
and sets the insight's intent, and every ai-worker replica learns it
(:mod:`ai_worker.learning`).
"""

from datetime import UTC, datetime
from uuid import UUID, uuid4

from fastapi import APIRouter, HTTPException, status
from inbox_common.events import TOPIC_INTENT_CORRECTED, AuthorRole, IntentCorrected
from inbox_common.keys import INTENT_EXAMPLES_KEY
from inbox_common.knowledge import OTHER, intents
from inbox_common.read_models import IntentExamples
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.deps import AdminOperator, CurrentOperator, SidecarDep
from gateway.api.publishing import ChangeAccepted, publish
from gateway.api.routes.conversations import read_conversation

router = APIRouter(prefix="/api/v1", tags=["intents"])


class IntentInfo(BaseModel):
    name: str
    description: str
    escalate: bool = Field(description="Its messages go to a human specialist")


@router.get("/intents")
def list_intents(_: CurrentOperator) -> list[IntentInfo]:
    """The deployment's intent taxonomy, by name; ``other`` is the intent of a message that
    fits none of them."""
    return [
        IntentInfo(name=i.name, description=i.description, escalate=i.escalate)
        for i in intents().values()
    ]


@router.get("/intent-examples")
async def list_intent_examples(_: AdminOperator, sidecar: SidecarDep) -> IntentExamples:
    """The operators' corrections the AI learns from, oldest first, with who and when
    (admins only): the read model messaging keeps in the state store."""
    raw = await sidecar.get_state(INTENT_EXAMPLES_KEY)
    return IntentExamples.model_validate_json(raw) if raw else IntentExamples(version=0)


class IntentCorrection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    intent: str = Field(max_length=64, description="One of `GET /api/v1/intents`, or other")


@router.put(
    "/conversations/{conversation_id}/messages/{message_id}/intent",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        404: {"description": "Unknown conversation, or no such customer message in it"},
        422: {"description": "An intent outside the taxonomy"},
        503: {"description": "Bus down"},
    },
)
async def correct_intent(
    conversation_id: UUID,
    message_id: UUID,
    body: IntentCorrection,
    operator: CurrentOperator,
    sidecar: SidecarDep,
) -> ChangeAccepted:
    """Give a customer message its right intent. Accepted for delivery: the insight shows it
    once messaging has stored it, and the AI learns it as a labelled example (the same text
    gets this intent from then on, on every replica, within seconds)."""
    if body.intent not in intents() and body.intent != OTHER:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            f"intent: {body.intent!r} is not in the taxonomy (GET /api/v1/intents)",
        )
    conversation = await read_conversation(sidecar, conversation_id)
    if not any(
        m.message_id == message_id and m.author_role is AuthorRole.CUSTOMER
        for m in conversation.messages
    ):
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"no customer message {message_id} in conversation {conversation_id}",
        )
    event = IntentCorrected(
        request_id=uuid4(),
        conversation_id=conversation_id,
        message_id=message_id,
        intent=body.intent,
        corrected_by=operator.username,
        corrected_at=datetime.now(UTC),
    )
    await publish(sidecar, TOPIC_INTENT_CORRECTED, event, "retry shortly")
    return ChangeAccepted(request_id=event.request_id, conversation_id=conversation_id)

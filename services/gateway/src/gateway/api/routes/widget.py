"""The customer's chat widget: sessions, the customer's own conversation, and sending to it.

A site embeds the widget with one script tag (``/widget/loader.js``), which opens
``/widget/frame?channel=<id>`` in an iframe; the frame calls these routes from the gateway's
own origin. A channel's ``allowed_origins`` (``WIDGET_CHANNELS``) are the only sites that may
frame it (CSP ``frame-ancestors``) or call these routes cross-origin (CORS); a request whose
``Origin`` is neither the gateway's nor the channel's is refused with 403. Customer tokens
(:mod:`gateway.core.customers`) open only these routes, each for one conversation.
"""

import json
from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from inbox_common.events import (
    TOPIC_CONVERSATION_CHANGED,
    AssistantMode,
    AuthorRole,
    ConversationChanged,
    ConversationStatus,
    MessageBody,
    MessageSubmitted,
    conversation_key,
)
from inbox_common.read_models import Conversation
from pydantic import BaseModel, Field

from gateway.api.deps import RateLimitsDep, SettingsDep, SidecarDep
from gateway.api.publishing import Accepted, ChangeAccepted, publish, publish_submitted
from gateway.core import customers
from gateway.core.config import CHANNEL_ID_PATTERN, Settings, WidgetChannel
from gateway.core.customers import CustomerSession, customer_view
from gateway.core.owners import NotTheOwner, claim
from gateway.core.security import InvalidToken
from gateway.middleware import content_security_policy

router = APIRouter(prefix="/api/v1/widget", tags=["chat widget"])
frame_router = APIRouter(include_in_schema=False)

_bearer = HTTPBearer(auto_error=False, description="A widget session's token")
USER_CONVERSATION_PREFIX = "gateway:widget:user:"
"""State key prefix: a signed-in user's conversation (``<prefix><customer id>``)."""


def _channel(settings: Settings, request: Request, channel_id: str) -> WidgetChannel:
    channel = settings.widget_channels.get(channel_id)
    if channel is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"no widget channel {channel_id!r}")
    if not customers.origin_allowed(request.headers, channel):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"origin {request.headers.get('origin')!r} may not use channel {channel_id!r}",
        )
    return channel


def _session_of(settings: Settings, token: HTTPAuthorizationCredentials | None, renew: bool):
    if token is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        session, _ = customers.decode(settings, token.credentials, renew=renew)
    except InvalidToken as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"invalid token: {exc}",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from None
    return session


def current_customer(
    request: Request,
    settings: SettingsDep,
    token: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> CustomerSession:
    """The session of a valid access token (401 otherwise) used from an allowed origin (403)."""
    session = _session_of(settings, token, renew=False)
    _channel(settings, request, session.channel)
    return session


CurrentCustomer = Annotated[CustomerSession, Depends(current_customer)]


class SessionRequest(BaseModel):
    channel: str = Field(pattern=CHANNEL_ID_PATTERN, description="The channel id of the site")
    identity: str | None = Field(
        default=None,
        max_length=4096,
        description="An identity token the site signed for its signed-in user (HS256 JWT)",
    )


class Session(BaseModel):
    access_token: str
    renew_token: str | None = Field(default=None, description="Only when a session starts")
    expires_in: int = Field(description="Seconds the access token is valid")
    conversation_id: UUID
    customer_id: str
    assistant: AssistantMode = Field(
        description="The channel's AI: off, suggest (to operators) or answer (customers)"
    )


def _session(settings: Settings, session: CustomerSession, with_renew: bool) -> Session:
    access, ttl = customers.issue(settings, session, renew=False)
    renew = customers.issue(settings, session, renew=True)[0] if with_renew else None
    return Session(
        access_token=access,
        renew_token=renew,
        expires_in=ttl,
        conversation_id=session.conversation_id,
        customer_id=session.customer_id,
        assistant=settings.widget_channels[session.channel].assistant,
    )


async def _user_conversation(sidecar, customer_id: str) -> UUID:
    """The signed-in user's conversation, made on first use (first write wins across
    replicas, so two tabs opening at once share one)."""
    key = USER_CONVERSATION_PREFIX + customer_id
    for _ in range(5):
        raw, etag = await sidecar.get_state_and_etag(key)
        if raw is not None:
            return UUID(json.loads(raw)["conversation_id"])
        candidate = uuid4()
        if await sidecar.try_save_state(key, json.dumps({"conversation_id": str(candidate)}), etag):
            return candidate
    raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "could not open the conversation")


@router.post(
    "/sessions",
    status_code=status.HTTP_201_CREATED,
    responses={
        401: {"description": "An identity token that is forged, expired or not accepted"},
        403: {"description": "Unknown channel, or an origin the channel does not allow"},
        429: {"description": "Too many new sessions on this channel"},
    },
)
async def start_session(
    body: SessionRequest,
    request: Request,
    settings: SettingsDep,
    sidecar: SidecarDep,
    rate_limits: RateLimitsDep,
) -> Session:
    """Start a widget session: an access token for one conversation, and a renew token the
    browser keeps to come back to it. With ``identity``, the site's signed-in user gets the
    same conversation wherever they sign in; without, each session opens a new one."""
    channel = _channel(settings, request, body.channel)
    await rate_limits.hit("widget_channel", body.channel)
    if body.identity is not None:
        try:
            subject = customers.verify_identity(channel, body.identity)
        except InvalidToken as exc:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc)) from None
        customer_id = customers.user_id(body.channel, subject)
        conversation_id = await _user_conversation(sidecar, customer_id)
    else:
        customer_id = customers.visitor_id(body.channel)
        conversation_id = uuid4()
    try:
        await claim(sidecar, conversation_id, customer_id)
    except NotTheOwner as exc:  # only a corrupted mapping gets here
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    session = CustomerSession(customer_id, body.channel, conversation_id)
    return _session(settings, session, with_renew=True)


@router.post("/sessions/renew", responses={401: {"description": "Invalid or expired"}})
async def renew_session(
    request: Request,
    settings: SettingsDep,
    token: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Session:
    """A new access token for the session of the renew token sent as the bearer token."""
    session = _session_of(settings, token, renew=True)
    _channel(settings, request, session.channel)
    return _session(settings, session, with_renew=False)


class CustomerMessage(BaseModel):
    message_id: UUID | None = Field(
        default=None, description="Idempotency key; resending the same one stores it once"
    )
    body: MessageBody


class CustomerConversation(BaseModel):
    conversation_id: UUID
    version: int = Field(description="0 before the first message is stored")
    status: str
    human_joined: bool = Field(description="An operator replied or took the conversation")
    assistant: str | None = Field(
        description=(
            "answering: the AI answers; handed_off: a person will; off: people only;"
            " None: the AI only suggests to operators"
        )
    )
    messages: list[dict]


@router.get("/conversation")
async def read_conversation(customer: CurrentCustomer, sidecar: SidecarDep) -> CustomerConversation:
    """The customer's conversation as the widget shows it: the messages of the customer and
    the operators (no AI insights, operator names or event log)."""
    raw = await sidecar.get_state(conversation_key(customer.conversation_id))
    conversation = Conversation.model_validate_json(raw) if raw else None
    return CustomerConversation(**customer_view(customer.conversation_id, conversation))


@router.post(
    "/messages",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        401: {"description": "Missing, invalid or expired access token"},
        422: {"description": "Empty, too long, or holding a control character"},
        429: {"description": "Too many messages from this customer or channel"},
        503: {"description": "Bus or state store down: resend with the same message_id"},
    },
)
async def send_message(
    message: CustomerMessage,
    customer: CurrentCustomer,
    settings: SettingsDep,
    sidecar: SidecarDep,
    rate_limits: RateLimitsDep,
) -> Accepted:
    """Accept a message into the customer's own conversation (202: it will be stored)."""
    await rate_limits.hit("customer", customer.customer_id)
    await rate_limits.hit("widget_channel", customer.channel)
    try:
        await claim(sidecar, customer.conversation_id, customer.customer_id)
    except NotTheOwner as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    event = MessageSubmitted(
        message_id=message.message_id or uuid4(),
        conversation_id=customer.conversation_id,
        author_role=AuthorRole.CUSTOMER,
        author_id=customer.customer_id,
        body=message.body,
        submitted_at=datetime.now(UTC),
        assistant_mode=settings.widget_channels[customer.channel].assistant,
    )
    return await publish_submitted(sidecar, event)


ENDED_BY_CUSTOMER = "the customer ended the chat"


@router.post(
    "/conversation/end",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        401: {"description": "Missing, invalid or expired access token"},
        409: {"description": "Nothing to end: no message stored yet, or already resolved"},
        429: {"description": "Too many requests from this customer or channel"},
        503: {"description": "Bus or state store down: try again"},
    },
)
async def end_conversation(
    customer: CurrentCustomer, sidecar: SidecarDep, rate_limits: RateLimitsDep
) -> ChangeAccepted:
    """The customer ends the chat: the conversation is resolved (202: it will be), logged with
    the reason ``the customer ended the chat``, and summarised as any resolve is. Writing
    again reopens it."""
    await rate_limits.hit("customer", customer.customer_id)
    await rate_limits.hit("widget_channel", customer.channel)
    raw = await sidecar.get_state(conversation_key(customer.conversation_id))
    if raw is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "nothing to end: no message stored yet")
    conversation = Conversation.model_validate_json(raw)
    if conversation.status is ConversationStatus.RESOLVED:
        raise HTTPException(status.HTTP_409_CONFLICT, "the conversation is already resolved")
    event = ConversationChanged(
        request_id=uuid4(),
        conversation_id=customer.conversation_id,
        status=ConversationStatus.RESOLVED,
        changed_by=customer.customer_id,
        changed_at=datetime.now(UTC),
        reason=ENDED_BY_CUSTOMER,
    )
    await publish(sidecar, TOPIC_CONVERSATION_CHANGED, event, "try again shortly")
    return ChangeAccepted(request_id=event.request_id, conversation_id=customer.conversation_id)


@frame_router.get("/widget/frame")
def widget_frame(
    settings: SettingsDep,
    channel: Annotated[str, Query(pattern=CHANNEL_ID_PATTERN, max_length=40)],
) -> HTMLResponse:
    """The widget's page, framed by the channel's sites only (CSP ``frame-ancestors``)."""
    widget_channel = settings.widget_channels.get(channel)
    if widget_channel is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no widget channel {channel!r}")
    page = (settings.frontend_dir / "widget" / "frame.html").read_text()
    policy = content_security_policy(
        frame_ancestors=tuple(widget_channel.allowed_origins), form_action="'none'"
    )
    return HTMLResponse(page, headers={"Content-Security-Policy": policy})

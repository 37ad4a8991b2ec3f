"""The customer's chat widget: sessions, the customer's own conversation, and sending to it.

A site embeds the widget with one script tag (``/widget/loader.js``), which opens
``/widget/frame?channel=<id>`` in an iframe; the frame calls these routes from the gateway's
own origin. A channel's ``allowed_origins`` (``WIDGET_CHANNELS``) are the only sites that may
frame it (CSP ``frame-ancestors``) or call these routes cross-origin (CORS); a request whose
``Origin`` is neither the gateway's nor the channel's is refused with 403, and so is a new
session asked for without any ``Origin`` unless the channel takes ``server_clients``. Customer
tokens (:mod:`gateway.core.customers`) open only these routes, each for one conversation.

Nothing an unauthenticated request asks for outlives it in the state store: an anonymous
session writes nothing until its first message (which claims the conversation), and a renew
token's chain is recorded only when it is first renewed (:mod:`gateway.core.renewals`).
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
)
from inbox_common.keys import conversation_key, user_conversation_key
from inbox_common.read_models import Conversation
from inbox_common.sidecar import compare_and_set
from pydantic import BaseModel, Field

from gateway.api.deps import ClientAddress, RateLimitsDep, SettingsDep, SidecarDep
from gateway.api.publishing import Accepted, ChangeAccepted, publish, submit
from gateway.core import customers
from gateway.core.config import CHANNEL_ID_PATTERN, Settings, WidgetChannel
from gateway.core.customers import CustomerSession, customer_view
from gateway.core.owners import NotTheOwner, claim
from gateway.core.renewals import RenewRefused, rotate
from gateway.core.security import InvalidToken
from gateway.middleware import content_security_policy

router = APIRouter(prefix="/api/v1/widget", tags=["chat widget"])
frame_router = APIRouter(include_in_schema=False)

_bearer = HTTPBearer(auto_error=False, description="A widget session's token")


def _channel(
    settings: Settings, request: Request, channel_id: str, browser_only: bool = False
) -> WidgetChannel:
    channel = settings.widget_channels.get(channel_id)
    if channel is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"no widget channel {channel_id!r}")
    if not customers.origin_allowed(request.headers, channel, browser_only):
        origin = request.headers.get("origin")
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"origin {origin!r} may not use channel {channel_id!r}"
            if origin is not None
            else f"channel {channel_id!r} takes sessions from its sites' browsers only "
            "(no Origin header)",
        )
    return channel


def _invalid_token(reason: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        f"invalid token: {reason}",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def _credentials(token: HTTPAuthorizationCredentials | None) -> str:
    if token is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token.credentials


def current_customer(
    request: Request,
    settings: SettingsDep,
    token: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> CustomerSession:
    """The session of a valid access token (401 otherwise) used from an allowed origin (403)."""
    try:
        session, _ = customers.decode(settings, _credentials(token))
    except InvalidToken as exc:
        raise _invalid_token(str(exc)) from None
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
    renew_token: str = Field(
        description="Keep it in place of the one sent: each renewal retires the token used"
    )
    expires_in: int = Field(description="Seconds the access token is valid")
    conversation_id: UUID
    customer_id: str
    assistant: AssistantMode = Field(
        description="The channel's AI: off, suggest (to operators) or answer (customers)"
    )


def _session(settings: Settings, session: CustomerSession, grant: customers.RenewGrant) -> Session:
    access, ttl = customers.issue(settings, session)
    renew, _ = customers.issue(settings, session, grant)
    return Session(
        access_token=access,
        renew_token=renew,
        expires_in=ttl,
        conversation_id=session.conversation_id,
        customer_id=session.customer_id,
        assistant=settings.widget_channels[session.channel].assistant,
    )


async def _user_conversation(sidecar, customer_id: str) -> UUID:  # noqa: ANN001 - a Sidecar
    """The signed-in user's conversation, made on first use (first write wins across
    replicas, so two tabs opening at once share one)."""

    def change(raw: bytes | None) -> tuple[str | None, UUID]:
        if raw is not None:
            return None, UUID(json.loads(raw)["conversation_id"])
        candidate = uuid4()
        return json.dumps({"conversation_id": str(candidate)}), candidate

    return await compare_and_set(sidecar, user_conversation_key(customer_id), change)


@router.post(
    "/sessions",
    status_code=status.HTTP_201_CREATED,
    responses={
        401: {"description": "An identity token that is forged, expired or not accepted"},
        403: {
            "description": (
                "Unknown channel, an origin the channel does not allow, or no Origin on a "
                "channel for browsers only"
            )
        },
        429: {"description": "Too many new sessions from this address or on this channel"},
    },
)
async def start_session(
    body: SessionRequest,
    request: Request,
    settings: SettingsDep,
    sidecar: SidecarDep,
    rate_limits: RateLimitsDep,
    address: ClientAddress,
) -> Session:
    """Start a widget session: an access token for one conversation, and a renew token the
    browser keeps to come back to it. With ``identity``, the site's signed-in user gets the
    same conversation wherever they sign in; without, each session opens a new one.

    New sessions are limited per client address (``WIDGET_SESSION_RATE_LIMIT``) and per
    channel (``WIDGET_CHANNEL_SESSION_RATE_LIMIT``), apart from the messages of customers
    already chatting (``WIDGET_CHANNEL_RATE_LIMIT``): 429 with ``Retry-After`` beyond either.
    """
    channel = _channel(settings, request, body.channel, browser_only=True)
    await rate_limits.hit("widget_session", address)
    await rate_limits.hit("widget_channel_session", body.channel)
    if body.identity is not None:
        try:
            subject = customers.verify_identity(channel, body.identity)
        except InvalidToken as exc:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc)) from None
        customer_id = customers.user_id(body.channel, subject)
        conversation_id = await _user_conversation(sidecar, customer_id)
        try:
            await claim(sidecar, conversation_id, customer_id)
        except NotTheOwner as exc:  # only a corrupted mapping gets here
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    else:
        # a new random conversation id, known only through the signed token: claimed by the
        # first message, so a session that never writes leaves nothing behind
        customer_id = customers.visitor_id(body.channel)
        conversation_id = uuid4()
    session = CustomerSession(customer_id, body.channel, conversation_id)
    return _session(settings, session, customers.new_grant(settings))


@router.post(
    "/sessions/renew",
    responses={
        401: {"description": "Invalid or expired, already used (the session is then revoked)"},
        429: {"description": "Too many reads and renewals from this customer"},
    },
)
async def renew_session(
    request: Request,
    settings: SettingsDep,
    sidecar: SidecarDep,
    rate_limits: RateLimitsDep,
    token: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Session:
    """A new access token and a new renew token for the session of the renew token sent as
    the bearer token, which is retired. A retired token sent again revokes the session (every
    renew token of it then gets 401); within ``CUSTOMER_RENEW_GRACE_S`` of its rotation it
    gets the same successor instead (two tabs renewing at once)."""
    try:
        session, grant = customers.decode_renew(settings, _credentials(token))
    except InvalidToken as exc:
        raise _invalid_token(str(exc)) from None
    _channel(settings, request, session.channel)
    await rate_limits.hit("customer_read", session.customer_id)
    try:
        successor = await rotate(sidecar, grant, settings.customer_renew_grace_s)
    except RenewRefused as exc:
        raise _invalid_token(str(exc)) from None
    return _session(settings, session, successor)


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


@router.get(
    "/conversation",
    responses={429: {"description": "Too many reads and renewals from this customer"}},
)
async def read_conversation(
    customer: CurrentCustomer, sidecar: SidecarDep, rate_limits: RateLimitsDep
) -> CustomerConversation:
    """The customer's conversation as the widget shows it: the messages of the customer and
    the operators (no AI insights, operator names or event log). Limited per customer with
    renewals (``CUSTOMER_READ_RATE_LIMIT``)."""
    await rate_limits.hit("customer_read", customer.customer_id)
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
    return await submit(
        sidecar,
        customer.conversation_id,
        AuthorRole.CUSTOMER,
        customer.customer_id,
        message.body,
        message_id=message.message_id,
        assistant_mode=settings.widget_channels[customer.channel].assistant,
    )


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

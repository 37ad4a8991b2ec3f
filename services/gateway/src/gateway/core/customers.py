"""Customer sessions of the chat widget: tokens for one customer and one conversation.

A widget session is two JWTs (HS256, python-jose, the algorithm pinned; RFC 8725 section 3.1),
signed with the gateway's ``JWT_SECRET`` but for audiences of their own, so neither opens an
operator route and an operator token opens no customer route:

- the **access token** (``aud`` :data:`ACCESS_AUDIENCE`, ``CUSTOMER_TOKEN_TTL_S``, default 15
  min) reads and writes one conversation, named in its ``cid`` claim;
- the **renew token** (``aud`` :data:`RENEW_AUDIENCE`, ``CUSTOMER_SESSION_TTL_S``, default 30
  days) only gets a new access token for the same customer and conversation, so the same
  browser comes back to its conversation. It is rotated on every use (a new one comes with
  each renewal; :mod:`gateway.core.renewals` detects the reuse of an old one), and carries
  ``fam`` (the session, the same in every token of one chain) and ``jti`` (this token).

Both carry ``sub`` (the customer id), ``chn`` (the channel), ``cid``, ``iss``, ``iat`` and
``exp``, all required on decode. The customer id is ``web:<channel>:<visitor id>`` for an
anonymous visitor, or ``web:<channel>:user:<id>`` when the embedding site vouches for its
signed-in user with an identity token (:func:`verify_identity`), so that user keeps one
conversation on any browser.
"""

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit
from uuid import UUID

from inbox_common.events import AuthorRole, ConversationStatus
from inbox_common.read_models import Conversation
from jose import JWTError, jwt

from gateway.core.config import Settings, WidgetChannel
from gateway.core.security import ALGORITHM, InvalidToken

ACCESS_AUDIENCE = "support-inbox-customer"
RENEW_AUDIENCE = "support-inbox-customer-renew"
IDENTITY_MAX_TTL_S = 3600
"""Longest lifetime an identity token may claim (``exp - iat``), in seconds."""
CLOCK_SKEW_S = 60
"""How far the embedding site's clock may run ahead of the gateway's, in seconds: ``iat`` and
``nbf`` later than now by more are refused (RFC 7519 sections 4.1.5 and 4.1.6)."""
_REQUIRED = {
    "require_exp": True,
    "require_iat": True,
    "require_sub": True,
    "require_aud": True,
    "require_iss": True,
}


@dataclass(frozen=True)
class RenewGrant:
    """A renew token's place in its chain: ``family`` (``fam``, the same for every token of
    one session; the first token's ``jti`` equals it), ``token_id`` (``jti``) and
    ``expires_at`` (``exp``, Unix s; every token of a chain ends when the first one does)."""

    family: str
    token_id: str
    expires_at: int


@dataclass(frozen=True)
class CustomerSession:
    """Who a customer token speaks for: ``customer_id`` on ``channel``, in one conversation."""

    customer_id: str
    channel: str
    conversation_id: UUID


def visitor_id(channel: str) -> str:
    """A new anonymous customer id on ``channel``: ``web:<channel>:<22 random characters>``."""
    return f"web:{channel}:{secrets.token_urlsafe(16)}"


def user_id(channel: str, subject: str) -> str:
    """The customer id of a user the embedding site signed in: ``web:<channel>:user:<sub>``."""
    return f"web:{channel}:user:{subject}"


def origin_allowed(
    headers: Mapping[str, str], channel: WidgetChannel, browser_only: bool = False
) -> bool:
    """Whether a request with these headers may act on ``channel``: the gateway's own origin
    (the widget's frame: ``Origin`` names the ``Host``), one of the channel's
    ``allowed_origins`` (RFC 6454 origins, compared whole), or no ``Origin`` at all (a
    same-origin ``GET``, which browsers send without one; or a client that is no browser).
    ``browser_only`` refuses the last unless the channel takes ``server_clients``: browsers
    send ``Origin`` on every ``POST`` and WebSocket handshake (Fetch standard, "append a
    request Origin header"). For WebSockets this is the check against cross-site hijacking."""
    origin = headers.get("origin")
    if origin is None:
        return channel.server_clients or not browser_only
    return origin in channel.allowed_origins or urlsplit(origin).netloc == headers.get("host")


def verify_identity(channel: WidgetChannel, token: str, now: float | None = None) -> str:
    """The ``sub`` of an identity token the embedding site signed for its signed-in user.

    The token is an HS256 JWT signed with the channel's ``identity_secret``, with ``sub`` (the
    site's user id, 1 to 64 characters of letters, digits and ``-_.@``), ``iat`` and ``exp``
    no more than :data:`IDENTITY_MAX_TTL_S` apart (a short-lived statement, not a password),
    ``iat`` (and ``nbf`` when present) no later than now plus :data:`CLOCK_SKEW_S`; ``now``
    is Unix seconds (default: the clock).

    Raises:
        InvalidToken: the channel takes no identities, or the token is forged, expired,
            issued in the future, long-lived or names no usable ``sub``; the message says which.
    """
    if channel.identity_secret is None:
        raise InvalidToken("this channel takes no identity tokens")
    now = time.time() if now is None else now
    try:
        claims = jwt.decode(
            token,
            channel.identity_secret.get_secret_value(),
            algorithms=[ALGORITHM],
            # python-jose checks exp and nbf against the clock; iat only for its type
            options={
                "require_exp": True,
                "require_iat": True,
                "require_sub": True,
                "verify_exp": False,
                "verify_nbf": False,
            },
        )
        issued, expires = int(claims["iat"]), int(claims["exp"])
        not_before = int(claims.get("nbf", issued))
    except JWTError as exc:
        raise InvalidToken(f"identity: {exc or 'invalid token'}") from None
    except (TypeError, ValueError):
        raise InvalidToken("identity: iat, nbf and exp must be Unix seconds") from None
    if expires <= now:
        raise InvalidToken("identity: the token has expired (exp)")
    if issued > now + CLOCK_SKEW_S:
        raise InvalidToken(f"identity: issued in the future (iat {issued - now:.0f} s ahead)")
    if not_before > now + CLOCK_SKEW_S:
        raise InvalidToken(f"identity: not valid yet (nbf {not_before - now:.0f} s ahead)")
    subject = claims["sub"]
    if expires - issued > IDENTITY_MAX_TTL_S:
        raise InvalidToken(f"identity: valid for more than {IDENTITY_MAX_TTL_S} s")
    if not (
        isinstance(subject, str)
        and 1 <= len(subject) <= 64
        and all(c.isascii() and (c.isalnum() or c in "-_.@") for c in subject)
    ):
        raise InvalidToken("identity: sub must be 1 to 64 characters of A-Z a-z 0-9 - _ . @")
    return subject


def issue(
    settings: Settings,
    session: CustomerSession,
    grant: RenewGrant | None = None,
    now: float | None = None,
) -> tuple[str, int]:
    """A signed access token for ``session`` (no ``grant``), or the renew token ``grant``
    names; and its lifetime in seconds."""
    issued = int(now if now is not None else time.time())
    claims: dict[str, object] = {
        "sub": session.customer_id,
        "chn": session.channel,
        "cid": str(session.conversation_id),
        "aud": ACCESS_AUDIENCE if grant is None else RENEW_AUDIENCE,
        "iss": settings.jwt_issuer,
        "iat": issued,
    }
    if grant is None:
        claims["exp"] = issued + settings.customer_token_ttl_s
    else:
        claims.update(exp=grant.expires_at, fam=grant.family, jti=grant.token_id)
    token = jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=ALGORITHM)
    return token, int(claims["exp"]) - issued  # type: ignore[call-overload] - an int set above


def new_grant(settings: Settings, now: float | None = None) -> RenewGrant:
    """The first renew token of a new session: a new family, ending
    ``CUSTOMER_SESSION_TTL_S`` from ``now`` (Unix s)."""
    family = secrets.token_urlsafe(16)
    issued = int(now if now is not None else time.time())
    return RenewGrant(family, family, issued + settings.customer_session_ttl_s)


def _decode(settings: Settings, token: str, audience: str) -> tuple[CustomerSession, dict]:
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=settings.jwt_issuer,
            options=_REQUIRED,
        )
        session = CustomerSession(str(claims["sub"]), str(claims["chn"]), UUID(claims["cid"]))
    except JWTError as exc:
        raise InvalidToken(str(exc) or "invalid token") from None
    except (KeyError, TypeError, ValueError):
        raise InvalidToken("a customer token needs chn and cid claims") from None
    if session.channel not in settings.widget_channels:
        raise InvalidToken(f"channel {session.channel!r} is not configured")
    return session, claims


def decode(settings: Settings, token: str) -> tuple[CustomerSession, int]:
    """Verify an access token; its session and expiry (Unix s).

    Raises:
        InvalidToken: forged, expired, another audience (an operator's token or a renew
            token), a channel no longer configured, or claims of the wrong shape.
    """
    session, claims = _decode(settings, token, ACCESS_AUDIENCE)
    return session, int(claims["exp"])


def decode_renew(settings: Settings, token: str) -> tuple[CustomerSession, RenewGrant]:
    """Verify a renew token; its session and its place in the session's chain. Whether the
    token is still the chain's newest is for :func:`gateway.core.renewals.rotate` to say.

    Raises:
        InvalidToken: as :func:`decode`, or a renew token without ``fam`` and ``jti``.
    """
    session, claims = _decode(settings, token, RENEW_AUDIENCE)
    family, token_id = claims.get("fam"), claims.get("jti")
    if not (isinstance(family, str) and isinstance(token_id, str) and family and token_id):
        raise InvalidToken("a renew token needs fam and jti claims: start a new session")
    return session, RenewGrant(family, token_id, int(claims["exp"]))


def customer_view(conversation_id: UUID, conversation: Conversation | None) -> dict:
    """What the customer's widget shows of a conversation: its messages (the customer's, the
    operators' and the AI assistant's, without insights, operator names or the event log), its
    status, whether a person has joined (an operator replied, or took the conversation) and
    the assistant's state (``answering``, ``handed_off`` or ``None``). ``version`` is 0 before
    the first message is stored.

    Returns a JSON-ready dict: ``conversation_id``, ``version``, ``status``, ``human_joined``,
    ``assistant`` and ``messages`` (each ``message_id``, ``seq``, ``author_role``, ``body``,
    ``created_at``).
    """
    if conversation is None:
        return {
            "conversation_id": str(conversation_id),
            "version": 0,
            "status": ConversationStatus.OPEN.value,
            "human_joined": False,
            "assistant": None,
            "messages": [],
        }
    messages = [
        {
            "message_id": str(m.message_id),
            "seq": m.seq,
            "author_role": m.author_role.value,
            "body": m.body,
            "created_at": m.created_at.isoformat(),
        }
        for m in conversation.messages
    ]
    joined = conversation.assignee is not None or any(
        m["author_role"] == AuthorRole.OPERATOR.value for m in messages
    )
    return {
        "conversation_id": str(conversation.conversation_id),
        "version": conversation.version,
        "status": conversation.status.value,
        "human_joined": joined,
        "assistant": conversation.assistant.value if conversation.assistant else None,
        "messages": messages,
    }

"""Widget customer tokens: one customer, one conversation, never an operator's key."""

import base64
import json
import time
import uuid
from datetime import UTC, datetime

import pytest
from gateway.core import customers
from gateway.core.config import Settings
from gateway.core.customers import CustomerSession, customer_view
from gateway.core.security import (
    InvalidToken,
    Operator,
    create_access_token,
    decode_access_token,
    hash_password,
)
from inbox_common.read_models import Conversation
from jose import jwt

SECRET = "dev-" + "s" * 40
SITE_SECRET = "site-" + "k" * 40


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings(
        environment="test",
        jwt_secret=SECRET,
        operators={"alice": {"password_hash": hash_password("pw"), "display_name": "Alice"}},
        widget_channels={
            "shop": {
                "name": "Shop",
                "allowed_origins": ["https://shop.example"],
                "identity_secret": SITE_SECRET,
            },
            "blog": {"name": "Blog", "allowed_origins": ["https://blog.example"]},
        },
    )


SESSION = CustomerSession("web:shop:abc", "shop", uuid.uuid4())


def test_access_and_renew_tokens_round_trip(settings: Settings) -> None:
    grant = customers.new_grant(settings)
    access, ttl = customers.issue(settings, SESSION)
    renew, renew_ttl = customers.issue(settings, SESSION, grant)
    assert (ttl, renew_ttl) == (900, 30 * 86_400)
    assert grant.token_id == grant.family  # the chain's first token
    assert customers.decode(settings, access)[0] == SESSION
    assert customers.decode_renew(settings, renew) == (SESSION, grant)
    # a rotated token keeps the chain's family and end
    later = customers.RenewGrant(grant.family, "next", grant.expires_at)
    rotated, rotated_ttl = customers.issue(settings, SESSION, later, now=time.time() + 3600)
    assert customers.decode_renew(settings, rotated) == (SESSION, later)
    assert rotated_ttl == renew_ttl - 3600


def test_a_renew_token_without_its_chain_is_refused(settings: Settings) -> None:
    old_style = forge(claims(aud=customers.RENEW_AUDIENCE))
    with pytest.raises(InvalidToken, match="fam and jti"):
        customers.decode_renew(settings, old_style)


def test_a_token_opens_only_its_own_door(settings: Settings) -> None:
    access, _ = customers.issue(settings, SESSION)
    renew, _ = customers.issue(settings, SESSION, customers.new_grant(settings))
    operator = create_access_token(settings, Operator("alice", "Alice"))
    with pytest.raises(InvalidToken, match="audience"):
        customers.decode(settings, renew)  # a renew token is no access token
    with pytest.raises(InvalidToken, match="audience"):
        customers.decode_renew(settings, access)
    with pytest.raises(InvalidToken, match="audience"):
        customers.decode(settings, operator)  # an operator's token on the widget
    with pytest.raises(InvalidToken, match="audience"):
        decode_access_token(settings, access)  # a customer's token on the operator API


def forge(claims: dict, key: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=alg)


def claims(**overrides: object) -> dict:
    now = int(time.time())
    base = {
        "sub": "web:shop:abc",
        "chn": "shop",
        "cid": str(SESSION.conversation_id),
        "aud": customers.ACCESS_AUDIENCE,
        "iss": "support-inbox-gateway",
        "iat": now,
        "exp": now + 60,
    }
    return {k: v for k, v in {**base, **overrides}.items() if v is not None}


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (forge(claims(), key="x" * 40), "Signature"),
        (forge(claims(exp=int(time.time()) - 10)), "expired"),
        (forge(claims(cid=None)), "chn and cid"),
        (forge(claims(cid="not-a-uuid")), "chn and cid"),
        (forge(claims(chn="gone")), "not configured"),
        (forge(claims(iss="someone-else")), "issuer"),
        (forge(claims(exp=None)), "exp"),
    ],
    ids=["forged", "expired", "no cid", "bad cid", "unknown channel", "issuer", "no exp"],
)
def test_forged_or_broken_tokens_are_refused(settings: Settings, token: str, reason: str) -> None:
    with pytest.raises(InvalidToken, match=reason):
        customers.decode(settings, token)


def test_alg_none_is_refused(settings: Settings) -> None:
    def b64(part: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()

    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims())}."
    with pytest.raises(InvalidToken):
        customers.decode(settings, token)


def identity(
    sub: object = "user-42", ttl: int = 300, key: str = SITE_SECRET, ahead: int = 0, **extra
) -> str:
    """An identity token issued ``ahead`` seconds from now, valid ``ttl`` seconds."""
    now = int(time.time()) + ahead
    return jwt.encode({"sub": sub, "iat": now, "exp": now + ttl, **extra}, key, algorithm="HS256")


YEAR_S = 365 * 86_400


def test_an_identity_the_site_signed(settings: Settings) -> None:
    shop = settings.widget_channels["shop"]
    assert customers.verify_identity(shop, identity()) == "user-42"
    assert customers.user_id("shop", "user-42") == "web:shop:user:user-42"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (identity(key="z" * 40), "Signature"),
        (identity(ttl=7200), "more than 3600"),
        (identity(sub="a b"), "sub must be"),
        (identity(sub="x" * 65), "sub must be"),
        (identity(ttl=-5), "expired"),
        (identity(ahead=YEAR_S, ttl=3600), "issued in the future"),
        (identity(ahead=customers.CLOCK_SKEW_S + 30), "issued in the future"),
        (identity(nbf=int(time.time()) + YEAR_S), "not valid yet"),
        (identity(iat="yesterday"), "iat"),
    ],
    ids=[
        "forged",
        "long-lived",
        "space in sub",
        "long sub",
        "expired",
        "issued a year ahead",
        "issued past the skew",
        "nbf a year ahead",
        "iat not a number",
    ],
)
def test_bad_identities_are_refused(settings: Settings, token: str, reason: str) -> None:
    with pytest.raises(InvalidToken, match=reason):
        customers.verify_identity(settings.widget_channels["shop"], token)


def test_a_site_clock_a_little_ahead_is_accepted(settings: Settings) -> None:
    shop = settings.widget_channels["shop"]
    assert customers.verify_identity(shop, identity(ahead=customers.CLOCK_SKEW_S - 10)) == (
        "user-42"
    )


def test_a_channel_without_a_secret_takes_no_identity(settings: Settings) -> None:
    with pytest.raises(InvalidToken, match="no identity"):
        customers.verify_identity(settings.widget_channels["blog"], identity())


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({}, True),
        ({"origin": "https://shop.example", "host": "inbox.example"}, True),
        ({"origin": "https://inbox.example", "host": "inbox.example"}, True),
        ({"origin": "https://evil.example", "host": "inbox.example"}, False),
        ({"origin": "https://shop.example.evil.example", "host": "inbox.example"}, False),
        ({"origin": "null", "host": "inbox.example"}, False),
    ],
)
def test_origins(settings: Settings, headers: dict, allowed: bool) -> None:
    assert customers.origin_allowed(headers, settings.widget_channels["shop"]) is allowed
    browser_only = customers.origin_allowed(headers, settings.widget_channels["shop"], True)
    assert browser_only is (allowed and "origin" in headers)


def test_a_channel_for_server_clients_takes_requests_without_origin(settings: Settings) -> None:
    channel = settings.widget_channels["shop"].model_copy(update={"server_clients": True})
    assert customers.origin_allowed({}, channel, browser_only=True)
    assert not customers.origin_allowed({"origin": "https://evil.example"}, channel, True)


def test_the_customer_sees_messages_not_insights_names_or_events() -> None:
    now = datetime.now(UTC).isoformat()
    conversation_id = uuid.uuid4()
    message = {
        "seq": 1,
        "submitted_at": now,
        "created_at": now,
        "insight": {"status": "available", "intent": "card_arrival", "suggested_reply": "Hi"},
    }
    conversation = Conversation.model_validate(
        {
            "conversation_id": str(conversation_id),
            "customer_id": "web:shop:abc",
            "created_at": now,
            "last_activity_at": now,
            "version": 3,
            "summary": {
                "conversation_id": str(conversation_id),
                "customer_id": "web:shop:abc",
                "last_message_preview": "x",
                "last_author_role": "operator",
                "last_activity_at": now,
                "message_count": 2,
                "version": 3,
                "awaiting_reply": False,
            },
            "messages": [
                {
                    **message,
                    "message_id": str(uuid.uuid4()),
                    "author_role": "customer",
                    "author_id": "web:shop:abc",
                    "body": "Where is my card?",
                },
                {
                    **message,
                    "seq": 2,
                    "insight": None,
                    "message_id": str(uuid.uuid4()),
                    "author_role": "operator",
                    "author_id": "alice",
                    "body": "On its way.",
                },
            ],
            "events": [{"id": 1, "kind": "message", "actor": "alice", "created_at": now}],
        }
    )
    view = customer_view(conversation_id, conversation)
    assert view["version"] == 3 and view["human_joined"] is True
    assert [m["body"] for m in view["messages"]] == ["Where is my card?", "On its way."]
    text = json.dumps(view)
    for hidden in ("card_arrival", "alice", "insight", "events", "suggested_reply"):
        assert hidden not in text, hidden
    empty = customer_view(conversation_id, None)
    assert empty["version"] == 0 and empty["messages"] == [] and not empty["human_joined"]

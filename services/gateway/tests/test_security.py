"""Passwords and JWTs: only tokens we signed, for our audience, unexpired, with HS256."""

import asyncio
import base64
import json
import time

import pytest
from gateway.core.config import Settings
from gateway.core.security import (
    WS_BEARER_PREFIX,
    WS_PROTOCOL,
    InvalidToken,
    LoginBusy,
    Operator,
    PasswordChecker,
    authenticate,
    chosen_protocol,
    create_access_token,
    decode_access_token,
    hash_password,
    token_from_subprotocols,
)
from jose import jwt

SECRET = "dev-" + "s" * 40


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings(
        environment="test",
        jwt_secret=SECRET,
        operators={
            "alice": {"password_hash": hash_password("correct horse"), "display_name": "Alice"}
        },
    )


ALICE = Operator("alice", "Alice")


def test_password_hash_is_salted_argon2id() -> None:
    first, second = hash_password("pw"), hash_password("pw")
    assert first.startswith("$argon2id$")
    assert first != second


def test_authenticate(settings: Settings) -> None:
    assert authenticate(settings, "alice", "correct horse") == ALICE
    assert authenticate(settings, "alice", "wrong") is None
    assert authenticate(settings, "mallory", "correct horse") is None


def test_round_trip(settings: Settings) -> None:
    operator, expires_at = decode_access_token(settings, create_access_token(settings, ALICE))
    assert operator == ALICE
    assert expires_at > time.time()


def test_expired_token_is_rejected(settings: Settings) -> None:
    token = create_access_token(settings, ALICE, now=time.time() - settings.jwt_ttl_s - 60)
    with pytest.raises(InvalidToken, match="expired"):
        decode_access_token(settings, token)


def claims(**overrides: object) -> dict:
    now = int(time.time())
    return {
        "sub": "alice",
        "aud": "support-inbox",
        "iss": "support-inbox-gateway",
        "iat": now,
        "exp": now + 60,
        **overrides,
    }


def b64(part: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "token",
    [
        jwt.encode(claims(), "another-secret-of-sufficient-length!!", algorithm="HS256"),
        jwt.encode(claims(aud="someone-else"), SECRET, algorithm="HS256"),
        jwt.encode(claims(iss="elsewhere"), SECRET, algorithm="HS256"),
        jwt.encode({k: v for k, v in claims().items() if k != "exp"}, SECRET, algorithm="HS256"),
        jwt.encode({k: v for k, v in claims().items() if k != "aud"}, SECRET, algorithm="HS256"),
        jwt.encode({k: v for k, v in claims().items() if k != "iat"}, SECRET, algorithm="HS256"),
        jwt.encode(claims(sub="mallory"), SECRET, algorithm="HS256"),
        jwt.encode(claims(), SECRET, algorithm="HS512"),
        b64({"alg": "none", "typ": "JWT"}) + "." + b64(claims()) + ".",
        "not.a.token",
        "",
    ],
    ids=[
        "forged",
        "wrong-aud",
        "wrong-iss",
        "no-exp",
        "no-aud",
        "no-iat",
        "unknown-operator",
        "other-alg",
        "alg-none",
        "garbage",
        "empty",
    ],
)
def test_bad_tokens_are_rejected(settings: Settings, token: str) -> None:
    with pytest.raises(InvalidToken):
        decode_access_token(settings, token)


def test_production_refuses_development_secret() -> None:
    with pytest.raises(ValueError, match="JWT_SECRET"):
        Settings(environment="production", jwt_secret=SECRET, app_api_token="t" * 20)


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        Settings(environment="test", jwt_secret="short")


def test_admin_password_adds_an_admin_account() -> None:
    settings = Settings(environment="test", jwt_secret=SECRET, admin_password="a-long-admin-pw")
    assert authenticate(settings, "admin", "a-long-admin-pw") == Operator(
        "admin", "Administrator", "admin"
    )
    assert authenticate(settings, "admin", "wrong") is None
    token = create_access_token(settings, Operator("admin", "Administrator"))
    assert decode_access_token(settings, token)[0].username == "admin"


@pytest.mark.parametrize(
    "offered",
    [
        [],
        ["inbox.v1"],
        ["inbox.bearer.abc"],
        ["inbox.v1", "inbox.bearer."],
        ["inbox.v1", "inbox.bearer.a", "inbox.bearer.b"],
    ],
    ids=["nothing", "no-token", "no-protocol", "empty-token", "two-tokens"],
)
def test_socket_token_needs_the_protocol_and_one_token(offered: list[str]) -> None:
    with pytest.raises(InvalidToken, match="Sec-WebSocket-Protocol"):
        token_from_subprotocols(offered)


def test_socket_token_is_read_from_the_subprotocols(settings: Settings) -> None:
    token = create_access_token(settings, ALICE)
    offered = [f"{WS_BEARER_PREFIX}{token}", WS_PROTOCOL]  # any order
    assert token_from_subprotocols(offered) == token
    assert token_from_subprotocols(["inbox.v2", f"{WS_BEARER_PREFIX}{token}"]) == token


def test_the_batched_subprotocol_is_chosen_when_offered() -> None:
    assert chosen_protocol(["inbox.v2", "inbox.v1", "inbox.bearer.x"]) == "inbox.v2"
    assert chosen_protocol(["inbox.v1", "inbox.v2"]) == "inbox.v2"
    assert chosen_protocol(["inbox.v1", "inbox.bearer.x"]) == "inbox.v1"


async def test_password_checks_run_off_the_event_loop(settings: Settings) -> None:
    checker = PasswordChecker(settings, workers=1, max_waiting=4)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        assert await checker.authenticate("alice", "correct horse") == ALICE
        assert await checker.authenticate("alice", "wrong") is None
        assert await checker.authenticate("nobody", "x") is None
    finally:
        ticker.cancel()
    assert ticks >= 3  # the loop kept running while argon2 hashed


async def test_password_checks_beyond_the_queue_are_refused(settings: Settings) -> None:
    checker = PasswordChecker(settings, workers=1, max_waiting=1)
    attempts = [checker.authenticate("alice", "wrong") for _ in range(4)]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    assert [r is None for r in results].count(True) == 2  # one running, one waiting
    assert all(isinstance(r, LoginBusy) for r in results if r is not None)


def test_the_role_is_the_accounts_now_not_the_tokens(settings: Settings) -> None:
    admin = Settings(
        environment="test",
        jwt_secret=SECRET,
        operators={
            "alice": {
                "password_hash": hash_password("correct horse"),
                "display_name": "Alice",
                "role": "admin",
            }
        },
    )
    token = create_access_token(admin, Operator("alice", "Alice", "admin"))
    assert jwt.get_unverified_claims(token)["role"] == "admin"
    assert decode_access_token(admin, token)[0].role == "admin"
    # the same token after alice became an agent: the account decides
    assert decode_access_token(settings, token)[0].role == "agent"
    assert Settings(environment="test", jwt_secret=SECRET, admin_password="x" * 12).accounts[
        "admin"
    ].role == "admin"

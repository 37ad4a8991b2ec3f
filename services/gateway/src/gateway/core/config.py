"""Gateway settings, read once from the environment."""

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from argon2 import PasswordHasher
from inbox_common.events import AssistantMode
from inbox_common.settings import ServiceSettings
from limits import parse
from pydantic import (
    BaseModel,
    Field,
    HttpUrl,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)

DEV_JWT_SECRET_PREFIX = "dev-"  # noqa: S105 - a prefix to refuse, not a secret
"""Secrets starting with this are refused outside development."""


class OperatorAccount(BaseModel):
    """One operator login. ``password_hash`` is an argon2 hash (see ``gateway-hash-password``)."""

    password_hash: str = Field(pattern=r"^\$argon2(id|i|d)\$")
    display_name: str = Field(min_length=1, max_length=100)
    role: Literal["admin", "agent"] = Field(
        default="agent",
        description="`admin` may also change what the AI learns from; `agent` works conversations",
    )


CHANNEL_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,39}$"
ORIGIN_PATTERN = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$"
"""A web origin as browsers send it in ``Origin`` (RFC 6454): scheme, host, optional port."""


class WidgetChannel(BaseModel):
    """One site that embeds the chat widget (``WIDGET_CHANNELS``)."""

    name: str = Field(min_length=1, max_length=100, description="Shown to operators")
    allowed_origins: list[str] = Field(
        min_length=1,
        description=(
            "Origins that may embed the widget (CSP frame-ancestors) and call its API (CORS), "
            "e.g. https://shop.example"
        ),
    )
    assistant: AssistantMode = Field(
        default=AssistantMode.SUGGEST,
        description=(
            "off: operators only, no AI; suggest: the AI suggests replies to operators; "
            "answer: it answers the customer itself until it hands the conversation to a person"
        ),
    )
    identity_secret: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="HS256 key the site signs its users' identity tokens with; None: anonymous",
    )
    server_clients: bool = Field(
        default=False,
        description=(
            "Start sessions for clients that send no Origin (a native app or a server); "
            "false: only browsers on allowed_origins and the gateway's own pages"
        ),
    )

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if not re.fullmatch(ORIGIN_PATTERN, origin):
                raise ValueError(f"{origin!r} is not an origin such as https://shop.example")
        return origins


class Settings(ServiceSettings):
    jwt_secret: SecretStr = Field(
        min_length=32, description="JWT_SECRET: HS256 signing key, at least 32 characters"
    )
    jwt_audience: str = Field(default="support-inbox", description="`aud` of issued tokens")
    jwt_issuer: str = Field(default="support-inbox-gateway", description="`iss` of issued tokens")
    jwt_ttl_s: int = Field(default=8 * 3600, ge=60, le=7 * 86400, description="Token lifetime (s)")
    operators: dict[str, OperatorAccount] = Field(
        default_factory=dict,
        description=(
            'OPERATORS: JSON {"username": {"password_hash": ..., "display_name": ..., '
            '"role": "admin" or "agent" (default)}}'
        ),
    )
    admin_password: SecretStr | None = Field(
        default=None,
        min_length=12,
        description=(
            "ADMIN_PASSWORD: adds operator `admin` with this password, hashed at start-up "
            "(for installs that cannot pre-compute argon2 hashes, such as the Helm chart)"
        ),
    )
    channel_api_keys: list[SecretStr] = Field(
        default_factory=list,
        description="CHANNEL_API_KEYS: JSON list of keys accepted on the customer channel API",
    )
    widget_channels: dict[str, WidgetChannel] = Field(
        default_factory=dict,
        description=(
            'WIDGET_CHANNELS: JSON {"<channel id>": {"name": ..., "allowed_origins": [...], '
            '"identity_secret": ...}}: the sites that embed the chat widget'
        ),
    )
    customer_token_ttl_s: int = Field(
        default=900, ge=60, le=86_400, description="A widget access token's lifetime (s)"
    )
    customer_session_ttl_s: int = Field(
        default=30 * 86_400,
        ge=3600,
        le=365 * 86_400,
        description="How long a browser may come back to its conversation (renew token, s)",
    )
    customer_rate_limit: str = Field(
        default="20/minute",
        description="CUSTOMER_RATE_LIMIT: widget messages per customer, across replicas",
    )
    widget_channel_rate_limit: str = Field(
        default="600/minute",
        description="WIDGET_CHANNEL_RATE_LIMIT: widget messages per channel, across replicas",
    )
    widget_session_rate_limit: str = Field(
        default="30/minute",
        description=(
            "WIDGET_SESSION_RATE_LIMIT: new widget sessions per client address (IPv6: per /64), "
            "across replicas"
        ),
    )
    widget_channel_session_rate_limit: str = Field(
        default="600/minute",
        description=(
            "WIDGET_CHANNEL_SESSION_RATE_LIMIT: new widget sessions per channel from everyone "
            "together, across replicas; counted apart from messages, so a flood of new "
            "sessions never holds back customers already chatting"
        ),
    )
    customer_read_rate_limit: str = Field(
        default="120/minute",
        description=(
            "CUSTOMER_READ_RATE_LIMIT: a widget customer's reads of its conversation, session "
            "renewals and socket opens, across replicas"
        ),
    )
    customer_renew_grace_s: int = Field(
        default=10,
        ge=0,
        le=300,
        description=(
            "CUSTOMER_RENEW_GRACE_S: how long after a renew token is rotated its previous token "
            "still renews (two tabs renewing at once), in seconds; any later use of a rotated "
            "token revokes the session"
        ),
    )
    max_header_bytes: int = Field(
        default=8192,
        ge=1024,
        le=65_536,
        description=(
            "MAX_HEADER_BYTES: largest request line plus headers accepted, in bytes; beyond "
            "it the connection gets 431 and is closed"
        ),
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=120,
        description=(
            "HEADER_TIMEOUT_S: time a client has to send a request's line and headers, from "
            "the connection's opening or the first byte of each later request, in seconds; "
            "beyond it the connection gets 408 and is closed"
        ),
    )
    max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Largest HTTP request body accepted, in bytes"
    )
    ws_send_queue: int = Field(
        default=256, ge=8, description="Events buffered per WebSocket before it is closed as slow"
    )
    operator_rate_limit: str = Field(
        default="20/second",
        description="OPERATOR_RATE_LIMIT: API requests per operator, across replicas",
    )
    channel_rate_limit: str = Field(
        default="100/second",
        description="CHANNEL_RATE_LIMIT: customer messages per channel API key, across replicas",
    )
    login_rate_limit: str = Field(
        default="10/minute", description="LOGIN_RATE_LIMIT: login attempts per username"
    )
    login_address_rate_limit: str = Field(
        default="30/minute",
        description=(
            "LOGIN_ADDRESS_RATE_LIMIT: login attempts per client address (IPv6: per /64), "
            "across replicas, whatever the usernames"
        ),
    )
    login_global_rate_limit: str = Field(
        default="10/second",
        description=(
            "LOGIN_GLOBAL_RATE_LIMIT: login attempts from everyone together, across replicas; "
            "bounds the password-hashing work a distributed flood can cause"
        ),
    )
    login_hash_workers: int = Field(
        default=2,
        ge=1,
        le=64,
        description=(
            "LOGIN_HASH_WORKERS: threads per replica that check passwords (argon2), off the "
            "event loop; at most this many checks run at once"
        ),
    )
    login_hash_queue: int = Field(
        default=16,
        ge=0,
        description=(
            "LOGIN_HASH_QUEUE: login checks that may wait for a hashing thread per replica; "
            "beyond it a login gets 503 with Retry-After"
        ),
    )
    ws_message_rate_limit: str = Field(
        default="5/second",
        description=(
            "WS_MESSAGE_RATE_LIMIT: messages a client may send on one socket; beyond it they "
            "are dropped with an error frame, and at twice it the socket is closed with 1008"
        ),
    )
    search_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=30,
        description=(
            "SEARCH_TIMEOUT_S: how long a search, or a page of the inbox past the newest "
            "INBOX_MAX_ITEMS conversations, waits for messaging's answer in the state store "
            "before it answers 504, in seconds"
        ),
    )
    seen_max_entries: int = Field(
        default=5000,
        ge=10,
        description=(
            "SEEN_MAX_ENTRIES: conversations whose seen version is kept per operator (the "
            "newest marks; an older one forgotten counts as unread again)"
        ),
    )
    browser_traces_url: HttpUrl | None = Field(
        default=None,
        description=(
            "BROWSER_TRACES_URL: OTLP/HTTP traces URL the browser exports its spans to "
            "(e.g. https://otel.example.com/v1/traces; reachable from operators' browsers, "
            "with CORS for this origin). Unset: the page records no spans"
        ),
    )
    trace_ui_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s]*\{trace_id\}",
        description=(
            "TRACE_UI_URL: link to one trace, `{trace_id}` replaced "
            "(e.g. https://jaeger.example.com/trace/{trace_id}); unset: no link in the UI"
        ),
    )
    frontend_dir: Path = Field(
        default=Path(__file__).resolve().parents[5] / "frontend",
        description="FRONTEND_DIR: the static files served at /",
    )

    _accounts: dict[str, OperatorAccount] = PrivateAttr(default_factory=dict)

    @property
    def accounts(self) -> dict[str, OperatorAccount]:
        """``operators`` plus ``admin`` when ``ADMIN_PASSWORD`` is set."""
        return self._accounts

    @model_validator(mode="after")
    def _build_accounts(self) -> "Settings":
        self._accounts = dict(self.operators)
        if self.admin_password is not None and "admin" not in self._accounts:
            self._accounts["admin"] = OperatorAccount(
                password_hash=PasswordHasher().hash(self.admin_password.get_secret_value()),
                display_name="Administrator",
                role="admin",
            )
        return self

    @field_validator(
        "operator_rate_limit",
        "channel_rate_limit",
        "login_rate_limit",
        "login_address_rate_limit",
        "login_global_rate_limit",
        "ws_message_rate_limit",
        "customer_rate_limit",
        "widget_channel_rate_limit",
        "widget_session_rate_limit",
        "widget_channel_session_rate_limit",
        "customer_read_rate_limit",
    )
    @classmethod
    def _limit_syntax(cls, value: str) -> str:
        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a rate limit such as '10/second': {exc}") from None
        return value

    @field_validator("widget_channels")
    @classmethod
    def _channel_ids(cls, channels: dict[str, WidgetChannel]) -> dict[str, WidgetChannel]:
        for channel_id in channels:
            if not re.fullmatch(CHANNEL_ID_PATTERN, channel_id):
                raise ValueError(
                    f"channel id {channel_id!r}: 1 to 40 of a-z, 0-9 and -, starting alphanumeric"
                )
        return channels

    @model_validator(mode="after")
    def _refuse_development_secret(self) -> "Settings":
        if self.environment == "production":
            if self.jwt_secret.get_secret_value().startswith(DEV_JWT_SECRET_PREFIX):
                raise ValueError("JWT_SECRET is a development secret; set a random one")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()  # type: ignore[call-arg]

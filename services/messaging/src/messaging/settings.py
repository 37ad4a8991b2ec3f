"""Messaging settings, read once from the environment."""

from functools import lru_cache

from inbox_common.settings import ServiceSettings
from pydantic import Field, SecretStr


class Settings(ServiceSettings):
    database_url: SecretStr = Field(
        description="DATABASE_URL: libpq URL, e.g. postgresql://inbox:secret@db:5432/inbox"
    )
    db_pool_min_size: int = Field(
        default=1, ge=1, description="PostgreSQL connections the psycopg pool keeps open"
    )
    db_pool_max_size: int = Field(
        default=10, ge=1, description="Most PostgreSQL connections the psycopg pool opens"
    )
    db_connect_timeout_s: float = Field(
        default=30.0, gt=0, description="How long a pool connection may take to open, in seconds"
    )
    outbox_batch_size: int = Field(
        default=100, ge=1, le=1000, description="Outbox rows the relay publishes per round"
    )
    outbox_poll_interval_s: float = Field(
        default=1.0, gt=0, description="Longest wait between outbox scans when nothing wakes it"
    )
    outbox_retention_s: float = Field(
        default=3600.0,
        ge=0,
        description=(
            "OUTBOX_RETENTION_S: seconds a published outbox row is kept before it is deleted"
        ),
    )
    outbox_prune_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="OUTBOX_PRUNE_INTERVAL_S: seconds between two deletions of old outbox rows",
    )
    inbox_interval_s: float = Field(
        default=0.25,
        ge=0,
        le=10,
        description=(
            "INBOX_INTERVAL_S: shortest time (s) between two rebuilds of the inbox list read"
            " model; a change waits at most this long to show in the list"
        ),
    )
    insight_redelivery_interval_s: float = Field(
        default=15.0,
        gt=0,
        le=3600,
        description=(
            "INSIGHT_REDELIVERY_INTERVAL_S: how often, in seconds, messaging looks for insights"
            " left `processing` too long and asks for them again"
        ),
    )
    insight_redeliver_after_s: float = Field(
        default=120.0,
        gt=0,
        le=86_400,
        description=(
            "INSIGHT_REDELIVER_AFTER_S: seconds an insight may stay `processing` before its"
            " analysis is requested again; the wait doubles after each re-request (up to 64"
            " times). Keep it above the ai-worker's OLLAMA_TIMEOUT_S (default 60) plus its"
            " usual queueing, or busy analyses are asked for twice (harmless, but extra load)"
        ),
    )
    insight_max_redeliveries: int = Field(
        default=5,
        ge=0,
        le=100,
        description=(
            "INSIGHT_MAX_REDELIVERIES: re-requests of one insight revision before messaging"
            " gives up and stores it `unavailable` (the operator can Regenerate it); with the"
            " defaults that is after about 2 hours"
        ),
    )
    insight_redelivery_batch_size: int = Field(
        default=100,
        ge=1,
        le=1000,
        description="INSIGHT_REDELIVERY_BATCH_SIZE: most insights re-requested per transaction",
    )
    search_statement_timeout_ms: int = Field(
        default=2000,
        ge=10,
        le=30_000,
        description=(
            "SEARCH_STATEMENT_TIMEOUT_MS: PostgreSQL statement_timeout of each search, in ms; a"
            " search cut by it is refused (the gateway answers 422). Keep it below the gateway's"
            " SEARCH_TIMEOUT_S"
        ),
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()  # type: ignore[call-arg]

"""Messaging settings, read once from the environment."""

from functools import lru_cache

from inbox_common.settings import ServiceSettings
from pydantic import Field, SecretStr


class Settings(ServiceSettings):
    database_url: SecretStr = Field(
        description="DATABASE_URL: libpq URL, e.g. postgresql://inbox:secret@db:5432/inbox"
    )
    db_pool_min_size: int = Field(default=1, ge=1)
    db_pool_max_size: int = Field(default=10, ge=1)
    db_connect_timeout_s: float = Field(default=30.0, gt=0)
    outbox_batch_size: int = Field(default=100, ge=1, le=1000)
    outbox_poll_interval_s: float = Field(
        default=1.0, gt=0, description="Longest wait between outbox scans when nothing wakes it"
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()  # type: ignore[call-arg]

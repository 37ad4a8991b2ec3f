"""Settings base class: twelve-factor configuration from the environment.

Each service subclasses :class:`ServiceSettings` and reads it once through a cached
``get_settings()``; tests build ``Settings(...)`` directly. ``OTEL_*`` and ``DAPR_*`` variables
(except the app token the SDK does not check) are left to the SDKs that already read them.
"""

import os
from pathlib import Path
from typing import Literal

from dapr.conf import settings as dapr_settings
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_SECRETS_DIR = Path(os.environ.get("SECRETS_DIR", "/run/secrets"))
BULK_MAX_MESSAGES = 50
"""Default of ``BULK_MAX_MESSAGES`` (events per bulk delivery)."""
BULK_MAX_AWAIT_MS = 1
"""Default of ``BULK_MAX_AWAIT_MS`` (ms)."""


class ServiceSettings(BaseSettings):
    """Settings every service has.

    Secrets may also be mounted as files named after the variable in ``SECRETS_DIR``
    (default ``/run/secrets``, used when it exists): the chart's pods get every secret that
    way and none as an environment variable. The environment still wins (the local stack).
    Invalid values fail at start-up with pydantic's message naming the variable.
    """

    model_config = SettingsConfigDict(
        env_file=None,
        secrets_dir=_SECRETS_DIR if _SECRETS_DIR.is_dir() else None,
        extra="ignore",
        frozen=True,
    )

    environment: Literal["development", "test", "production"] = Field(
        default="production", description="`development` and `test` relax secret checks"
    )
    knowledge_dir: Path | None = Field(
        default=None,
        description=(
            "KNOWLEDGE_DIR: a folder of help articles (`<slug>.md` with front matter) and "
            "`intents.yaml` that replaces the demo bank's; read at start (docs/ai.md)"
        ),
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO",
        description="JSON logs on stderr, with `trace_id` and `span_id` when a span is active",
    )
    app_api_token: SecretStr | None = Field(
        default=None,
        description=(
            "APP_API_TOKEN: the token daprd sends as `dapr-api-token` when it calls this app. "
            "Required outside development; the Python SDK does not check it, so we do."
        ),
    )

    bulk_max_messages: int = Field(
        default=BULK_MAX_MESSAGES,
        ge=1,
        le=1000,
        description=(
            "BULK_MAX_MESSAGES: events the sidecar delivers in one request at most on a bulk"
            " subscription (Dapr bulk subscribe: messaging's messages.submitted and"
            " ai.completed, the gateway's conversation.updated)"
        ),
    )
    bulk_max_await_ms: int = Field(
        default=BULK_MAX_AWAIT_MS,
        ge=1,
        le=1000,
        description=(
            "BULK_MAX_AWAIT_MS: ms the sidecar waits after an event for more to deliver with"
            " it on a bulk subscription; each of those events may wait this long. Batches"
            " grow under load anyway, as the sidecar delivers the next when the app has"
            " answered the last (5 ms doubled the paced run's stored p50, 22 to 44 ms)"
        ),
    )
    dapr_api_token: SecretStr | None = Field(
        default=None,
        description=(
            "DAPR_API_TOKEN: the token this app sends to its sidecar. The Dapr SDK reads it "
            "from the environment only; one mounted as a file is handed to the SDK here"
        ),
    )

    metrics_port: int = Field(
        default=9464,
        ge=0,
        le=65535,
        description=(
            "METRICS_PORT: port of the Prometheus metrics at /metrics, apart from the app's "
            "own port (the gateway's public API never serves them); 0 turns them off"
        ),
    )
    metrics_host: str = Field(
        default="0.0.0.0",  # Prometheus scrapes the pod's address
        min_length=1,
        description="METRICS_HOST: address the metrics server listens on",
    )

    @model_validator(mode="after")
    def _dapr_token_to_the_sdk(self) -> "ServiceSettings":
        # dapr.conf.settings took DAPR_API_TOKEN from the environment at import; a token that
        # came from SECRETS_DIR must reach it before the first DaprClient is made.
        if self.dapr_api_token is not None and not dapr_settings.DAPR_API_TOKEN:
            dapr_settings.DAPR_API_TOKEN = self.dapr_api_token.get_secret_value()
        return self

    @model_validator(mode="after")
    def _app_token_outside_development(self) -> "ServiceSettings":
        if self.environment == "production" and self.app_api_token is None:
            raise ValueError("APP_API_TOKEN must be set outside development")
        return self

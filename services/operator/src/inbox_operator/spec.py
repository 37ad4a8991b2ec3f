"""Typed view of a ``SupportInbox`` spec (``supportinbox.io/v1alpha1``).

The CRD in ``k8s/crds/`` is the contract: the API server validates and fills defaults, and
these models read the result. Field names follow the CRD (camelCase aliases).
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

GROUP = "supportinbox.io"
VERSION = "v1alpha1"
PLURAL = "supportinboxes"
KIND = "SupportInbox"


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid"
    )


class SecretRef(_Model):
    """A key of a Secret; an omitted key is filled with its use's default when the spec is
    parsed, so every later reader sees ``key`` set."""

    name: str
    key: str | None = None


def _keyed(ref: SecretRef | None, default: str) -> SecretRef | None:
    return ref if ref is None or ref.key else ref.model_copy(update={"key": default})


class Resources(_Model):
    requests: dict[str, str | int] = Field(default_factory=dict)
    limits: dict[str, str | int] = Field(default_factory=dict)


class Images(_Model):
    gateway: str = "ghcr.io/support-inbox/gateway:0.1.0"
    messaging: str = "ghcr.io/support-inbox/messaging:0.1.0"
    ai_worker: str = "ghcr.io/support-inbox/ai-worker:0.1.0"
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"


class Scaled(_Model):
    replicas: int = Field(default=2, ge=1)
    resources: Resources = Field(default_factory=Resources)


class Gateway(Scaled):
    """The gateway Deployment; ``trusted_proxies`` (addresses or CIDRs) become its
    ``FORWARDED_ALLOW_IPS``: the proxies whose ``X-Forwarded-For`` names the client."""

    trusted_proxies: list[str] = Field(default_factory=list)


class Voice(_Model):
    """The deployment's voice and rules, as the ai-worker's ``AI_COMPANY``, ``AI_TONE``,
    ``AI_LANGUAGES`` and ``AI_NEVER_PROMISE``."""

    company: str = "a bank"
    tone: str = "polite, concise"
    languages: list[str] = Field(default_factory=list)
    never_promise: str = "refunds or outcomes"


class ConfigMapKey(_Model):
    name: str
    key: str = "examples.jsonl"


class AiWorker(_Model):
    min_replicas: int = Field(default=1, ge=1)
    max_replicas: int = Field(default=4, ge=1)
    target_cpu_utilization_percentage: int = Field(
        default=70, alias="targetCPUUtilizationPercentage"
    )
    max_concurrency: int = 2
    voice: Voice = Field(default_factory=Voice)
    intent_examples: ConfigMapKey | None = None
    resources: Resources = Field(default_factory=Resources)


class Sidecar(_Model):
    cpu_request: str = "50m"
    memory_request: str = "64Mi"
    cpu_limit: str = "500m"
    memory_limit: str = "256Mi"


class Broker(_Model):
    type: Literal["redis", "rabbitmq", "kafka", "jetstream"] = "redis"
    host: str | None = None
    secret_ref: SecretRef | None = None
    sasl_mechanism: Literal["SHA-512", "SHA-256", "PLAIN"] = "SHA-512"  # kafka only

    @model_validator(mode="after")
    def _connection(self) -> "Broker":
        # The CRD's CEL rules say the same; repeated for API servers without CEL.
        if self.type == "rabbitmq" and self.secret_ref is None:
            raise ValueError("broker.secretRef is required for rabbitmq")
        if self.type != "rabbitmq" and not self.host:
            raise ValueError(f"broker.host is required for {self.type}")
        # kafka's Secret holds `username` too; jetstream's a NATS token
        default = {"rabbitmq": "connectionString", "jetstream": "token"}.get(self.type, "password")
        return self.model_copy(update={"secret_ref": _keyed(self.secret_ref, default)})


class StateStore(_Model):
    type: Literal["redis", "postgresql"] = "redis"
    host: str | None = None
    secret_ref: SecretRef | None = None

    @model_validator(mode="after")
    def _connection(self) -> "StateStore":
        if self.type == "postgresql" and self.secret_ref is None:
            raise ValueError("stateStore.secretRef is required for postgresql")
        if self.type == "redis" and not self.host:
            raise ValueError("stateStore.host is required for redis")
        default = "connectionString" if self.type == "postgresql" else "password"
        return self.model_copy(update={"secret_ref": _keyed(self.secret_ref, default)})


class Database(_Model):
    secret_ref: SecretRef

    @model_validator(mode="after")
    def _default_key(self) -> "Database":
        return self.model_copy(update={"secret_ref": _keyed(self.secret_ref, "url")})


class ModelFile(_Model):
    """Where a GGUF file and its Modelfile come from: an image, or a Pod volume source (for
    example ``{"persistentVolumeClaim": {"claimName": "models"}}``), holding them at ``path``."""

    image: str | None = None
    volume: dict[str, Any] | None = None
    path: str = "/model"

    def describe(self) -> str:
        """``image X`` or ``volume persistentVolumeClaim models at /model``, for messages."""
        if self.image:
            return f"image {self.image}"
        kind, source = next(iter((self.volume or {"volume": {}}).items()))
        source = source if isinstance(source, dict) else {}
        # the field that names the volume in each common source type
        named = next(
            (
                str(source[k])
                for k in ("claimName", "path", "name", "secretName", "volumeID", "server")
                if k in source
            ),
            "",
        )
        return f"volume {kind} {named}".rstrip() + f" at {self.path}"


class Ollama(_Model):
    url: str = "http://ollama:11434"
    model: str = "llama3.2:3b"
    timeout_seconds: int = 60
    model_source: Literal["pull", "file"] = "pull"
    model_file: ModelFile | None = None

    @model_validator(mode="after")
    def _file(self) -> "Ollama":
        # The CRD's CEL rule says the same; repeated for API servers without CEL.
        if self.model_source == "file":
            file = self.model_file
            if file is None or bool(file.image) == bool(file.volume):
                raise ValueError(
                    "ollama.modelSource file needs ollama.modelFile with exactly one of "
                    "image and volume"
                )
        return self

    def origin(self) -> str:
        """How the model gets to Ollama, for ModelReady: ``pulled`` or ``created from the
        GGUF file in image X``."""
        if self.model_source == "pull" or self.model_file is None:
            return "pulled"
        return f"created from the GGUF file in {self.model_file.describe()}"


class Tracing(_Model):
    enabled: bool = False
    endpoint: str = "otel-collector:4318"  # OTLP/HTTP, for the apps and the sidecars
    sampling_rate: str = "1"
    browser_traces_url: str | None = None  # reachable from operators' browsers
    trace_ui_url: str | None = None  # with {trace_id}


class Auth(_Model):
    jwt_secret_ref: SecretRef
    operators_secret_ref: SecretRef
    channel_api_keys_secret_ref: SecretRef
    dapr_api_token_secret_ref: SecretRef
    app_api_token_secret_ref: SecretRef
    admin_password_secret_ref: SecretRef | None = None

    @model_validator(mode="after")
    def _default_keys(self) -> "Auth":
        defaults = {
            "jwt_secret_ref": "secret",
            "operators_secret_ref": "operators.json",
            "channel_api_keys_secret_ref": "keys.json",
            "dapr_api_token_secret_ref": "token",  # the key Dapr's api-token-secret reads
            "app_api_token_secret_ref": "token",
            "admin_password_secret_ref": "password",
        }
        return self.model_copy(
            update={f: _keyed(getattr(self, f), key) for f, key in defaults.items()}
        )


RATE_LIMIT_PATTERN = r"^[0-9]+ ?(/|per) ?([0-9]+ ?)?(second|minute|hour|day|month|year)s?$"
"""A rate limit as the gateway parses it (``limits``): ``20/minute``, ``100 per 5 minutes``."""


class Widget(_Model):
    """The customer chat widget of the gateway (docs/widget.md).

    ``channels_secret_ref`` names the Secret key holding the whole ``WIDGET_CHANNELS`` JSON
    (identity secrets included), mounted as the gateway's file of that name; the other fields
    become its environment. ``channels_revision`` changes whenever that JSON does (the chart
    sets a hash of it): the gateway reads the file once at start, so a new revision rolls it.
    """

    channels_secret_ref: SecretRef
    channels_revision: str | None = Field(default=None, max_length=63)
    customer_rate_limit: str = Field(default="20/minute", pattern=RATE_LIMIT_PATTERN)
    channel_rate_limit: str = Field(default="600/minute", pattern=RATE_LIMIT_PATTERN)
    session_rate_limit: str = Field(default="30/minute", pattern=RATE_LIMIT_PATTERN)
    channel_session_rate_limit: str = Field(default="600/minute", pattern=RATE_LIMIT_PATTERN)
    customer_read_rate_limit: str = Field(default="120/minute", pattern=RATE_LIMIT_PATTERN)
    customer_token_ttl_seconds: int = Field(default=900, ge=60, le=86_400)
    customer_session_ttl_seconds: int = Field(default=30 * 86_400, ge=3600, le=365 * 86_400)

    @model_validator(mode="after")
    def _default_key(self) -> "Widget":
        return self.model_copy(
            update={"channels_secret_ref": _keyed(self.channels_secret_ref, "channels.json")}
        )


class Knowledge(_Model):
    """A ConfigMap of help articles and ``intents.yaml`` every service reads
    (``KNOWLEDGE_DIR``)."""

    config_map: str


class SupportInboxSpec(_Model):
    """``.spec`` of a SupportInbox, defaults applied."""

    images: Images = Field(default_factory=Images)
    gateway: Gateway = Field(default_factory=Gateway)
    messaging: Scaled = Field(default_factory=Scaled)
    ai_worker: AiWorker = Field(default_factory=AiWorker)
    sidecar: Sidecar = Field(default_factory=Sidecar)
    broker: Broker
    state_store: StateStore
    database: Database
    ollama: Ollama = Field(default_factory=Ollama)
    tracing: Tracing = Field(default_factory=Tracing)
    auth: Auth
    widget: Widget | None = None
    knowledge: Knowledge | None = None

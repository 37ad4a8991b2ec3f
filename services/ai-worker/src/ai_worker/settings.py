"""ai-worker settings, read once from the environment."""

from functools import lru_cache
from pathlib import Path

from inbox_common.settings import ServiceSettings
from pydantic import AnyHttpUrl, Field

from ai_worker.prompts import Voice


class Settings(ServiceSettings):
    ollama_url: AnyHttpUrl = Field(
        default=AnyHttpUrl("http://localhost:11434"), description="OLLAMA_URL: Ollama's base URL"
    )
    ollama_model: str = Field(
        default="llama3.2:3b", min_length=1, description="OLLAMA_MODEL: model tag to ask"
    )
    ollama_timeout_s: float = Field(
        default=60.0, gt=0, le=600, description="Longest one analysis may take, in seconds"
    )
    ollama_num_ctx: int = Field(
        default=4096, ge=512, description="Context length requested per call, in tokens"
    )
    ollama_keep_alive: str = Field(default="30m", description="How long Ollama keeps the model")
    ai_max_concurrency: int = Field(
        default=2, ge=1, le=64, description="LLM calls in flight per worker process"
    )
    ai_stream_interval_ms: int = Field(
        default=100,
        ge=0,
        le=10_000,
        description=(
            "AI_STREAM_INTERVAL_MS: least time between two `insight.delta` events of one reply, "
            "in ms; 0 turns streaming to the operators off"
        ),
    )
    ai_intent_examples: Path | None = Field(
        default=None,
        description=(
            "AI_INTENT_EXAMPLES: a JSON Lines file of labelled messages (`text`, `intent`) the "
            "intent step learns from at start; unset, an insight's intent is the model's, kept "
            "to the taxonomy (else `other`)"
        ),
    )
    ai_escalation_min_score: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description=(
            "AI_ESCALATION_MIN_SCORE: how likely (0 to 1, summed over a message's three "
            "likeliest intents) the intents that escalate must be for the message to go to a "
            "human; lower hands more to people. The default has 97.9 % recall in 5-fold "
            "cross-validation on the demo's training split (`make eval` prints the held-out "
            "figures)"
        ),
    )
    ai_company: str = Field(
        default="a bank",
        min_length=1,
        max_length=200,
        description="AI_COMPANY: who the operators work for, as the prompts name it",
    )
    ai_tone: str = Field(
        default="polite, concise",
        min_length=1,
        max_length=200,
        description="AI_TONE: how suggested replies sound (`a <tone> reply`)",
    )
    ai_languages: str = Field(
        default="",
        max_length=200,
        description=(
            "AI_LANGUAGES: comma-separated languages replies may be written in, the first the "
            "fallback; empty: the model's choice"
        ),
    )
    ai_never_promise: str = Field(
        default="refunds or outcomes",
        min_length=1,
        max_length=300,
        description="AI_NEVER_PROMISE: what a suggested reply must never promise",
    )
    insight_cache_ttl_s: int = Field(
        default=86_400, ge=60, description="How long a finished insight is kept for redeliveries"
    )

    def voice(self) -> Voice:
        """The deployment's voice and rules for the prompts."""
        return Voice(
            company=self.ai_company,
            tone=self.ai_tone,
            languages=tuple(x.strip() for x in self.ai_languages.split(",") if x.strip()),
            never_promise=self.ai_never_promise,
        )


@lru_cache
def get_settings() -> Settings:
    return Settings()

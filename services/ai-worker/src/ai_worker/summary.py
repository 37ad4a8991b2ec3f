"""The resolution summary: when a conversation is resolved, the model sums the whole
conversation up in a few sentences, shown at the top of it.

The conversation is sent turn by turn with each author's role
(:func:`ai_worker.prompts.summary_messages`), and the summary asked for as JSON
(``format=SUMMARY_SCHEMA``) through the same :class:`OllamaChat` as the insights (so the call
is a ``chat <model>`` span), and parsed as defensively: the first JSON object, validated with
bounded length. Any failure ends as ``unavailable`` with its reason; a summary never blocks
or undoes the resolve.
"""

import asyncio
import logging
import time
from typing import Annotated

import ollama
from inbox_common.events import (
    SUMMARY_MAX_TEXT,
    InsightStatus,
    SummaryCompleted,
    SummaryRequested,
)
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from ai_worker.llm import LLM_FAILURES, OllamaChat, describe_failure
from ai_worker.parser import MAX_OUTPUT_CHARS, json_object_in
from ai_worker.prompts import summary_messages
from ai_worker.settings import Settings

log = logging.getLogger(__name__)


class LlmSummary(BaseModel):
    """What the model must return for one conversation."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    summary: Annotated[str, StringConstraints(min_length=1, max_length=SUMMARY_MAX_TEXT)]


SUMMARY_SCHEMA: dict = LlmSummary.model_json_schema()
"""JSON Schema passed to Ollama as ``format``."""


class SummaryParseError(ValueError):
    """The model output holds no valid summary; ``str(exc)`` says why."""


def parse_summary(text: str) -> LlmSummary:
    """Extract and validate a summary from raw model output.

    Raises:
        SummaryParseError: empty or oversized output, no JSON object, or one that fails the
            schema.
    """
    if not text or not text.strip():
        raise SummaryParseError("model returned no text")
    if len(text) > MAX_OUTPUT_CHARS:
        raise SummaryParseError(f"model output longer than {MAX_OUTPUT_CHARS} characters")
    obj = json_object_in(text)
    if obj is None:
        raise SummaryParseError("no JSON object in model output")
    try:
        return LlmSummary.model_validate(obj)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'object'}: {e['msg']}" for e in exc.errors()
        )
        reason = f"model output does not match the schema: {problems}"
        raise SummaryParseError(reason[:400]) from None


class Summariser:
    """Ask Ollama for a resolution summary, bounded in time; never raises.

    Args:
        settings: the worker's settings (URL, model, timeout).
        slots: the semaphore bounding LLM calls in flight, shared with the insights.
        client: an ``ollama.AsyncClient``; made from ``settings`` when omitted.
    """

    def __init__(
        self,
        settings: Settings,
        slots: asyncio.Semaphore,
        client: ollama.AsyncClient | None = None,
    ) -> None:
        self._settings = settings
        self._chat = OllamaChat(settings, client)
        self._slots = slots

    async def summarise(self, event: SummaryRequested) -> SummaryCompleted:
        """Summarise the conversation of ``event``.

        Returns:
            ``available`` with the summary, or ``unavailable`` with ``error`` saying why
            (Ollama unreachable, HTTP error, timeout after ``ollama_timeout_s`` s, a stream
            that broke off, output that is not a valid summary).
        """
        messages = summary_messages(event, self._settings.voice())
        async with self._slots:
            started = time.monotonic()
            try:
                async with asyncio.timeout(self._settings.ollama_timeout_s):
                    text = await self._chat.stream(messages, SUMMARY_SCHEMA, None)
                summary = parse_summary(text)
            except LLM_FAILURES as exc:
                error = describe_failure(exc, self._settings)
            except SummaryParseError as exc:
                error = str(exc)
            else:
                return self._completed(event, started, summary=summary.summary)
        log.warning(
            "summary unavailable",
            extra={"conversation_id": str(event.conversation_id), "reason": error},
        )
        return self._completed(event, started, error=error)

    def _completed(
        self,
        event: SummaryRequested,
        started: float,
        summary: str | None = None,
        error: str | None = None,
    ) -> SummaryCompleted:
        return SummaryCompleted(
            conversation_id=event.conversation_id,
            resolution=event.resolution,
            status=InsightStatus.AVAILABLE if summary else InsightStatus.UNAVAILABLE,
            summary=summary,
            error=error,
            model=self._settings.ollama_model,
            duration_ms=round((time.monotonic() - started) * 1000),
        )

"""LLM enrichment of one customer message through the real ``ollama`` AsyncClient."""

import asyncio
import logging
import time

import httpx
import ollama
from inbox_common.events import AiCompleted, InsightStatus, MessageCreated
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from ai_worker.parser import INSIGHT_SCHEMA, InsightParseError, parse_insight
from ai_worker.prompts import SYSTEM_PROMPT, user_prompt
from ai_worker.settings import Settings

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

RETRYABLE_STATUS = {429, 503}
"""Ollama answers 503 when its queue (``OLLAMA_MAX_QUEUE``) is full: worth another try."""


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ollama.ResponseError) and exc.status_code in RETRYABLE_STATUS


class Analyser:
    """Ask Ollama for an insight, bounded in time and concurrency; never raises.

    Args:
        settings: the worker's settings (URL, model, timeout, concurrency).
        client: an ``ollama.AsyncClient``; made from ``settings`` when omitted.
    """

    def __init__(self, settings: Settings, client: ollama.AsyncClient | None = None) -> None:
        self._settings = settings
        self._client = client or ollama.AsyncClient(
            host=str(settings.ollama_url).rstrip("/"), timeout=settings.ollama_timeout_s
        )
        self._slots = asyncio.Semaphore(settings.ai_max_concurrency)

    async def analyse(self, message: MessageCreated, revision: int = 1) -> AiCompleted:
        """Enrich ``message`` as revision ``revision`` of its insight.

        Returns:
            ``available`` with intent, summary and suggested reply; or ``unavailable`` with
            ``error`` saying why (Ollama unreachable, HTTP error, timeout after
            ``ollama_timeout_s`` s, output that is not a valid insight). ``duration_ms`` is the
            time spent on the LLM call, queueing for a slot excluded. ``trace_id`` is the
            current trace's, when traced.
        """
        async with self._slots:
            started = time.monotonic()
            try:
                async with asyncio.timeout(self._settings.ollama_timeout_s):
                    text = await self._chat(message.body)
                insight = parse_insight(text)
            except TimeoutError:
                error = f"the model did not answer within {self._settings.ollama_timeout_s:g} s"
            except ollama.ResponseError as exc:
                error = f"Ollama answered HTTP {exc.status_code}: {str(exc.error)[:200]}"
            except (ConnectionError, httpx.TransportError) as exc:
                error = (
                    f"Ollama is unreachable at {self._settings.ollama_url}: {type(exc).__name__}"
                )
            except InsightParseError as exc:
                error = str(exc)
            else:
                return self._completed(message, revision, started, insight=insight)
        log.warning(
            "insight unavailable", extra={"message_id": str(message.message_id), "reason": error}
        )
        return self._completed(message, revision, started, error=error)

    async def _chat(self, body: str) -> str:
        """One chat call in a span named and attributed per the OpenTelemetry semantic
        conventions for generative AI (https://opentelemetry.io/docs/specs/semconv/gen-ai/):
        model requested and answered, token counts, and Ollama's own durations in ns."""
        model = self._settings.ollama_model
        with _tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT) as span:
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("gen_ai.provider.name", "ollama")
            span.set_attribute("gen_ai.request.model", model)
            span.set_attribute("gen_ai.request.temperature", 0.2)
            span.set_attribute("server.address", self._settings.ollama_url.host or "")
            if self._settings.ollama_url.port:
                span.set_attribute("server.port", self._settings.ollama_url.port)
            try:
                response = await self._chat_with_retries(body)
            except Exception as exc:
                span.set_attribute("error.type", type(exc).__name__)
                span.set_status(StatusCode.ERROR, str(exc)[:200])
                raise
            span.set_attribute("gen_ai.response.model", response.model or model)
            if response.done_reason:
                span.set_attribute("gen_ai.response.finish_reasons", [response.done_reason])
            for attribute, value in (
                ("gen_ai.usage.input_tokens", response.prompt_eval_count),
                ("gen_ai.usage.output_tokens", response.eval_count),
                ("ollama.total_duration_ns", response.total_duration),
                ("ollama.eval_duration_ns", response.eval_duration),
            ):
                if value is not None:
                    span.set_attribute(attribute, value)
        return response.message.content or ""

    async def _chat_with_retries(self, body: str) -> ollama.ChatResponse:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(3),
            wait=wait_exponential_jitter(initial=0.5, max=5),
            reraise=True,
        ):
            with attempt:
                response = await self._client.chat(
                    model=self._settings.ollama_model,
                    messages=[
                        {"role": "system", "content": SYSTEM_PROMPT},
                        {"role": "user", "content": user_prompt(body)},
                    ],
                    format=INSIGHT_SCHEMA,
                    options={"temperature": 0.2, "num_ctx": self._settings.ollama_num_ctx},
                    keep_alive=self._settings.ollama_keep_alive,
                )
        return response

    def _completed(
        self, message: MessageCreated, revision: int, started: float, *, insight=None, error=None
    ) -> AiCompleted:  # noqa: ANN001
        duration_ms = round((time.monotonic() - started) * 1000)
        context = trace.get_current_span().get_span_context()
        common = {
            "message_id": message.message_id,
            "conversation_id": message.conversation_id,
            "revision": revision,
            "trace_id": f"{context.trace_id:032x}" if context.is_valid else None,
            "model": self._settings.ollama_model,
            "duration_ms": duration_ms,
        }
        if insight is None:
            return AiCompleted(status=InsightStatus.UNAVAILABLE, error=error, **common)
        return AiCompleted(
            status=InsightStatus.AVAILABLE,
            intent=insight.intent,
            summary=insight.summary,
            suggested_reply=insight.suggested_reply,
            **common,
        )

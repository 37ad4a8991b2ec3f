"""Calls to Ollama through the real ``ollama`` AsyncClient: retries, streaming, and one span
per call named and attributed per the OpenTelemetry semantic conventions for generative AI
(https://opentelemetry.io/docs/specs/semconv/gen-ai/)."""

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import httpx
import ollama
from inbox_common import metrics
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from ai_worker.settings import Settings

_tracer = trace.get_tracer(__name__)

OnOutput = Callable[[str], Awaitable[None]]
"""Called with the model's whole output so far, after each streamed chunk."""

RETRYABLE_STATUS = {429, 503}
"""Ollama answers 503 when its queue (``OLLAMA_MAX_QUEUE``) is full: worth another try."""
TEMPERATURE = 0.2


class BrokenStreamError(Exception):
    """Ollama's stream stopped before its final ``done`` chunk."""


LLM_FAILURES = (
    TimeoutError,
    ollama.ResponseError,
    BrokenStreamError,
    ConnectionError,
    httpx.TransportError,
)
"""What a call to Ollama may end with, besides an answer."""


def describe_failure(exc: BaseException, settings: Settings) -> str:
    """One line for an operator: why the model gave no answer (one of :data:`LLM_FAILURES`;
    the ``TimeoutError`` is the caller's ``ollama_timeout_s`` running out)."""
    if isinstance(exc, TimeoutError):
        return f"the model did not answer within {settings.ollama_timeout_s:g} s"
    if isinstance(exc, ollama.ResponseError):
        return f"Ollama answered HTTP {exc.status_code}: {str(exc.error)[:200]}"
    if isinstance(exc, BrokenStreamError):
        return "the model's answer broke off before it was complete"
    return f"Ollama is unreachable at {settings.ollama_url}: {type(exc).__name__}"


class OllamaChat:
    """Chat calls to one Ollama server and model (``settings``)."""

    def __init__(self, settings: Settings, client: ollama.AsyncClient | None = None) -> None:
        self._settings = settings
        self._client = client or ollama.AsyncClient(
            host=str(settings.ollama_url).rstrip("/"), timeout=settings.ollama_timeout_s
        )

    async def ask(self, messages: list[dict], tools: list[dict]) -> ollama.Message:
        """One answer, not streamed, with ``tools`` offered; its ``tool_calls`` say which the
        model wants run.

        Raises:
            ollama.ResponseError, httpx.TransportError: after up to 3 tries.
        """
        with self._span() as span:
            span.set_attribute("gen_ai.request.tools", [t["function"]["name"] for t in tools])
            response = None
            async for attempt in self._retrying(lambda: False):
                with attempt:
                    response = await self._client.chat(
                        model=self._settings.ollama_model,
                        messages=messages,
                        tools=tools,
                        options=self._options(),
                        keep_alive=self._settings.ollama_keep_alive,
                    )
            self._record(span, response)
            return response.message

    async def stream(self, messages: list[dict], schema: dict, on_output: OnOutput | None) -> str:
        """The answer as JSON per ``schema``, streamed to ``on_output`` as it comes.

        Retried up to 3 times, and only before the first chunk: Ollama's queue being full
        (429/503), or a connection that failed (including a pooled keep-alive connection the
        server had just closed). Once text has streamed, a failure is final.

        Raises:
            BrokenStreamError: the stream broke off, or ended without Ollama's ``done`` chunk.
            ollama.ResponseError, httpx.TransportError: after the retries.
        """
        streamed = False
        with self._span() as span:
            async for attempt in self._retrying(lambda: streamed):  # noqa: B023 - read when judged
                with attempt:
                    chunks = await self._client.chat(
                        model=self._settings.ollama_model,
                        messages=messages,
                        format=schema,
                        options=self._options(),
                        keep_alive=self._settings.ollama_keep_alive,
                        stream=True,
                    )
                    parts: list[str] = []
                    answer = None
                    try:
                        async for chunk in chunks:
                            streamed = True
                            if answer is not None:
                                continue
                            parts.append(chunk.message.content or "")
                            if chunk.done:
                                self._record(span, chunk)
                                # read on to the body's end: a response left unread closes its
                                # connection instead of returning it to the pool
                                answer = "".join(parts)
                            elif on_output is not None:
                                await on_output("".join(parts))
                    except httpx.TransportError as exc:
                        if answer is not None:
                            return answer  # whole already; only the body's end was lost
                        if streamed:
                            raise BrokenStreamError(str(exc)) from exc
                        raise
                    if answer is not None:
                        return answer
            raise BrokenStreamError("the model's stream ended before it was done")

    def _options(self) -> dict:
        return {"temperature": TEMPERATURE, "num_ctx": self._settings.ollama_num_ctx}

    def _retrying(self, streamed: Callable[[], bool]) -> AsyncRetrying:
        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, ollama.ResponseError):
                return exc.status_code in RETRYABLE_STATUS
            return isinstance(exc, httpx.TransportError) and not streamed()

        return AsyncRetrying(
            retry=retry_if_exception(retryable),
            stop=stop_after_attempt(3),
            wait=wait_exponential_jitter(initial=0.5, max=5),
            reraise=True,
        )

    @contextmanager
    def _span(self) -> Iterator[Span]:
        """The ``chat <model>`` span with its request attributes; a failure sets
        ``error.type``."""
        settings = self._settings
        with _tracer.start_as_current_span(
            f"chat {settings.ollama_model}", kind=SpanKind.CLIENT
        ) as span:
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("gen_ai.provider.name", "ollama")
            span.set_attribute("gen_ai.request.model", settings.ollama_model)
            span.set_attribute("gen_ai.request.temperature", TEMPERATURE)
            span.set_attribute("server.address", settings.ollama_url.host or "")
            if settings.ollama_url.port:
                span.set_attribute("server.port", settings.ollama_url.port)
            try:
                yield span
            except Exception as exc:
                span.set_attribute("error.type", type(exc).__name__)
                span.set_status(StatusCode.ERROR, str(exc)[:200])
                raise

    def _record(self, span: Span, response: ollama.ChatResponse) -> None:
        """Put the final answer's model, finish reason, token counts and durations on ``span``
        and add its tokens to :data:`inbox_common.metrics.LLM_TOKENS`."""
        for token_type, count in (
            ("input", response.prompt_eval_count),
            ("output", response.eval_count),
        ):
            if count:
                metrics.LLM_TOKENS.labels(token_type, "chat").inc(count)
        span.set_attribute("gen_ai.response.model", response.model or self._settings.ollama_model)
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

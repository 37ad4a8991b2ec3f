"""Token usage from Ollama's answers into ``inbox_llm_tokens_total``: the tool round and the
streamed insight both count, from the real ``ollama`` client reading canned HTTP answers."""

import json

import httpx
import ollama
import pytest
from ai_worker.knowledge import SEARCH_TOOL
from ai_worker.llm import BrokenStreamError, OllamaChat
from ai_worker.parser import INSIGHT_SCHEMA
from ai_worker.settings import Settings
from prometheus_client import REGISTRY

MODEL = "inbox-tiny"
INSIGHT = {"intent": "card_arrival", "summary": "Card late.", "suggested_reply": "Sorry!"}


def tokens(token_type: str) -> float:
    labels = {"type": token_type, "operation": "chat"}
    return REGISTRY.get_sample_value("inbox_llm_tokens_total", labels) or 0.0


def final(content: str, prompt_eval_count: int | None, eval_count: int | None) -> dict:
    answer = {
        "model": MODEL,
        "created_at": "2025-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": content},
        "done": True,
        "done_reason": "stop",
        "eval_duration": 1_000_000,
    }
    if prompt_eval_count is not None:
        answer["prompt_eval_count"] = prompt_eval_count
    if eval_count is not None:
        answer["eval_count"] = eval_count
    return answer


def chunk(content: str) -> dict:
    return {
        "model": MODEL,
        "created_at": "2025-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": content},
        "done": False,
    }


def chat(handler) -> OllamaChat:  # noqa: ANN001
    settings = Settings(
        environment="test", ollama_url="http://ollama.test:11434", ollama_model=MODEL
    )
    client = ollama.AsyncClient(
        host=str(settings.ollama_url), transport=httpx.MockTransport(handler)
    )
    return OllamaChat(settings, client)


def ndjson(*lines: dict) -> httpx.Response:
    body = "".join(json.dumps(line) + "\n" for line in lines)
    return httpx.Response(200, content=body, headers={"Content-Type": "application/x-ndjson"})


async def test_the_tool_round_and_the_streamed_insight_both_count() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body.get("stream"):
            text = json.dumps(INSIGHT)
            return ndjson(chunk(text[:20]), chunk(text[20:]), final("", 350, 41))
        assert body["tools"], "the tool round offers the tool"
        return httpx.Response(200, json=final("", 300, 7))

    llm = chat(handler)
    before = tokens("input"), tokens("output")
    messages = [{"role": "user", "content": "Where is my card?"}]
    await llm.ask(messages, [SEARCH_TOOL])
    assert (tokens("input") - before[0], tokens("output") - before[1]) == (300, 7)
    text = await llm.stream(messages, INSIGHT_SCHEMA, None)
    assert json.loads(text) == INSIGHT
    assert (tokens("input") - before[0], tokens("output") - before[1]) == (650, 48)


async def test_an_answer_without_counts_and_a_broken_stream_count_nothing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content).get("stream"):
            return ndjson(chunk('{"intent": '))  # no final chunk: no usage to count
        return httpx.Response(200, json=final("", None, None))

    llm = chat(handler)
    before = tokens("input"), tokens("output")
    messages = [{"role": "user", "content": "Where is my card?"}]
    await llm.ask(messages, [SEARCH_TOOL])
    with pytest.raises(BrokenStreamError):
        await llm.stream(messages, INSIGHT_SCHEMA, None)
    assert (tokens("input"), tokens("output")) == before


def test_both_token_types_are_exported_from_the_start() -> None:
    assert (
        REGISTRY.get_sample_value("inbox_llm_tokens_total", {"type": "output", "operation": "chat"})
        is not None
    )
    assert (
        REGISTRY.get_sample_value("inbox_llm_tokens_total", {"type": "input", "operation": "chat"})
        is not None
    )

"""The stand-in Ollama answers as the real server does.

The real ``ollama serve`` (built for CPU by ``tools/build-ollama.sh``, ``make tools``) runs on a
loopback port with the test model ``inbox-tiny`` (``tools/make-model.py``). Each case goes to
both servers: errors must match in status and JSON body; answers (chat, streamed chunks, a
tool call, ``/api/tags``, ``/api/show``) in status and shape: the same keys at every level, the
same JSON types. The texts differ (the stand-in does not run a model).
"""

import json
import re

import httpx2 as httpx
import pytest
from ai_worker.knowledge import SEARCH_TOOL, TOOL_NAME
from ai_worker.parser import INSIGHT_SCHEMA

pytestmark = pytest.mark.integration

MISSING = "no-such-model:1b"


def answer(url: str, method: str, path: str, body: object = None) -> tuple[int, object]:
    content = None if body is None else (body if isinstance(body, bytes) else json.dumps(body))
    response = httpx.request(method, f"{url}{path}", content=content, timeout=60)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text


def lines(url: str, body: dict) -> list[dict]:
    """A streamed ``/api/chat`` answer, one JSON object per NDJSON line."""
    response = httpx.post(f"{url}/api/chat", content=json.dumps(body), timeout=60)
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def shape(value: object) -> object:
    """``value``'s structure: each dict's keys with their values' shapes, a list as the shape
    of its first item, and the JSON type of everything else."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return (
        "number"
        if isinstance(value, int | float) and not isinstance(value, bool)
        else (type(value).__name__)
    )


CASES = {
    "chat with an unknown model": (
        "POST",
        "/api/chat",
        {"model": MISSING, "stream": False, "messages": [{"role": "user", "content": "hi"}]},
    ),
    "chat streamed with an unknown model": (
        "POST",
        "/api/chat",
        {"model": MISSING, "messages": [{"role": "user", "content": "hi"}]},
    ),
    "chat without a model": ("POST", "/api/chat", {}),
    "chat with an empty body": ("POST", "/api/chat", b""),
    "chat with a cut body": ("POST", "/api/chat", b'{"model": "x", "messages": ['),
    "chat with an array for a body": ("POST", "/api/chat", b"[1]"),
    "show an unknown model": ("POST", "/api/show", {"model": MISSING}),
    "show an unknown model by its old field": ("POST", "/api/show", {"name": MISSING}),
    "show without a model": ("POST", "/api/show", {}),
    "show with an empty body": ("POST", "/api/show", b""),
    "pull without a model": ("POST", "/api/pull", {}),
}


@pytest.mark.parametrize("case", CASES)
def test_an_error_is_the_real_servers(case: str, real_ollama, fake_ollama) -> None:
    method, path, body = CASES[case]
    assert answer(fake_ollama.url, method, path, body) == answer(
        real_ollama.url, method, path, body
    )


def test_version_is_the_pinned_servers(real_ollama, fake_ollama) -> None:
    assert answer(fake_ollama.url, "GET", "/api/version") == answer(
        real_ollama.url, "GET", "/api/version"
    )


def chat(model: str, **fields: object) -> dict:
    messages = [
        {"role": "system", "content": "Classify the customer's message."},
        {"role": "user", "content": "My card has not arrived yet"},
    ]
    return {"model": model, "messages": messages, "options": {"temperature": 0.2}, **fields}


FORCED_TOOL_CALL = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "enum": [TOOL_NAME]},
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string", "pattern": "^[a-z ]{1,40}$"}},
            "required": ["query"],
        },
    },
    "required": ["name", "parameters"],
}
"""A schema that makes the test model answer with a call in its template's tool format
(``{"name": ..., "parameters": ...}``), which the real server turns into ``tool_calls``.
The query is held to lower-case words: the server's tool-call parser counts braces, so a query
of ``"}"`` (which the bigram model wrote about one call in eight) leaves the call as plain
content."""


RFC3339_NANO_UTC = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z"
"""Go's ``time.RFC3339Nano`` of a UTC time: 1 to 9 fraction digits, or none at all."""


def test_answers_have_the_real_shape(real_ollama, fake_ollama) -> None:
    real, fake = real_ollama, fake_ollama
    # a whole answer, not streamed
    real_status, real_done = answer(
        real.url, "POST", "/api/chat", chat(real.model, stream=False, format=INSIGHT_SCHEMA)
    )
    fake_status, fake_done = answer(
        fake.url, "POST", "/api/chat", chat(fake.model, stream=False, format=INSIGHT_SCHEMA)
    )
    assert (fake_status, shape(fake_done)) == (real_status, shape(real_done))
    assert real_done["done_reason"] == fake_done["done_reason"] == "stop"
    # streamed: every chunk but the last, then the last
    real_lines = lines(real.url, chat(real.model, format=INSIGHT_SCHEMA))
    fake_lines = lines(fake.url, chat(fake.model, format=INSIGHT_SCHEMA))
    assert {json.dumps(shape(c)) for c in fake_lines[:-1]} == {
        json.dumps(shape(c)) for c in real_lines[:-1]
    }
    assert shape(fake_lines[-1]) == shape(real_lines[-1])
    assert fake_lines[-1]["message"]["content"] == real_lines[-1]["message"]["content"] == ""
    # the created_at of both: Go's RFC 3339 with nanoseconds in UTC, which drops the
    # fraction's trailing zeros (so its length varies from one answer to the next)
    for created_at in (real_done["created_at"], fake_done["created_at"]):
        assert re.fullmatch(RFC3339_NANO_UTC, created_at), created_at


def test_a_tool_call_has_the_real_shape(real_ollama, fake_ollama) -> None:
    real_status, real_call = answer(
        real_ollama.url,
        "POST",
        "/api/chat",
        chat(real_ollama.model, stream=False, tools=[SEARCH_TOOL], format=FORCED_TOOL_CALL),
    )
    fake_status, fake_call = answer(
        fake_ollama.url,
        "POST",
        "/api/chat",
        chat(fake_ollama.model, stream=False, tools=[SEARCH_TOOL]),
    )
    assert real_status == 200 and real_call["message"]["tool_calls"], real_call
    assert (fake_status, shape(fake_call)) == (real_status, shape(real_call))
    real_id, fake_id = (c["message"]["tool_calls"][0]["id"] for c in (real_call, fake_call))
    # the server's toolCallId(): "call_" and 8 of a-z0-9 (server/routes.go)
    for call_id in (real_id, fake_id):
        assert re.fullmatch(r"call_[a-z0-9]{8}", call_id), call_id


def test_tags_and_show_have_the_real_shape(real_ollama, fake_ollama) -> None:
    for path, method, real_body, fake_body in (
        ("/api/tags", "GET", None, None),
        ("/api/show", "POST", {"model": real_ollama.model}, {"model": fake_ollama.model}),
    ):
        real_status, real = answer(real_ollama.url, method, path, real_body)
        fake_status, fake = answer(fake_ollama.url, method, path, fake_body)
        assert (fake_status, set(fake)) == (real_status, set(real)), path
        if path == "/api/tags":
            assert shape(fake["models"][0]) == shape(real["models"][0])
        else:
            assert shape(fake["details"]) == shape(real["details"])
            assert fake["capabilities"] == real["capabilities"] == ["completion", "tools"]

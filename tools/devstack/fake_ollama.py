"""A stand-in Ollama server for the tests and for `make run` where no model can be fetched.

It speaks the part of Ollama's HTTP API the ai-worker uses (https://github.com/ollama/ollama/blob/main/docs/api.md):
``POST /api/chat`` (``stream`` true or false), ``GET /api/tags``, ``GET /api/version``,
``POST /api/show``, and ``POST /api/pull`` (its model is always there: a pull of it streams
Ollama's status lines and succeeds, of any other model fails as Ollama's does). Its errors
are the real server's, status and body, and its answers have the real server's shape:
tests/test_integration_ollama_conformance.py compares the two (docs/models.md lists what
still differs). The
answer depends on the mode, set for the whole server with ``POST /__fake__/mode``
``{"mode": ...}`` or for one message by a ``[[fake:<mode>]]`` marker in the customer text
(the last ``user`` message):

``valid`` JSON insight; ``fenced`` the same inside a Markdown fence with prose around it;
``prose`` text without JSON; ``garbage`` broken JSON; ``slow`` a valid answer after
``slow_s`` seconds (beyond the ai-worker's timeout); ``delayed`` a valid answer after
``delay_s`` seconds (within it: a call in progress); ``error`` HTTP 500; ``stream`` a valid
answer streamed one word every ``stream_delay_s`` seconds (a model writing); ``broken`` a
stream that stops half-way, the connection dropped; ``busy`` HTTP 503 with Ollama's
full-queue error (``OLLAMA_MAX_QUEUE`` reached) for the first :data:`BUSY_REFUSALS` insight
calls of a customer text, then a valid answer; ``unsafe`` a valid insight whose reply promises
a refund (what a prompt injection aims for). Every streamed answer waits
``token_delay_s`` (default 0) between words. The intent of a
message found in the demo data set is its human label (so the demo shows sensible intents);
others get ``general_inquiry``.
A request that offers ``tools`` is the tool round: it is answered with a
``search_knowledge_base`` call for the customer text, and the insight that follows names the
first article the tool returned. The reply also follows the system prompt's strategy
(``Strategy: short answer|careful analysis|escalation``).
A request whose system prompt is the ai-worker's resolution-summary prompt ("You summarise a
resolved customer-support conversation") is answered with ``{"summary": ...}`` built from the
conversation's turns: how many ``user`` and ``assistant`` messages, the customer's first
(``user``) and the operator's last (``assistant``); modes apply as above, a marker in any
turn.
``GET /__fake__/stats`` counts insight calls per mode (``calls``), per customer text
(``texts``), tool rounds per customer text (``tool_rounds``), summary calls per mode
(``summaries``), 503s of ``busy`` per customer text (``busy_refusals``) and calls under way
(``in_flight``). ``GET /__fake__/requests`` returns the
bodies of the last :data:`KEPT_REQUESTS` ``/api/chat`` requests as received, oldest first
(``{"requests": [...]}``), so tests can check what reaches the model.

Usage: ``python -m devstack.fake_ollama [--host 127.0.0.1] [--port 11434] [--mode valid]
[--slow-s 120] [--token-delay-s 0.03]``. (The cluster runs the real Ollama server: see
docs/models.md.)
"""

import argparse
import asyncio
import hashlib
import json
import random
import re
import string
import sys
import time
from collections import Counter, deque
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from devstack.dataset import DATA_FILE

if TYPE_CHECKING:
    from devstack.procs import Process

MODES = (
    "valid",
    "fenced",
    "prose",
    "garbage",
    "slow",
    "delayed",
    "error",
    "stream",
    "broken",
    "busy",
    "unsafe",
)
MODEL = "fake-insight:1b"
SERVER_VERSION = "0.17.4"
"""The Ollama release the stand-in answers as: the one `make tools` builds (OLLAMA_VERSION in
tools/install.sh), which tests/test_integration_ollama_conformance.py compares it with."""
MODEL_SIZE = 1_000_000
MODEL_DIGEST = "sha256:" + hashlib.sha256(MODEL.encode()).hexdigest()
"""The one blob a pull of MODEL reports, as Ollama reports each layer it pulls."""
DETAILS = {
    "parent_model": "",
    "format": "gguf",
    "family": "fake",
    "families": ["fake"],
    "parameter_size": "1B",
    "quantization_level": "Q4_0",
}
"""A model's ``details`` in ``/api/tags`` and ``/api/show``, with the fields the real server has."""
PULL_UNKNOWN = "pull model manifest: file does not exist"
"""Ollama's error for a model the registry does not have."""
SERVER_BUSY = "server busy, please try again.  maximum pending requests exceeded"
"""Ollama's 503 when ``OLLAMA_MAX_QUEUE`` requests already wait (two spaces, as it writes it)."""
BUSY_REFUSALS = 2
"""Insight calls for one customer text that ``busy`` refuses before it answers."""
KEPT_REQUESTS = 1000
STRATEGIES = ("short answer", "careful analysis", "escalation")
"""As the ai-worker's system prompts name them (``Strategy: <name>.``)."""
_MARKER = re.compile(r"\[\[fake:([a-z]+)\]\]")
SUMMARY_PROMPT = "You summarise a resolved customer-support conversation"


def _labels() -> dict[str, str]:
    if not DATA_FILE.exists():
        return {}
    rows = (json.loads(line) for line in DATA_FILE.read_text().splitlines() if line.strip())
    return {row["text"].strip().lower(): row["intent"] for row in rows}


def insight_for(
    text: str, labels: dict[str, str], strategy: str = "", article: str | None = None
) -> dict[str, str]:
    """A plausible insight for ``text`` without a model, shaped by the prompt's strategy and
    the first help article a ``search_knowledge_base`` round returned, if any."""
    clean = _MARKER.sub("", text).strip()
    intent = labels.get(clean.lower(), "general_inquiry").lower()
    topic = intent.replace("_", " ").rstrip("?")
    summary = f"The customer asks about {topic}: {clean[:120]}"
    reply = f"Hello, thank you for reaching out about {topic}. "
    if strategy == "escalation":
        reply += (
            "I am sorry for the trouble. A specialist team will take over your case. If you "
            "think someone else used your card, please freeze it in the app now."
        )
    elif strategy == "short answer":
        reply += "Here is the short answer."
    else:
        reply += (
            "I am looking into this for you and will get back to you shortly with the "
            "details. Please do not share your PIN or full card number in this chat."
        )
    if article:
        reply += f' Our help article "{article}" explains the details.'
    return {"intent": intent, "summary": summary[:380], "suggested_reply": reply}


def conversation_turns(messages: list[dict]) -> list[tuple[str, str]]:
    """The ``(role, content)`` of each ``user`` and ``assistant`` message, oldest first; an
    assistant message that only calls tools is no turn."""
    return [
        (m["role"], m.get("content") or "")
        for m in messages
        if m.get("role") == "user" or (m.get("role") == "assistant" and not m.get("tool_calls"))
    ]


def summary_for(turns: list[tuple[str, str]]) -> dict[str, str]:
    """A recognisable resolution summary of a conversation's ``(role, content)`` turns."""
    lines = [(role, _MARKER.sub("", body).strip()) for role, body in turns]
    customer = next((body for role, body in lines if role == "user"), "")
    operator = next((body for role, body in reversed(lines) if role == "assistant"), "")
    summary = f'Resolved after {len(lines)} messages. The customer wrote: "{customer[:120]}".'
    summary += f' The operator answered: "{operator[:120]}".' if operator else " No operator reply."
    return {"summary": summary}


class BrokenStream(Exception):
    """Raised inside a streamed answer: uvicorn drops the connection half-way."""


async def _json_body(request: Request, kind: str) -> dict | JSONResponse:
    """The request's JSON object, or the 400 Ollama answers instead: Go's decoder messages
    for an empty body, a cut one and one that is not an object (``kind``: ``Chat``, ``Show``,
    ``Pull``, as in ``api.ChatRequest``); other broken JSON gets a message of the same form
    as Go's ("invalid character ..."), not always the same words."""
    raw = await request.body()
    if not raw.strip():
        return JSONResponse({"error": "missing request body"}, status_code=400)
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        if getattr(exc, "pos", 0) >= len(raw.rstrip()):
            return JSONResponse({"error": "unexpected EOF"}, status_code=400)
        return JSONResponse({"error": "invalid character in JSON body"}, status_code=400)
    if not isinstance(payload, dict):
        go_kind = {list: "array", str: "string", bool: "bool"}.get(type(payload), "number")
        error = f"json: cannot unmarshal {go_kind} into Go value of type api.{kind}Request"
        return JSONResponse({"error": error}, status_code=400)
    return payload


def _now() -> str:
    """A timestamp as Ollama writes ``created_at``: Go's ``time.RFC3339Nano`` in UTC, whose
    fraction drops its trailing zeros (and the dot with them)."""
    ns = time.time_ns()
    fraction = f"{ns % 1_000_000_000:09d}".rstrip("0")
    stamp = datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction}Z" if fraction else f"{stamp}Z"


def _usage(messages: list[dict], content: str, started_ns: int) -> dict[str, int]:
    """The counts and durations (ns) Ollama adds to a final answer, words standing in for
    tokens."""
    return {
        "total_duration": time.monotonic_ns() - started_ns if started_ns else 3_000_000,
        "load_duration": 0,
        "prompt_eval_count": sum(len(str(m.get("content", "")).split()) for m in messages),
        "prompt_eval_duration": 1_000_000,
        "eval_count": len(content.split()),
        "eval_duration": 2_000_000,
    }


def _tool_call(name: str, arguments: dict) -> dict:
    """One tool call as Ollama returns it: an ``id`` (``call_`` and 8 lowercase letters or
    digits) and the function's ``index`` in the answer, beside its name and arguments."""
    suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=8))
    return {"id": f"call_{suffix}", "function": {"index": 0, "name": name, "arguments": arguments}}


def _model_name(payload: dict) -> str:
    """The model a request names: ``model``, or the older ``name`` Ollama still reads."""
    return str(payload.get("model") or payload.get("name") or "")


def create_app(
    mode: str = "valid",
    slow_s: float = 120.0,
    delay_s: float = 2.0,
    token_delay_s: float = 0.0,
    stream_delay_s: float = 0.05,
) -> Starlette:
    state = {
        "mode": mode,
        "slow_s": slow_s,
        "delay_s": delay_s,
        "token_delay_s": token_delay_s,
        "stream_delay_s": stream_delay_s,
        "in_flight": 0,
    }
    stats: Counter[str] = Counter()
    texts: Counter[str] = Counter()
    tool_rounds: Counter[str] = Counter()
    summaries: Counter[str] = Counter()
    pulls: Counter[str] = Counter()
    busy_refused: Counter[str] = Counter()
    received: deque[dict] = deque(maxlen=KEPT_REQUESTS)
    labels = _labels()

    def content_for(
        chosen: str,
        text: str,
        strategy: str,
        article: str | None,
        turns: list[tuple[str, str]] | None = None,
    ) -> str:
        if turns is not None:
            body = json.dumps(summary_for(turns))
        else:
            body = json.dumps(insight_for(text, labels, strategy, article))
        if chosen == "unsafe" and turns is None:
            # what a prompt injection aims for: a promise only a person may make
            insight = insight_for(text, labels, strategy, article)
            promise = "Good news: we will refund the full amount to your card today."
            body = json.dumps({**insight, "suggested_reply": promise})
        return {
            "fenced": f"Here is the analysis:\n```json\n{body}\n```\nHope this helps.",
            "prose": "The customer seems to have a question about their card. Reply politely.",
            "garbage": '{"intent": "card_arrival", "summary": "unterminated',
        }.get(chosen, body)

    async def chat(request: Request) -> JSONResponse | StreamingResponse:
        payload = await _json_body(request, "Chat")
        if isinstance(payload, JSONResponse):
            return payload
        received.append(payload)
        if not payload.get("model"):
            return JSONResponse({"error": "model is required"}, 400)
        if payload.get("model") != MODEL:
            return JSONResponse({"error": f"model '{payload.get('model')}' not found"}, 404)
        messages = payload.get("messages", [])
        turns = conversation_turns(messages)
        text = next((content for role, content in reversed(turns) if role == "user"), "")
        system = next((m["content"] for m in messages if m.get("role") == "system"), "")
        strategy = next((s for s in STRATEGIES if f"Strategy: {s}" in system), "")
        summarising = SUMMARY_PROMPT in system
        marker = _MARKER.search("\n".join(c for _, c in turns) if summarising else text)
        chosen = marker.group(1) if marker and marker.group(1) in MODES else state["mode"]
        if chosen == "error":
            return JSONResponse({"error": "llama runner process has terminated"}, 500)
        if payload.get("tools"):
            # the tool round: always look the question up, as a grounded model would
            tool_rounds[text] += 1
            query = _MARKER.sub("", text).strip()[:200]
            call = _tool_call("search_knowledge_base", {"query": query})
            return JSONResponse(
                {
                    "model": MODEL,
                    "created_at": _now(),
                    "message": {"role": "assistant", "content": "", "tool_calls": [call]},
                    "done": True,
                    "done_reason": "stop",
                    **_usage(messages, json.dumps(call["function"]["arguments"]), 0),
                }
            )
        article = None
        for tool in (m for m in messages if m.get("role") == "tool"):
            found_articles = json.loads(tool.get("content") or "[]")
            article = article or (found_articles[0]["title"] if found_articles else None)
        if chosen == "busy" and busy_refused[text] < BUSY_REFUSALS:
            busy_refused[text] += 1
            return JSONResponse({"error": SERVER_BUSY}, status_code=503)
        if summarising:
            summaries[chosen] += 1
        else:
            stats[chosen] += 1
            texts[text] += 1
        started = time.monotonic_ns()
        if chosen in ("slow", "delayed"):
            state["in_flight"] += 1
            try:
                await asyncio.sleep(state["slow_s" if chosen == "slow" else "delay_s"])
            finally:
                state["in_flight"] -= 1
        content = content_for(chosen, text, strategy, article, turns if summarising else None)
        done = {
            "model": MODEL,
            "created_at": _now(),
            "message": {"role": "assistant", "content": content},
            "done": True,
            "done_reason": "stop",
            **_usage(messages, content, started),
        }
        if payload.get("stream", True) is False:
            return JSONResponse(done)

        pause = state["stream_delay_s" if chosen in ("stream", "broken") else "token_delay_s"]
        words = re.findall(r"\S+\s*", content)

        async def chunks():
            for index, word in enumerate(words):
                if chosen == "broken" and index == len(words) * 2 // 3:
                    raise BrokenStream("the model runner went away mid-answer")
                if pause:
                    await asyncio.sleep(pause)
                yield (
                    json.dumps(
                        {
                            "model": MODEL,
                            "created_at": done["created_at"],
                            "message": {"role": "assistant", "content": word},
                            "done": False,
                        }
                    )
                    + "\n"
                )
            yield json.dumps({**done, "message": {"role": "assistant", "content": ""}}) + "\n"

        return StreamingResponse(chunks(), media_type="application/x-ndjson")

    async def tags(_: Request) -> JSONResponse:
        return JSONResponse(
            {
                "models": [
                    {
                        "name": MODEL,
                        "model": MODEL,
                        "modified_at": "2026-01-01T00:00:00Z",
                        "size": 1_000_000,
                        "digest": "0" * 64,
                        "details": DETAILS,
                    }
                ]
            }
        )

    async def version(_: Request) -> JSONResponse:
        return JSONResponse({"version": SERVER_VERSION})

    async def show(request: Request) -> JSONResponse:
        # Ollama's ShowHandler: the model by "model" (or the older "name"), 400 without one,
        # 404 for one it does not have
        payload = await _json_body(request, "Show")
        if isinstance(payload, JSONResponse):
            return payload
        name = _model_name(payload)
        if not name:
            return JSONResponse({"error": "model is required"}, status_code=400)
        if name != MODEL:
            return JSONResponse({"error": f"model '{name}' not found"}, status_code=404)
        return JSONResponse(
            {
                "modelfile": f"# Modelfile of the stand-in\nFROM {MODEL}\n",
                "parameters": 'stop                           "<|eot_id|>"',
                "template": "{{ .Prompt }}",
                "details": DETAILS,
                "model_info": {"general.architecture": "fake"},
                "tensors": [{"name": "output.weight", "type": "F16", "shape": [1, 1]}],
                "capabilities": ["completion", "tools"],
                "modified_at": "2026-01-01T00:00:00Z",
            }
        )

    async def pull(request: Request) -> JSONResponse | StreamingResponse:
        # Ollama's PullHandler: streamed status lines (an error as an {"error"} line of a 200
        # stream), or with "stream": false one {"status": "success"} or a 500 {"error"}.
        payload = await _json_body(request, "Pull")
        if isinstance(payload, JSONResponse):
            return payload
        name = _model_name(payload)
        if not name:
            return JSONResponse({"error": "invalid model name"}, status_code=400)
        pulls[name] += 1
        known = name == MODEL or f"{name}:latest" == MODEL
        if payload.get("stream", True) is False:
            if known:
                return JSONResponse({"status": "success"})
            return JSONResponse({"error": PULL_UNKNOWN}, status_code=500)
        layer = {"digest": MODEL_DIGEST, "total": MODEL_SIZE}
        lines: list[dict] = [{"status": "pulling manifest"}]
        if known:
            lines += [
                {"status": f"pulling {MODEL_DIGEST[7:19]}", **layer},
                {"status": f"pulling {MODEL_DIGEST[7:19]}", **layer, "completed": MODEL_SIZE},
                {"status": "verifying sha256 digest"},
                {"status": "writing manifest"},
                {"status": "success"},
            ]
        else:
            lines.append({"error": PULL_UNKNOWN})

        async def chunks():
            for line in lines:
                yield json.dumps(line) + "\n"

        return StreamingResponse(chunks(), media_type="application/x-ndjson")

    async def set_mode(request: Request) -> JSONResponse:
        body = await request.json()
        if body.get("mode") not in MODES:
            return JSONResponse({"error": f"mode must be one of {MODES}"}, 400)
        state["mode"] = body["mode"]
        for key in ("slow_s", "delay_s", "token_delay_s"):
            if key in body:
                state[key] = float(body[key])
        return JSONResponse(state)

    async def get_stats(_: Request) -> JSONResponse:
        return JSONResponse(
            {
                "mode": state["mode"],
                "calls": dict(stats),
                "texts": dict(texts),
                "tool_rounds": dict(tool_rounds),
                "summaries": dict(summaries),
                "pulls": dict(pulls),
                "busy_refusals": dict(busy_refused),
                "in_flight": state["in_flight"],
            }
        )

    async def get_requests(_: Request) -> JSONResponse:
        return JSONResponse({"requests": list(received)})

    return Starlette(
        routes=[
            Route("/api/chat", chat, methods=["POST"]),
            Route("/api/tags", tags),
            Route("/api/version", version),
            Route("/api/show", show, methods=["POST"]),
            Route("/api/pull", pull, methods=["POST"]),
            Route("/__fake__/mode", set_mode, methods=["POST"]),
            Route("/__fake__/stats", get_stats),
            Route("/__fake__/requests", get_requests),
        ]
    )


def start_server(
    log: Path, *, slow_s: float = 120.0, token_delay_s: float = 0.0
) -> tuple["Process", str]:
    """Run the stand-in in a process of its own on a free loopback port, answering.

    Returns:
        The process (``stop()`` it) and its base URL, ``http://127.0.0.1:<port>``.

    Raises:
        StartError: it did not answer ``/api/version`` within 30 s.
    """
    from devstack.procs import DEVSTACK_ENV, Process, free_port, http_ok

    port = free_port()
    command = ["--port", str(port), "--slow-s", str(slow_s), "--token-delay-s", str(token_delay_s)]
    process = Process(
        "fake-ollama",
        [sys.executable, "-m", "devstack.fake_ollama", *command],
        log,
        env=DEVSTACK_ENV,
    ).start()
    url = f"http://127.0.0.1:{port}"
    process.wait_until(lambda: http_ok(f"{url}/api/version"), 30, "readiness")
    return process, url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--mode", choices=MODES, default="valid")
    parser.add_argument("--slow-s", type=float, default=120.0)
    parser.add_argument(
        "--token-delay-s", type=float, default=0.0, help="pause between streamed words"
    )
    args = parser.parse_args(argv)
    uvicorn.run(
        create_app(args.mode, args.slow_s, token_delay_s=args.token_delay_s),
        host=args.host,
        port=args.port,
        log_level="warning",
    )


if __name__ == "__main__":
    main()

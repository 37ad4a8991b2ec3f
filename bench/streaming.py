"""Streaming benchmark: how soon an operator sees the suggested reply, and what it costs.

Starts its own stack (Redis, one replica of each service) with the stand-in Ollama writing one
word every ``--token-delay-ms`` ms, opens an operator WebSocket and sends ``--messages``
customer messages, ``--concurrency`` at a time. Per message it measures, from the moment the
channel API is called:

- first visible token: the first ``insight.delta`` push for the message (streaming);
- final insight: the ``conversation.updated`` push with the finished insight, which is also
  what an operator waited for before streaming: the baseline, measured in the same run;
- events per reply: ``insight.delta`` pushes for the message, against the words written.

Usage: ``uv run --frozen python -m bench.streaming [--messages 20] [--token-delay-ms 25]``
(``make bench``). Prints milliseconds and counts; exits non-zero if a message got no insight.
"""

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import websockets
from devstack.client import ws_subprotocols
from devstack.fake_ollama import MODEL, start_server
from devstack.seed import load_messages
from devstack.stack import Stack


def percentile(values: list[float], q: int) -> float:
    """The ``q``-th percentile (1..99) by the inclusive method; the value itself for one."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def measure(stack: Stack, texts: list[str], concurrency: int, token: str) -> list[dict]:
    url = stack.gateway_url.replace("http://", "ws://") + "/ws"
    results: dict[str, dict] = {}
    waiting: dict[str, asyncio.Future] = {}

    async with (
        websockets.connect(url, max_size=None, subprotocols=ws_subprotocols(token)) as ws,
        httpx.AsyncClient() as http,
    ):
        assert json.loads(await ws.recv())["type"] == "hello"

        async def listen() -> None:
            async for frame in ws:
                push = json.loads(frame)
                result = results.get(push.get("conversation_id", ""))
                if result is None:
                    continue
                now = time.monotonic()
                if push["type"] == "insight.delta":
                    result["events"] += 1
                    result.setdefault("first_token_ms", (now - result["t0"]) * 1000)
                    result["last_text"] = push["text"]
                elif push["conversation"].get("latest_insight_status") in (
                    "available",
                    "unavailable",
                ):
                    result["final_ms"] = (now - result["t0"]) * 1000
                    result["status"] = push["conversation"]["latest_insight_status"]
                    future = waiting.pop(push["conversation_id"], None)
                    if future and not future.done():
                        future.set_result(None)

        listener = asyncio.create_task(listen())
        slots = asyncio.Semaphore(concurrency)

        async def one(text: str) -> None:
            async with slots:
                t0 = time.monotonic()
                response = await http.post(
                    f"{stack.gateway_url}/api/v1/inbound/messages",
                    json={"customer_id": "bench-stream", "body": text},
                    headers={"X-API-Key": stack.channel_key},
                )
                response.raise_for_status()
                conversation_id = response.json()["conversation_id"]
                future = asyncio.get_running_loop().create_future()
                results[conversation_id] = {"t0": t0, "events": 0}
                waiting[conversation_id] = future
                await asyncio.wait_for(future, 120)

        try:
            await asyncio.gather(*(one(text) for text in texts))
        finally:
            listener.cancel()
    return list(results.values())


def report(results: list[dict], token_delay_ms: float) -> int:
    streamed = [r for r in results if "first_token_ms" in r]
    finals = [r["final_ms"] for r in results if "final_ms" in r]
    firsts = [r["first_token_ms"] for r in streamed]
    events = [r["events"] for r in results]
    words = [len(r.get("last_text", "").split()) for r in streamed]
    print(f"\nmessages: {len(results)}, insights: {len(finals)}, streamed: {len(streamed)}")
    print(f"stand-in model: one word every {token_delay_ms:g} ms")
    print(f"{'':28}{'p50':>10}{'p95':>10}{'max':>10}")
    for name, values in (
        ("first visible token (ms)", firsts),
        ("final insight (ms) baseline", finals),
    ):
        if values:
            print(
                f"{name:28}{percentile(values, 50):>10.0f}{percentile(values, 95):>10.0f}"
                f"{max(values):>10.0f}"
            )
    if firsts and finals:
        saved = statistics.median(finals) - statistics.median(firsts)
        print(f"the reply shows {saved:.0f} ms sooner at the median than the final insight")
    if events:
        print(
            f"events per reply: mean {statistics.mean(events):.1f}, max {max(events)}; "
            f"words in the last partial reply: mean {statistics.mean(words or [0]):.1f}"
        )
    return 0 if len(finals) == len(results) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--token-delay-ms", type=float, default=25.0)
    parser.add_argument("--interval-ms", type=int, default=100, help="AI_STREAM_INTERVAL_MS")
    args = parser.parse_args()

    run_dir = Path(tempfile.mkdtemp(prefix="bench-streaming-"))
    fake, ollama_url = start_server(
        run_dir / "fake-ollama.log", token_delay_s=args.token_delay_ms / 1000
    )
    stack = Stack(
        run_dir,
        ollama_url,
        MODEL,
        env={"AI_STREAM_INTERVAL_MS": str(args.interval_ms)},
    )
    try:
        print("starting the stack (PostgreSQL, Redis, 3 services and their sidecars)…")
        stack.start()
        user, password = stack.operator
        token = httpx.post(
            f"{stack.gateway_url}/api/v1/auth/login",
            json={"username": user, "password": password},
        ).json()["access_token"]
        texts = [row["text"] for row in load_messages()[: args.messages]]
        results = asyncio.run(measure(stack, texts, args.concurrency, token))
        return report(results, args.token_delay_ms)
    finally:
        stack.stop()
        fake.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())

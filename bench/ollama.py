"""Ollama benchmark: the inbox pipeline's analyses against the same model calls made directly.

In one run, on one ``ollama serve`` and one model, the same ``--messages`` customer messages
(the seed data, BANKING77) are analysed twice, ``--concurrency`` at a time both times:

- **direct**: each analysis made straight on Ollama as the ai-worker makes it: the tool round
  (``chat`` offering ``search_knowledge_base``, not streamed, the searches the model asks for
  run and given back) and the insight (``chat`` with ``format=INSIGHT_SCHEMA``, streamed). The
  prompts, tool, schema and parser are the ai-worker's own (``ai_worker.prompts``,
  ``ai_worker.knowledge``, ``ai_worker.parser``), the options its defaults (temperature,
  ``OLLAMA_NUM_CTX``, ``OLLAMA_KEEP_ALIVE``, ``OLLAMA_TIMEOUT_S``). Latency runs from the
  first call to the parsed insight; output tokens are the answers' ``eval_count``.
- **pipeline**: a stack (Redis broker and state store, one replica of each service, each with
  its daprd sidecar, ``AI_MAX_CONCURRENCY`` = ``--concurrency``) using the same server. Each
  message is posted through the customer channel API, ``--concurrency`` in flight; latency runs
  from the POST to the ``conversation.updated`` push with the finished insight on an operator
  WebSocket. Output tokens are the rise of ``inbox_llm_tokens_total{type="output"}`` on the
  ai-worker's ``/metrics``.

The stack is started first and idles through the direct run, so both runs share the machine
with the same processes. Both loops are closed (the next message goes when one finishes), so
both keep the same number of analyses in flight. Rates are analyses (or output tokens) over the
wall time from the first start to the last finish. Before each loop one analysis is made and
left out, so that neither pays for loading the model (or the stack's first connections). The
report gives analyses/s, output tokens/s, latency mean, p50 and p95 in ms per row,
pipeline/direct for both rates, and the mean time the ai-worker spent in an analysis
(``inbox_ai_analysis_duration_seconds``): the rest of the pipeline's latency is the way to and
from it (gateway, broker, messaging, the push).

Without ``--ollama-url``, the benchmark starts the real ``ollama serve`` built by
``make tools`` (CPU) with the test model ``inbox-tiny`` (an 18 MB random-weight GGUF file made
from the seed data; its answers are not useful, its JSON is valid) and
``OLLAMA_NUM_PARALLEL`` = ``--concurrency``. With ``--ollama-url URL --model TAG`` it uses that
server as it is configured, and starts none.

Usage: ``uv run --frozen python -m bench.ollama [--messages 40] [--concurrency 2]
[--ollama-url URL --model TAG]`` (``make bench-ollama``, options in ``BENCH_ARGS``). Exits 1
if an analysis was lost (no insight pushed within the timeout) or ``unavailable``, on either
side; 2 for bad arguments.

On a GPU node:

- Ollama with a GPU backend. ``make tools`` builds the CPU backend only; the CUDA (or ROCm,
  Vulkan) backend is a separate CMake build of Ollama's ggml sources (``cmake --preset
  "CUDA 12"``, then ``cmake --build --preset "CUDA 12"``, with the CUDA toolkit installed)
  that the server loads from ``lib/ollama`` beside its binary; none is built here. Upstream's
  release archives and the ``ollama/ollama`` image carry it; the chart's GPU values run that
  image.
- A real model, pulled (``ollama pull llama3.2:3b``, the chart's default) or provided as a
  GGUF file with a Modelfile (``ollama create``). The test model's random weights stop at
  arbitrary lengths, and it is too small to keep a GPU busy: its rates say nothing about sizing.
- A server started with ``OLLAMA_NUM_PARALLEL`` at least ``--concurrency``, then
  ``make bench-ollama BENCH_ARGS="--ollama-url http://<node>:11434 --model llama3.2:3b
  --messages 200 --concurrency 4"``. ``ollama ps`` should show ``100% GPU`` for the model
  while it runs; the stack itself runs where the benchmark runs.

No GPU number has been measured: every figure in the README comes from the CPU build on a
machine without a GPU.
"""

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import ollama
import websockets
from ai_worker.analysis import MAX_TOOL_CALLS
from ai_worker.knowledge import SEARCH_TOOL, TOOL_NAME, search_knowledge_base
from ai_worker.llm import LLM_FAILURES, TEMPERATURE, BrokenStreamError, describe_failure
from ai_worker.parser import INSIGHT_SCHEMA, InsightParseError, parse_insight
from ai_worker.prompts import insight_messages
from ai_worker.routing import route
from ai_worker.settings import Settings
from devstack.client import ws_subprotocols
from devstack.ollama import OllamaServer
from devstack.seed import load_messages
from devstack.stack import Stack
from prometheus_client.parser import text_string_to_metric_families

FINAL_STATUSES = ("available", "unavailable")
PUSH_GRACE_S = 60.0
"""How much longer than ``OLLAMA_TIMEOUT_S`` a pipeline message may take before it is lost:
the ai-worker gives up on the model after that timeout and still pushes ``unavailable``."""
GPU_HEADING = "On a GPU node:"


@dataclass
class Analysis:
    """One analysis: ``latency_s`` in seconds, ``status`` one of :data:`FINAL_STATUSES` or
    ``lost``; ``output_tokens`` (direct only: the answers' ``eval_count``); ``error`` why it
    is not ``available``."""

    latency_s: float
    status: str
    output_tokens: int = 0
    error: str | None = None


@dataclass
class Run:
    """One side of the benchmark: its analyses, the wall time in seconds from the first start
    to the last finish, and the output tokens generated meanwhile."""

    name: str
    analyses: list[Analysis] = field(default_factory=list)
    wall_s: float = 0.0
    output_tokens: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def available(self) -> int:
        return sum(a.status == "available" for a in self.analyses)

    @property
    def analyses_per_s(self) -> float:
        return self.available / self.wall_s if self.wall_s else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.wall_s if self.wall_s else 0.0

    def mean_latency_ms(self) -> float:
        values = [a.latency_s * 1000 for a in self.analyses if a.status == "available"]
        return statistics.mean(values) if values else float("nan")

    def latency_ms(self, q: int) -> float:
        """The ``q``-th percentile (1..99, inclusive method) of the available analyses'
        latency in ms; NaN when there are none."""
        values = [a.latency_s * 1000 for a in self.analyses if a.status == "available"]
        if not values:
            return float("nan")
        if len(values) == 1:
            return values[0]
        return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


# ------------------------------------------------------------------ direct


async def analyse_directly(
    client: ollama.AsyncClient, settings: Settings, body: str, tools: bool
) -> Analysis:
    """The ai-worker's two calls for ``body`` (see ``ai_worker.analysis.Analyser``), without
    its retries; failures are returned as ``unavailable``, never raised."""
    options = {"temperature": TEMPERATURE, "num_ctx": settings.ollama_num_ctx}
    messages = insight_messages(body, route(body))
    tokens = 0
    started = time.monotonic()
    try:
        async with asyncio.timeout(settings.ollama_timeout_s):
            if tools:
                reply = await client.chat(
                    model=settings.ollama_model,
                    messages=messages,
                    tools=[SEARCH_TOOL],
                    options=options,
                    keep_alive=settings.ollama_keep_alive,
                )
                tokens += reply.eval_count or 0
                calls = [c for c in reply.message.tool_calls or [] if c.function.name == TOOL_NAME]
                if calls:
                    messages.append({"role": "assistant", "content": "", "tool_calls": calls})
                for call in calls[:MAX_TOOL_CALLS]:
                    query = str(call.function.arguments.get("query", ""))[:200]
                    found = [
                        {"slug": a.slug, "title": a.title, "text": a.body}
                        for a in search_knowledge_base(query)
                    ]
                    messages.append(
                        {"role": "tool", "tool_name": TOOL_NAME, "content": json.dumps(found)}
                    )
            parts: list[str] = []
            done = False
            async for chunk in await client.chat(
                model=settings.ollama_model,
                messages=messages,
                format=INSIGHT_SCHEMA,
                options=options,
                keep_alive=settings.ollama_keep_alive,
                stream=True,
            ):
                parts.append(chunk.message.content or "")
                if chunk.done:
                    tokens += chunk.eval_count or 0
                    done = True
            if not done:
                raise BrokenStreamError("the model's stream ended before it was done")
        parse_insight("".join(parts))
    except LLM_FAILURES as exc:
        error = describe_failure(exc, settings)
    except InsightParseError as exc:
        error = str(exc)
    else:
        return Analysis(time.monotonic() - started, "available", tokens)
    return Analysis(time.monotonic() - started, "unavailable", tokens, error)


async def has_tools(client: ollama.AsyncClient, settings: Settings) -> bool:
    """Whether the model takes ``tools``; the ai-worker skips the tool round when Ollama
    answers 400 "does not support tools", and so does the direct run."""
    try:
        await client.chat(
            model=settings.ollama_model,
            messages=[{"role": "user", "content": "hello"}],
            tools=[SEARCH_TOOL],
            options={
                "temperature": TEMPERATURE,
                "num_ctx": settings.ollama_num_ctx,
                "num_predict": 1,
            },
            keep_alive=settings.ollama_keep_alive,
        )
    except ollama.ResponseError as exc:
        if exc.status_code == 400 and "does not support tools" in str(exc.error):
            return False
        raise
    return True


async def run_direct(settings: Settings, warm_up: str, texts: list[str], concurrency: int) -> Run:
    """Analyse ``warm_up`` (not counted), then ``texts``, ``concurrency`` at a time."""
    client = ollama.AsyncClient(
        host=str(settings.ollama_url).rstrip("/"), timeout=settings.ollama_timeout_s
    )
    run = Run("direct")
    tools = await has_tools(client, settings)
    if not tools:
        run.notes.append("the model has no tool support: no tool round (as in the ai-worker)")
    first = await analyse_directly(client, settings, warm_up, tools)
    if first.status != "available":
        run.notes.append(f"warm-up analysis unavailable: {first.error}")
    queue = list(reversed(texts))

    async def worker() -> None:
        while queue:
            run.analyses.append(await analyse_directly(client, settings, queue.pop(), tools))

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.wall_s = time.monotonic() - started
    run.output_tokens = sum(a.output_tokens for a in run.analyses)
    return run


# ------------------------------------------------------------------ pipeline


def scrape(client: httpx.Client, url: str, name: str) -> dict[tuple, float]:
    """The samples called ``name`` at ``url`` (Prometheus text), by their sorted labels."""
    response = client.get(url, timeout=10)
    response.raise_for_status()
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == name
    }


def output_tokens(samples: dict[tuple, float]) -> float:
    return sum(value for labels, value in samples.items() if ("type", "output") in labels)


async def run_pipeline(
    stack: Stack, token: str, warm_up: str, texts: list[str], concurrency: int, timeout_s: float
) -> Run:
    """Post ``warm_up`` and wait for its insight (not counted), then post ``texts``,
    ``concurrency`` in flight, each timed from its POST to its finished-insight push."""
    run = Run("pipeline")
    finished: dict[str, asyncio.Future] = {}
    loop = asyncio.get_running_loop()
    ai_worker = stack.services["ai-worker"].metrics_url
    url = stack.gateway_url.replace("http://", "ws://") + "/ws"

    def future_for(conversation_id: str) -> asyncio.Future:
        return finished.setdefault(conversation_id, loop.create_future())

    async with (
        websockets.connect(url, max_size=None, subprotocols=ws_subprotocols(token)) as ws,
        httpx.AsyncClient(timeout=30) as http,
    ):
        hello = json.loads(await ws.recv())
        if hello.get("type") != "hello":
            raise RuntimeError(f"the operator socket opened with {hello!r}, not hello")

        async def listen() -> None:
            async for frame in ws:
                push = json.loads(frame)
                status = push.get("conversation", {}).get("latest_insight_status")
                if push.get("type") == "conversation.updated" and status in FINAL_STATUSES:
                    future = future_for(push["conversation_id"])
                    if not future.done():
                        future.set_result((time.monotonic(), status))

        async def one(text: str) -> Analysis:
            started = time.monotonic()
            response = await http.post(
                f"{stack.gateway_url}/api/v1/inbound/messages",
                json={
                    "message_id": str(uuid.uuid4()),
                    "customer_id": f"bench-ollama-{uuid.uuid4().hex[:12]}",
                    "body": text,
                },
                headers={"X-API-Key": stack.channel_key},
            )
            response.raise_for_status()
            conversation_id = response.json()["conversation_id"]
            try:
                at, status = await asyncio.wait_for(future_for(conversation_id), timeout_s)
            except TimeoutError:
                return Analysis(time.monotonic() - started, "lost", error=conversation_id)
            return Analysis(at - started, status)

        listener = asyncio.create_task(listen())
        try:
            first = await one(warm_up)
            if first.status != "available":
                run.notes.append(f"warm-up analysis {first.status}")
            with httpx.Client() as sync_http:
                before = await asyncio.to_thread(
                    scrape, sync_http, ai_worker, "inbox_llm_tokens_total"
                )
                analysed_before = await asyncio.to_thread(
                    scrape, sync_http, ai_worker, "inbox_messages_analysed_total"
                )
                in_worker_before = await asyncio.to_thread(
                    scrape, sync_http, ai_worker, "inbox_ai_analysis_duration_seconds_sum"
                )
                queue = list(reversed(texts))

                async def worker() -> None:
                    while queue:
                        run.analyses.append(await one(queue.pop()))

                started = time.monotonic()
                await asyncio.gather(*(worker() for _ in range(concurrency)))
                run.wall_s = time.monotonic() - started
                after = await asyncio.to_thread(
                    scrape, sync_http, ai_worker, "inbox_llm_tokens_total"
                )
                analysed_after = await asyncio.to_thread(
                    scrape, sync_http, ai_worker, "inbox_messages_analysed_total"
                )
                in_worker_after = await asyncio.to_thread(
                    scrape, sync_http, ai_worker, "inbox_ai_analysis_duration_seconds_sum"
                )
        finally:
            listener.cancel()
    run.output_tokens = round(output_tokens(after) - output_tokens(before))
    analysed = round(sum(analysed_after.values()) - sum(analysed_before.values()))
    in_worker_s = sum(in_worker_after.values()) - sum(in_worker_before.values())
    if analysed:
        run.notes.append(
            f"mean time in the ai-worker's analysis (inbox_ai_analysis_duration_seconds, "
            f"slot wait included): {in_worker_s / analysed * 1000:.0f} ms per analysis"
        )
    if analysed != len(texts):
        # a redelivered message analysed twice adds tokens no insight here accounts for
        run.notes.append(f"the ai-worker made {analysed} analyses for {len(texts)} messages")
    for analysis in run.analyses:
        if analysis.status == "lost":
            analysis.error = f"no insight pushed for conversation {analysis.error}"
    return run


# ------------------------------------------------------------------ report


def report(direct: Run, pipeline: Run, concurrency: int) -> int:
    """Print both rows, the ratios and the failures; return the exit status."""
    print(f"\n{concurrency} analyses in flight on each side")
    header = (
        f"{'':10}{'analyses':>10}{'available':>11}{'wall s':>9}{'analyses/s':>12}"
        f"{'out tok':>9}{'out tok/s':>11}{'mean ms':>9}{'p50 ms':>9}{'p95 ms':>9}"
    )
    print(header)
    for run in (direct, pipeline):
        print(
            f"{run.name:10}{len(run.analyses):>10}{run.available:>11}{run.wall_s:>9.1f}"
            f"{run.analyses_per_s:>12.3f}{run.output_tokens:>9}{run.tokens_per_s:>11.1f}"
            f"{run.mean_latency_ms():>9.0f}{run.latency_ms(50):>9.0f}{run.latency_ms(95):>9.0f}"
        )
    analyses_ratio = pipeline.analyses_per_s / direct.analyses_per_s if direct.analyses_per_s else 0
    tokens_ratio = pipeline.tokens_per_s / direct.tokens_per_s if direct.tokens_per_s else 0
    print(
        f"pipeline/direct: analyses/s {analyses_ratio:.2f}, output tokens/s {tokens_ratio:.2f}; "
        f"latency p50 {pipeline.latency_ms(50) - direct.latency_ms(50):+.0f} ms"
    )
    per_analysis = [
        r.output_tokens / len(r.analyses) if r.analyses else 0 for r in (direct, pipeline)
    ]
    # sampling (temperature > 0, no seed) makes output lengths differ between two runs of the
    # same requests, and tokens/s with them; analyses/s compares the same work
    print(
        f"output tokens per analysis: direct {per_analysis[0]:.1f}, pipeline {per_analysis[1]:.1f}"
    )
    failed = 0
    for run in (direct, pipeline):
        for note in run.notes:
            print(f"{run.name}: {note}")
        for analysis in run.analyses:
            if analysis.status != "available":
                failed += 1
                print(f"{run.name}: {analysis.status}: {analysis.error}")
    return 1 if failed else 0


def gpu_section() -> str:
    """The module docstring's GPU paragraphs, printed after the report."""
    return GPU_HEADING + __doc__.split(GPU_HEADING, 1)[1].rstrip()


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ollama", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--messages", type=int, default=40, help="analyses per side")
    parser.add_argument("--concurrency", type=int, default=2, help="analyses in flight")
    parser.add_argument("--ollama-url", help="an Ollama server to use; none is started")
    parser.add_argument("--model", help="the model tag to ask (needed with --ollama-url)")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.concurrency < 1:
        parser.error("--messages and --concurrency must be at least 1")
    if args.ollama_url and not args.model:
        parser.error("--model is needed with --ollama-url (the model tag the server has)")
    if args.model and not args.ollama_url:
        parser.error("--model goes with --ollama-url; without it the test model is used")
    rows = load_messages()
    if args.messages + 1 > len(rows):
        parser.error(f"--messages: the seed data has {len(rows) - 1} messages besides the warm-up")
    warm_up, texts = rows[0]["text"], [row["text"] for row in rows[1 : args.messages + 1]]

    run_dir = Path(tempfile.mkdtemp(prefix="bench-ollama-"))
    server = None
    stack = None
    try:
        if args.ollama_url:
            url, model = args.ollama_url.rstrip("/"), args.model
            where = "an existing server, as it is configured"
        else:
            print("starting ollama serve with the test model…", file=sys.stderr)
            server = OllamaServer(
                run_dir / "ollama", {"OLLAMA_NUM_PARALLEL": str(args.concurrency)}
            ).start()
            url, model = server.url, server.create()
            where = f"started here (CPU build, OLLAMA_NUM_PARALLEL={args.concurrency})"
        version = httpx.get(f"{url}/api/version", timeout=10).json().get("version", "?")
        print(f"Ollama {version} at {url}, {where}; model {model}")
        print(f"{args.messages} analyses per side, {args.concurrency} at a time; {load_average()}")
        settings = Settings(
            environment="test",
            ollama_url=url,
            ollama_model=model,
            ai_max_concurrency=args.concurrency,
        )
        print(
            "starting the stack (PostgreSQL, Redis, 3 services and their sidecars)…",
            file=sys.stderr,
        )
        stack = Stack(
            run_dir / "stack",
            url,
            model,
            broker="redis",
            state_store="redis",
            replicas=1,
            env={"AI_MAX_CONCURRENCY": str(args.concurrency)},
        )
        stack.start()
        # The stack idles while the direct run goes, so both share the machine with it alike.
        direct = asyncio.run(run_direct(settings, warm_up, texts, args.concurrency))
        print(
            f"direct done: {direct.available}/{len(texts)} in {direct.wall_s:.1f} s",
            file=sys.stderr,
        )
        user, password = stack.operator
        token = httpx.post(
            f"{stack.gateway_url}/api/v1/auth/login",
            json={"username": user, "password": password},
            timeout=30,
        ).json()["access_token"]
        pipeline = asyncio.run(
            run_pipeline(
                stack,
                token,
                warm_up,
                texts,
                args.concurrency,
                settings.ollama_timeout_s + PUSH_GRACE_S,
            )
        )
        status = report(direct, pipeline, args.concurrency)
        print(f"after the runs: {load_average()}")
        print()
        print(gpu_section())
        return status
    finally:
        if stack is not None:
            stack.stop()
        if server is not None:
            server.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())

"""`make bench-throughput`: the pipeline's sustained rate against the floor of its own parts.

In one run, on one Redis and one PostgreSQL (the stack's own, idle while the floor runs):

- **floor**: the same work without Dapr, HTTP or the services, with the same libraries
  (redis-py, psycopg). ``--messages`` customer messages wait in a Redis stream; one consumer
  of a consumer group reads them, stores each in PostgreSQL in one transaction of three
  statements (open the conversation, insert the message, count it on the conversation),
  announces it on a second stream and acknowledges it: one message at a time, then in batches
  of ``--batch`` (one transaction, one pipeline of announcements and acknowledgements per
  batch). The rate is messages over the time from the first read to the last acknowledgement.
- **pipeline**: the stack (``--broker``, Redis by default, a Redis state store, ``--replicas``
  of each service, each with its daprd sidecar, the stand-in model answering at once) takes
  the same number of messages through the customer channel API, offered open loop at
  ``--offered-rate`` msg/s
  (above what it holds, so that it runs flat out), while one operator WebSocket listens
  (:mod:`bench.load`). Its rate is insights pushed over the time from the first to the last
  one; stored p50/p99 and insight p50/p99 are from the POST. Each process's CPU seconds in
  this run (per 1,000 messages) and its resident and unique memory after it follow
  (:mod:`bench.processes`), with the memory targets of services and sidecars.

- **paced** (unless ``--paced-messages 0``): ``--paced-messages`` messages at ``--paced-rate``
  msg/s (20), within what the pipeline holds: the latencies of an ordinary day.
- **AI saturated** (unless ``--ai-delay 0``): the stand-in then takes ``--ai-delay`` s per model
  call (2 s: the AI is saturated) and ``--saturated-messages`` messages are offered at
  ``--saturated-rate`` msg/s; the run ends once each was pushed to the operator as stored,
  while their insights queue. Its stored p50/p99 show whether storage is slowed by the AI.

The report gives both rates in msg/s and pipeline / floor (one at a time). The channel API's
rate limit (``CHANNEL_RATE_LIMIT``, 100/second) would stop the load before the system does,
so the run raises it for the stack and says so.

The seed messages are BANKING77 (PolyAI, Casanueva et al. 2020, CC BY 4.0).

Usage: ``PYTHONPATH=tools uv run --frozen python -m bench.throughput [--messages 1000]
[--offered-rate 100] [--batch 50] [--replicas 1] [--broker redis] [--timeout 120] [--ai-delay 2]
[--paced-rate 20] [--paced-messages 400] [--saturated-rate 50] [--saturated-messages 500]``
(``make bench-throughput``, options in ``BENCH_ARGS``). Prints a table (stdout; progress on
stderr). Exits 0 when every message got its insight (in the saturated run: was stored), 1 when
one was lost, 2 for bad arguments or a stack that did not start.
"""

import argparse
import os
import sys
import time
import uuid

import httpx
import psycopg
import redis
from devstack.procs import StartError
from devstack.stack import BROKERS, stand_in_stack

from bench.load import DATA_FILE, load_rows, run_on_stack
from bench.processes import stack_processes, usage, usage_report

FLOOR_SUBMITTED = "bench:floor:submitted"
FLOOR_STORED = "bench:floor:stored"
FLOOR_GROUP = "floor"
RAISED_LIMITS = {"CHANNEL_RATE_LIMIT": "1000000/second"}
"""The channel API's limit for a load run, far above what it sends."""
PACED_TARGETS_MS = {"stored p50": 50, "stored p99": 200, "insight p50": 150}
"""Latencies the paced run is meant to hold, in ms from the POST."""
SATURATED_TARGET_P99_MS = 500
"""Submitted -> pushed as stored p99 the saturated run is meant to hold (storage is not slowed
by the AI)."""
TARGET_RATIO = 0.25
"""Pipeline / floor the pipeline is meant to reach (issue: ten times the throughput)."""

_SCHEMA = """
CREATE TEMP TABLE floor_conversations (
    conversation_id uuid PRIMARY KEY, customer_id text NOT NULL,
    message_count integer NOT NULL DEFAULT 0, last_activity_at timestamptz);
CREATE TEMP TABLE floor_messages (
    message_id uuid PRIMARY KEY, conversation_id uuid NOT NULL, seq integer NOT NULL,
    body text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
"""
_OPEN = (
    "INSERT INTO floor_conversations (conversation_id, customer_id) VALUES (%s, %s)"
    " ON CONFLICT DO NOTHING"
)
_INSERT = (
    "INSERT INTO floor_messages (message_id, conversation_id, seq, body) VALUES (%s, %s, 1, %s)"
)
_COUNT = (
    "UPDATE floor_conversations SET message_count = message_count + 1,"
    " last_activity_at = now() WHERE conversation_id = %s"
)


def floor_rate(client: redis.Redis, database_url: str, bodies: list[str], batch: int) -> float:
    """Messages per second one consumer stores and announces, ``batch`` per read (see the
    module docstring). The streams and tables are made fresh for each call.

    Raises:
        redis.RedisError, psycopg.Error: Redis or PostgreSQL failed.
    """
    client.delete(FLOOR_SUBMITTED, FLOOR_STORED)
    client.xgroup_create(FLOOR_SUBMITTED, FLOOR_GROUP, id="0", mkstream=True)
    pipe = client.pipeline(transaction=False)
    for body in bodies:
        pipe.xadd(
            FLOOR_SUBMITTED,
            {"message_id": str(uuid.uuid4()), "conversation_id": str(uuid.uuid4()), "body": body},
        )
    pipe.execute()
    with psycopg.connect(database_url) as conn:
        conn.execute("DROP TABLE IF EXISTS floor_conversations, floor_messages")
        conn.execute(_SCHEMA)
        conn.commit()
        done = 0
        started = time.perf_counter()
        while done < len(bodies):
            reply = client.xreadgroup(
                FLOOR_GROUP, "c1", {FLOOR_SUBMITTED: ">"}, count=batch, block=1000
            )
            entries = reply[0][1] if reply else []
            rows = [
                (f[b"message_id"].decode(), f[b"conversation_id"].decode(), f[b"body"].decode())
                for _, f in entries
            ]
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(_OPEN, [(cid, "cust-floor") for _, cid, _ in rows])
                cur.executemany(_INSERT, rows)
                cur.executemany(_COUNT, [(cid,) for _, cid, _ in rows])
            pipe = client.pipeline(transaction=False)
            for message_id, conversation_id, _ in rows:
                pipe.xadd(
                    FLOOR_STORED, {"message_id": message_id, "conversation_id": conversation_id}
                )
            if entries:
                pipe.xack(FLOOR_SUBMITTED, FLOOR_GROUP, *[entry_id for entry_id, _ in entries])
            pipe.execute()
            done += len(entries)
        elapsed = time.perf_counter() - started
    client.delete(FLOOR_SUBMITTED, FLOOR_STORED)
    return len(bodies) / elapsed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.throughput", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--messages", type=int, default=1000, help="messages per run")
    parser.add_argument(
        "--offered-rate", type=float, default=100.0, help="msg/s offered to the pipeline"
    )
    parser.add_argument("--batch", type=int, default=50, help="messages per floor batch")
    parser.add_argument("--replicas", type=int, default=1, help="replicas of each service")
    parser.add_argument(
        "--broker",
        choices=[b for b in BROKERS if b != "in-memory"],
        default="redis",
        help="the pipeline's pub/sub broker (the state store and the floor stay on Redis)",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="s to wait for insights after the last send"
    )
    parser.add_argument(
        "--paced-rate", type=float, default=20.0, help="msg/s offered in the paced run"
    )
    parser.add_argument(
        "--paced-messages", type=int, default=400, help="messages in the paced run; 0 skips it"
    )
    parser.add_argument(
        "--ai-delay",
        type=float,
        default=2.0,
        help="s the stand-in takes per model call in the saturated run; 0 skips that run",
    )
    parser.add_argument(
        "--saturated-rate", type=float, default=50.0, help="msg/s offered in the saturated run"
    )
    parser.add_argument(
        "--saturated-messages", type=int, default=500, help="messages in the saturated run"
    )
    args = parser.parse_args(argv)
    if args.messages < 1 or args.offered_rate <= 0 or args.batch < 1 or args.replicas < 1:
        parser.error("--messages, --offered-rate, --batch and --replicas must be positive")
    if args.ai_delay < 0 or args.saturated_rate <= 0 or args.saturated_messages < 1:
        parser.error("--ai-delay must be 0 or more, --saturated-* positive")
    if args.paced_rate <= 0 or args.paced_messages < 0:
        parser.error("--paced-rate must be positive, --paced-messages 0 or more")
    return args


def saturated_run(stack, rows: list[dict], args: argparse.Namespace) -> dict:  # noqa: ANN001
    """Messages offered while the AI is saturated: the stand-in takes ``--ai-delay`` s per
    model call, so insights queue; the run ends when every message was pushed as stored.

    Raises:
        httpx.HTTPError: the stand-in did not take the new mode.
    """
    httpx.post(
        f"{stack.ollama_url}/__fake__/mode", json={"mode": "delayed", "delay_s": args.ai_delay}
    ).raise_for_status()
    return run_on_stack(
        stack, rows, args.saturated_rate, args.saturated_messages, args.timeout, until="stored"
    )


def report(floor_one: float, floor_batch: float, batch: int, summary: dict, args) -> str:
    """The table, rates in msg/s and latencies in ms."""
    latency = summary["latency_ms"]
    pipeline = summary["insight_throughput_per_s"]

    def cut(kind: str, p: str) -> str:
        values = latency.get(kind)
        return f"{values[p]:.0f}" if values else "-"

    lines = [
        f"{'':<34}{'msg/s':>10}",
        f"{'floor, one at a time':<34}{floor_one:>10.1f}",
        f"{f'floor, batches of {batch}':<34}{floor_batch:>10.1f}",
        f"{'pipeline (insights pushed)':<34}{pipeline:>10.1f}",
        f"{'pipeline / floor (one at a time)':<34}{pipeline / floor_one:>10.3f}"
        f"   target >= {TARGET_RATIO}",
        "",
        f"pipeline: {args.messages} messages offered at {args.offered_rate:g} msg/s,"
        f" {args.replicas} replica(s) of each service, {args.broker} broker, Redis state store,"
        f" stand-in model at 0 ms, CHANNEL_RATE_LIMIT raised;"
        f" accepted {summary['accept_rate_per_s']:.1f} msg/s",
        f"  stored p50 {cut('stored', 'p50')} ms, p99 {cut('stored', 'p99')} ms;"
        f" insight p50 {cut('insight', 'p50')} ms, p99 {cut('insight', 'p99')} ms;"
        f" lost {summary['lost']}, errors {sum(summary['errors'].values())}",
        f"machine: {os.cpu_count()} CPUs, load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg()),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = load_rows(DATA_FILE)
    bodies = [rows[i % len(rows)]["text"] for i in range(args.messages)]
    try:
        with stand_in_stack(
            "bench-throughput-", env=RAISED_LIMITS, replicas=args.replicas, broker=args.broker
        ) as stack:
            client = redis.Redis(
                host="127.0.0.1", port=stack.redis.port, password=stack.redis.password
            )
            print("floor: one at a time…", file=sys.stderr)
            floor_one = floor_rate(client, stack.postgres.url, bodies, 1)
            print(f"floor: batches of {args.batch}…", file=sys.stderr)
            floor_batch = floor_rate(client, stack.postgres.url, bodies, args.batch)
            client.close()
            print("pipeline…", file=sys.stderr)
            processes = stack_processes(stack)
            before = usage(processes)
            summary = run_on_stack(stack, rows, args.offered_rate, args.messages, args.timeout)
            after = usage(processes)
            paced = None
            if args.paced_messages:
                print(f"pipeline at {args.paced_rate:g} msg/s…", file=sys.stderr)
                paced = run_on_stack(
                    stack, rows, args.paced_rate, args.paced_messages, args.timeout
                )
            saturated = None
            if args.ai_delay:
                print(f"AI saturated ({args.ai_delay:g} s a call)…", file=sys.stderr)
                saturated = saturated_run(stack, rows, args)
    except StartError as exc:
        print(f"throughput bench: {exc}", file=sys.stderr)
        return 2
    print(report(floor_one, floor_batch, args.batch, summary, args))
    print("\npipeline run: CPU per process, memory after it")
    print(usage_report(before, after, args.messages))
    if paced is not None:
        print(paced_report(paced, args))
    if saturated is not None:
        print(saturated_report(saturated, args))
    complete = summary["lost"] == 0 and summary["insights"] == args.messages
    if paced is not None:
        complete = complete and paced["lost"] == 0 and paced["insights"] == args.paced_messages
    if saturated is not None:
        complete = complete and saturated["lost"] == 0
        complete = complete and saturated["stored"] == args.saturated_messages
    return 0 if complete else 1


def paced_report(summary: dict, args: argparse.Namespace) -> str:
    """The paced run's lines: latencies in ms against their targets."""
    latency = summary["latency_ms"]

    def cut(kind: str, p: str) -> str:
        values = latency.get(kind)
        return f"{values[p]:.0f}" if values else "-"

    return "\n".join(
        [
            "",
            f"paced: {args.paced_messages} messages at {args.paced_rate:g} msg/s, stand-in model"
            f" at 0 ms; insights {summary['insight_throughput_per_s']:.1f} msg/s",
            f"  stored p50 {cut('stored', 'p50')} ms, p99 {cut('stored', 'p99')} ms"
            f" (targets <= {PACED_TARGETS_MS['stored p50']} and"
            f" <= {PACED_TARGETS_MS['stored p99']}); insight p50 {cut('insight', 'p50')} ms,"
            f" p99 {cut('insight', 'p99')} ms (target p50 <= {PACED_TARGETS_MS['insight p50']});"
            f" lost {summary['lost']}",
        ]
    )


def saturated_report(summary: dict, args: argparse.Namespace) -> str:
    """The saturated run's lines: stored latencies in ms against their target."""
    stored = summary["latency_ms"].get("stored") or {}
    p50, p99 = stored.get("p50"), stored.get("p99")
    cut = "-" if p99 is None else f"{p50:.0f} ms, p99 {p99:.0f} ms"
    return "\n".join(
        [
            "",
            f"AI saturated: {args.saturated_messages} messages offered at"
            f" {args.saturated_rate:g} msg/s, the stand-in taking {args.ai_delay:g} s per model"
            f" call; accepted {summary['accept_rate_per_s']:.1f} msg/s",
            f"  stored p50 {cut} (target p99 <= {SATURATED_TARGET_P99_MS} ms);"
            f" stored {summary['stored']}, insights done meanwhile {summary['insights']},"
            f" not stored {summary['lost']}, errors {sum(summary['errors'].values())}",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())

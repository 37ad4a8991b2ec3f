"""`make bench-throughput`: the pipeline's sustained rate against the floor of its own parts.

In one run, on one Redis and one PostgreSQL (the stack's own, idle while the floor runs):

- **floor**: the same work without Dapr, HTTP or the services, with the same libraries
  (redis-py, psycopg). ``--messages`` customer messages wait in a Redis stream; one consumer
  of a consumer group reads them, stores each in PostgreSQL in one transaction of three
  statements (open the conversation, insert the message, count it on the conversation),
  announces it on a second stream and acknowledges it: one message at a time, then in batches
  of ``--batch`` (one transaction, one pipeline of announcements and acknowledgements per
  batch). The rate is messages over the time from the first read to the last acknowledgement.
- **pipeline**: the stack (Redis broker and state store, ``--replicas`` of each service, each
  with its daprd sidecar, the stand-in model answering at once) takes the same number of
  messages through the customer channel API, offered open loop at ``--offered-rate`` msg/s
  (above what it holds, so that it runs flat out), while one operator WebSocket listens
  (:mod:`bench.load`). Its rate is insights pushed over the time from the first to the last
  one; stored p50/p99 and insight p50/p99 are from the POST.

The report gives both rates in msg/s and pipeline / floor (one at a time). The channel API's
rate limit (``CHANNEL_RATE_LIMIT``, 100/second) would stop the load before the system does,
so the run raises it for the stack and says so.

The seed messages are BANKING77 (PolyAI, Casanueva et al. 2020, CC BY 4.0).

Usage: ``PYTHONPATH=tools uv run --frozen python -m bench.throughput [--messages 1000]
[--offered-rate 100] [--batch 50] [--replicas 1] [--timeout 120]`` (``make bench-throughput``,
options in ``BENCH_ARGS``). Prints a table (stdout; progress on stderr). Exits 0 when every
message got its insight, 1 when one was lost, 2 for bad arguments or a stack that did not start.
"""

import argparse
import asyncio
import os
import sys
import time
import uuid

import psycopg
import redis
from devstack.procs import StartError
from devstack.stack import stand_in_stack

from bench.load import DATA_FILE, LoadConfig, LoadRun, load_rows

FLOOR_SUBMITTED = "bench:floor:submitted"
FLOOR_STORED = "bench:floor:stored"
FLOOR_GROUP = "floor"
RAISED_LIMITS = {"CHANNEL_RATE_LIMIT": "1000000/second"}
"""The channel API's limit for a load run, far above what it sends."""
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
        "--timeout", type=float, default=120.0, help="s to wait for insights after the last send"
    )
    args = parser.parse_args(argv)
    if args.messages < 1 or args.offered_rate <= 0 or args.batch < 1 or args.replicas < 1:
        parser.error("--messages, --offered-rate, --batch and --replicas must be positive")
    return args


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
        f" {args.replicas} replica(s) of each service, Redis broker and state store,"
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
            "bench-throughput-", env=RAISED_LIMITS, replicas=args.replicas
        ) as stack:
            client = redis.Redis(
                host="127.0.0.1", port=stack.redis.port, password=stack.redis.password
            )
            print("floor: one at a time…", file=sys.stderr)
            floor_one = floor_rate(client, stack.postgres.url, bodies, 1)
            print(f"floor: batches of {args.batch}…", file=sys.stderr)
            floor_batch = floor_rate(client, stack.postgres.url, bodies, args.batch)
            client.close()
            config = LoadConfig(
                url=stack.gateway_url,
                api_key=stack.channel_key,
                operator=stack.operator,
                rate=args.offered_rate,
                count=args.messages,
                sockets=1,
                timeout_s=args.timeout,
                data=DATA_FILE,
            )
            print("pipeline…", file=sys.stderr)
            summary = asyncio.run(LoadRun(config, rows).run())
    except StartError as exc:
        print(f"throughput bench: {exc}", file=sys.stderr)
        return 2
    print(report(floor_one, floor_batch, args.batch, summary, args))
    return 0 if summary["lost"] == 0 and summary["insights"] == args.messages else 1


if __name__ == "__main__":
    sys.exit(main())

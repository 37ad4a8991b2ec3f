"""`make bench-inbox`: how long one page of a large inbox takes, through the gateway.

On its own stack (Redis broker and state store, one instance of each service, the stand-in
model), ``--conversations`` conversations of one customer message each are written straight
into PostgreSQL (through the pipeline that would take minutes), and one more through the
channel API, so that the inbox list read model is rebuilt with all of them counted. Then
``--requests`` requests of ``--limit`` conversations, one after the other, are timed at each
offset: 0 (the baseline: the list read model in the state store), across the end of the list
(``INBOX_MAX_ITEMS - 10``), and deep in PostgreSQL (half-way, and the last page), both read
through messaging (``inbox.page.requested``). Every page's conversations are checked against
PostgreSQL's own order once. One operator sends every request, so the operator API's rate
limit (``OPERATOR_RATE_LIMIT``, 20/second) is raised for the run.

Usage: ``PYTHONPATH=tools uv run --frozen python -m bench.inbox [--conversations 100000]
[--requests 30] [--limit 50]`` (``make bench-inbox``, options in ``BENCH_ARGS``). Prints a
table in ms (stdout; progress on stderr). Exits 0 when every page was right, 1 when one was
not, 2 for bad arguments or a stack that did not start.
"""

import argparse
import sys

from devstack.client import InboxClient
from devstack.large_inbox import get_page, inbox_order, page_latencies, rebuilt_with, seed
from devstack.procs import StartError
from devstack.stack import stand_in_stack
from inbox_common.events import INBOX_MAX_ITEMS

RAISED_LIMITS = {"OPERATOR_RATE_LIMIT": "1000000/second"}
"""The operator API's limit (20/second) for the run: one operator sends every request."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.inbox", description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30, help="per offset")
    parser.add_argument("--limit", type=int, default=50, help="conversations per page, 1-200")
    args = parser.parse_args(argv)
    if args.conversations < INBOX_MAX_ITEMS + 100 or args.requests < 1:
        print(f"--conversations must be at least {INBOX_MAX_ITEMS + 100}", file=sys.stderr)
        return 2
    if not 1 <= args.limit <= 200:
        print("--limit must be 1 to 200", file=sys.stderr)
        return 2
    try:
        with stand_in_stack("bench-inbox-", env=RAISED_LIMITS) as stack:
            print(f"writing {args.conversations} conversations…", file=sys.stderr)
            seed(stack.postgres.url, args.conversations)
            client = InboxClient(stack)
            total = args.conversations + 1
            rebuilt_with(client, total)
            offsets = [0, INBOX_MAX_ITEMS - 10, total // 2, total - args.limit]
            wrong = [
                offset
                for offset in offsets
                if [i["conversation_id"] for i in get_page(client, offset, args.limit)["items"]]
                != inbox_order(stack.postgres.url, offset, args.limit)
            ]
            print("timing pages…", file=sys.stderr)
            timings = page_latencies(client, offsets, args.limit, args.requests)
    except StartError as exc:
        print(f"the stack did not start: {exc}", file=sys.stderr)
        return 2
    print(f"{'offset':>10}  {'read from':<26}{'p50 ms':>8}{'p95 ms':>8}{'max ms':>8}")
    for offset, t in timings.items():
        source = "list read model (baseline)" if offset == 0 else "messaging (PostgreSQL)"
        if offset and offset + args.limit <= INBOX_MAX_ITEMS:
            source = "list read model"
        print(f"{offset:>10}  {source:<26}{t['p50']:>8.1f}{t['p95']:>8.1f}{t['max']:>8.1f}")
    print(
        f"\n{total} conversations, {args.limit} per page, {args.requests} requests per offset"
        f" one after the other; Redis state store and broker, one instance of each service,"
        f" OPERATOR_RATE_LIMIT raised"
    )
    if wrong:
        print(f"WRONG: the pages at offsets {wrong} differ from PostgreSQL's order")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

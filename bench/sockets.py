"""`make bench-sockets`: many operators at once, one gateway.

On its own stack (Redis broker and state store, one instance of each service, the stand-in
model at 0 ms), for each count in ``--sockets`` the load of :mod:`bench.load` runs with that
many operator WebSockets open: ``--messages`` customer messages at ``--rate`` msg/s, each
socket watching for every message's final insight push. The first count, 1, is the baseline:
the same traffic with a single operator. The sockets offer the batched subprotocol
(``inbox.v2``), as the page does. The gateway's and every sidecar's CPU time and resident
memory (resident, and unique to the process) are read from ``/proc`` (psutil) around each
run.

The load generator holds its sockets in one Python process on the same machine, so at a few
thousand sockets it competes with the stack for the cores: its own send lag is printed, and
when it grows to hundreds of ms the figures above that count say more about the machine than
about the gateway.

Usage: ``PYTHONPATH=tools uv run --frozen python -m bench.sockets [--sockets 1,1000,2000]
[--rate 20] [--messages 400] [--timeout 60]`` (``make bench-sockets``, options in
``BENCH_ARGS``). Prints a table (stdout; progress on stderr). Exits 0 when every run held its
rate with every push delivered, 1 when one did not, 2 for bad arguments or a stack that did
not start.
"""

import argparse
import sys

from devstack.procs import StartError
from devstack.stack import stand_in_stack

from bench.load import DATA_FILE, load_rows, run_on_stack
from bench.processes import stack_processes, usage

RAISED_LIMITS = {
    "CHANNEL_RATE_LIMIT": "1000000/second",
    "OPERATOR_RATE_LIMIT": "1000000/second",
    "LOGIN_RATE_LIMIT": "100000/minute",
}
"""Limits a run with one operator signed in on thousands of sockets would hit first."""
TARGET_P99_MS = 250
"""Submitted -> insight pushed to every socket, p99, that a run is meant to hold."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sockets", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sockets", default="1,1000,2000", help="socket counts, comma-separated")
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second")
    parser.add_argument("--messages", type=int, default=400, help="messages per run")
    parser.add_argument("--timeout", type=float, default=60.0, help="s to wait after the last send")
    args = parser.parse_args(argv)
    try:
        args.counts = [int(n) for n in args.sockets.split(",")]
    except ValueError:
        parser.error("--sockets: comma-separated whole numbers")
    if not args.counts or min(args.counts) < 1 or args.rate <= 0 or args.messages < 1:
        parser.error("--sockets, --rate and --messages must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = load_rows(DATA_FILE)
    results = []
    try:
        with stand_in_stack("bench-sockets-", env=RAISED_LIMITS) as stack:
            processes = stack_processes(stack)
            for count in args.counts:
                print(f"{count} sockets…", file=sys.stderr)
                before = usage(processes)
                summary = run_on_stack(
                    stack, rows, args.rate, args.messages, args.timeout, sockets=count
                )
                after = usage(processes)
                results.append((count, summary, before, after))
    except StartError as exc:
        print(f"sockets bench: {exc}", file=sys.stderr)
        return 2
    print(report(results, args))
    ok = all(
        s["rate_held"] and s["lost"] == 0 and s["missed_pushes"] == 0 for _, s, _, _ in results
    )
    return 0 if ok else 1


def report(results: list, args: argparse.Namespace) -> str:
    """One row per socket count: latencies in ms, CPU in s, memory in MB."""
    lines = [
        f"{'sockets':>8} {'held':>5} {'202 p50':>8} {'insight p50':>12} {'p99':>7}"
        f" {'client lag p50':>15} {'gateway CPU s':>14} {'gateway MB':>11} {'sidecars MB':>12}"
        "   (sidecars' RSS)"
    ]
    for count, summary, before, after in results:
        latency = summary["latency_ms"]
        accepted = (latency.get("accepted") or {}).get("p50", float("nan"))
        insight = latency.get("insight") or {}
        lag = (summary.get("send_lag_ms") or {}).get("p50", float("nan"))
        cpu = after["gateway"].cpu_s - before["gateway"].cpu_s
        sidecars = [after[f"{name}-daprd"] for name in ("gateway", "messaging", "ai-worker")]
        lines.append(
            f"{count:>8} {'yes' if summary['rate_held'] else 'NO':>5} {accepted:>8.0f}"
            f" {insight.get('p50', float('nan')):>12.0f} {insight.get('p99', float('nan')):>7.0f}"
            f" {lag:>15.1f} {cpu:>14.1f} {after['gateway'].rss_mb:>11.0f}"
            f" {'/'.join(f'{s.uss_mb:.0f}' for s in sidecars):>12}"
            f"   ({'/'.join(f'{s.rss_mb:.0f}' for s in sidecars)})"
        )
    lines += [
        "",
        f"{args.messages} messages at {args.rate:g} msg/s per run, one gateway, Redis, stand-in"
        f" model at 0 ms; latencies from the POST in ms (target insight p99 <= {TARGET_P99_MS}"
        " on every socket); gateway MB: its RSS after the run; sidecars MB: the memory unique to"
        " each of the gateway's, messaging's and the ai-worker's daprd (USS), then their RSS, which"
        " also counts the daprd binary's pages that every sidecar on the machine shares",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

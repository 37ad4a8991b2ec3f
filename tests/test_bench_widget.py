"""The widget benchmark (``python -m bench.widget``): a tiny run on its own stack, two gateway
replicas, answers every message and prints every row of its table; and how it tells a
message's answer from the previous one's, from a handoff and from a delta of another message."""

import asyncio
import importlib.util
import os
import re
import subprocess
import sys

import pytest
from devstack.stack import REPO

RUN_TIMEOUT_S = 55
LATENCY_ROW = r"^{name} +(\d+) +(\d+) +(\d+) +(\d+) +(\d+)$"


def load_bench():
    """``bench/widget.py`` as a module (the repository root is not on the tests' path)."""
    spec = importlib.util.spec_from_file_location("bench_widget", REPO / "bench" / "widget.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.integration
def test_a_tiny_run_answers_every_message_and_prints_the_table() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.widget",
            "--customers",
            "4",
            "--messages",
            "1",
            "--timeout",
            "30",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO / "tools")},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    medians = {}
    for key, name in (
        ("accepted", r"accepted \(202\)"),
        ("first", r"first sentence \(insight\.delta or answer\)"),
        ("answer", r"full answer \(conversation push\)"),
    ):
        row = re.search(LATENCY_ROW.format(name=name), out, re.MULTILINE)
        assert row, (name, out)
        p50, p95, p99, worst, n = map(int, row.groups())
        assert p50 <= p95 <= p99 <= worst and n == 4, (name, out)
        medians[key] = p50
    assert medians["accepted"] <= medians["answer"] and medians["first"] <= medians["answer"], out
    assert "answered 4, handed off 0, lost 0, failed 0" in out, out
    assert "customers per gateway: gateway 2, gateway-2 2" in out, out
    rate = re.search(r"^throughput \(answered / wall time\) +([\d.]+) msg/s", out, re.MULTILINE)
    assert rate and float(rate[1]) > 0, out
    assert re.search(r"^HTTP 429 seen +0$", out, re.MULTILINE), out
    assert re.search(r"^  measured here +[\d.]+ ", out, re.MULTILINE), out
    reference = re.search(r"^  reference \(their reported figure\) .*not measured here$", out, re.M)
    assert reference and "50 msg/s average, 100+ at peak" in reference[0], out
    assert "raised for this run" in out and "CUSTOMER_RATE_LIMIT=" in out, out
    assert re.search(r"^machine: \d+ cores; load average .* before .* after", out, re.M), out


def test_a_message_is_answered_only_by_an_assistant_message_after_it() -> None:
    bench = load_bench()

    async def scenario() -> None:
        message = bench.Message(0, "m2", "And how long does it take?", t0=1.0)
        earlier = [
            {"message_id": "m1", "author_role": "customer"},
            {"message_id": "a1", "author_role": "assistant"},
        ]
        message.see({"type": "insight.delta", "message_id": "m1", "text": "Hi"}, 1.1)
        message.see({"type": "conversation", "assistant": "answering", "messages": earlier}, 1.2)
        assert message.first_token_at is None and not message.done.is_set()
        mine = [*earlier, {"message_id": "m2", "author_role": "customer"}]
        message.see({"type": "conversation", "assistant": "answering", "messages": mine}, 1.3)
        assert not message.done.is_set(), "the previous answer counted for this message"
        message.see({"type": "insight.delta", "message_id": "m2", "text": "Hello"}, 1.4)
        message.see({"type": "insight.delta", "message_id": "m2", "text": "Hello, it"}, 1.5)
        answered = [*mine, {"message_id": "a2", "author_role": "assistant"}]
        message.see({"type": "conversation", "assistant": "answering", "messages": answered}, 1.6)
        assert message.outcome == "answered" and message.done.is_set()
        assert message.ms(message.first_token_at) == pytest.approx(400)
        assert message.ms(message.answered_at) == pytest.approx(600)
        assert message.deltas == 2

        handed = bench.Message(0, "m1", "Someone took money from my card", t0=1.0)
        view = {"type": "conversation", "assistant": "handed_off", "messages": earlier[:1]}
        handed.see(view, 2.0)
        assert handed.outcome == "handed off"

    asyncio.run(scenario())


def test_a_lost_or_failed_message_fails_the_run_and_a_handoff_does_not() -> None:
    bench = load_bench()
    clean = {"lost": 0, "failed": 0, "sent": 4}
    assert bench.succeeded(clean)
    assert bench.succeeded({**clean, "handed_off": 1})
    assert not bench.succeeded({**clean, "lost": 1})
    assert not bench.succeeded({**clean, "failed": 1})

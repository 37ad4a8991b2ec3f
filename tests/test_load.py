"""The load generator (`make load`, ``python -m bench.load``) against the whole stack."""

import json
import os
import subprocess
import sys

import pytest
from devstack.client import E2E_TIMEOUT_S
from devstack.stack import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.one_broker]


def run_load(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("INBOX_")}
    return subprocess.run(
        [sys.executable, "-m", "bench.load", *args],
        cwd=REPO,
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=E2E_TIMEOUT_S + 120,
    )


def test_short_run_loses_nothing_and_reports_latency(stack) -> None:
    user, password = stack.operator
    done = run_load(
        *("--count", "30", "--rate", "10", "--sockets", "2"),
        *("--timeout", f"{E2E_TIMEOUT_S:g}", "--json"),
        env={
            "INBOX_URL": stack.gateway_url,
            "INBOX_API_KEY": stack.channel_key,
            "INBOX_OPERATOR": f"{user}:{password}",
        },
    )
    print(done.stderr)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["planned"] == summary["sent"] == summary["accepted"] == 30
    assert summary["errors"] == {}
    assert summary["lost"] == 0, summary["lost_reasons"]
    assert summary["missed_pushes"] == 0
    assert summary["stored"] == summary["insights"] == 30
    assert summary["insight_status"] == {"available": 30}
    assert summary["target_rate_per_s"] == 10
    assert summary["send_rate_per_s"] > 0 and summary["insight_throughput_per_s"] > 0
    for stage in ("accepted", "stored", "insight"):
        p = summary["latency_ms"][stage]
        assert 0 < p["p50"] <= p["p95"] <= p["p99"] <= p["max"], (stage, p)
    latency = summary["latency_ms"]
    assert latency["accepted"]["p50"] <= latency["stored"]["p50"] <= latency["insight"]["p50"]

    progress = [line for line in done.stderr.splitlines() if " s | sent " in line]
    assert progress, done.stderr
    assert all(f" {word} " in progress[-1] for word in ("accepted", "stored", "insights", "flight"))
    assert "| sent 30 | accepted 30 | errors 0 | stored 30 | insights 30 |" in progress[-1]
    # with --json the human report goes to stderr, after the progress lines
    report = done.stderr[done.stderr.index("Load test of") :]
    for text in ("msg/s", "held", "p50", "p95", "p99", "submitted -> insight", "lost       0"):
        assert text in report, report


def test_without_url_or_key_it_says_to_start_make_run() -> None:
    done = run_load("--count", "1")
    assert done.returncode == 2
    assert "make run" in done.stderr and "--url" in done.stderr and "--api-key" in done.stderr

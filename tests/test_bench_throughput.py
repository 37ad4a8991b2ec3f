"""The throughput benchmark (``python -m bench.throughput``): a tiny run on its own stack
gets every insight and prints the floor, the pipeline and their ratio and each process's CPU
and memory, then stores every message of a run with the AI saturated."""

import os
import re
import subprocess
import sys

import pytest
from devstack.stack import REPO

RUN_TIMEOUT_S = 120


@pytest.mark.integration
def test_a_tiny_run_gets_every_insight_and_prints_the_ratio() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.throughput",
            "--messages",
            "30",
            "--offered-rate",
            "30",
            "--batch",
            "10",
            "--timeout",
            "60",
            "--ai-delay",
            "1",
            "--saturated-messages",
            "20",
            "--saturated-rate",
            "20",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO / "tools")},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    rates = {
        name: float(rate)
        for name, rate in re.findall(
            r"^(floor, one at a time|floor, batches of 10|"
            r"pipeline \(insights pushed\)) +([\d.]+)$",
            done.stdout,
            re.MULTILINE,
        )
    }
    assert len(rates) == 3 and all(rate > 0 for rate in rates.values()), done.stdout
    ratio = float(
        re.search(
            r"^pipeline / floor \(one at a time\) +([\d.]+)", done.stdout, re.MULTILINE
        ).group(1)
    )
    assert ratio == pytest.approx(
        rates["pipeline (insights pushed)"] / rates["floor, one at a time"], abs=0.001
    )
    assert "lost 0, errors 0" in done.stdout
    assert re.search(r"stored p50 \d+ ms, p99 \d+ ms .*; stored 20, ", done.stdout), done.stdout
    assert "not stored 0, errors 0" in done.stdout
    usage = {
        name: (float(seconds), rss)
        for name, seconds, rss in re.findall(
            r"^([a-z-]+) +([\d.]+) +[\d.]+ +(\d+|-) +(?:\d+|-)", done.stdout, re.MULTILINE
        )
    }
    for name in ("postgres", "redis"):
        assert usage.get(name, (0, ""))[0] > 0, (name, done.stdout)
    for name in ("gateway", "messaging", "ai-worker"):
        cpu, rss = usage.get(name, (0, "-"))
        assert cpu > 0 and rss.isdigit() and int(rss) > 0, (name, done.stdout)
        assert usage.get(f"{name}-daprd", (0, "-"))[1].isdigit(), (name, done.stdout)

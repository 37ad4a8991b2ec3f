"""The sockets benchmark (``python -m bench.sockets``): a tiny run on its own stack holds its
rate on one socket and on twenty, and prints the gateway's CPU and memory for each."""

import os
import re
import subprocess
import sys

import pytest
from devstack.stack import REPO

RUN_TIMEOUT_S = 180


@pytest.mark.integration
def test_a_tiny_run_holds_its_rate_and_prints_the_table() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.sockets", "--sockets", "1,20", "--messages", "20"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO / "tools")},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    rows = re.findall(r"^ +(\d+) +yes +\d+ +\d+ +\d+ +[\d.]+ +([\d.]+) +(\d+) ", done.stdout, re.M)
    assert [count for count, _, _ in rows] == ["1", "20"], done.stdout
    assert all(float(cpu) > 0 and int(mb) > 0 for _, cpu, mb in rows), done.stdout

"""The Ollama benchmark (``make bench-ollama``, ``python -m bench.ollama``): a short run on the
real ``ollama serve`` with the test model prints both rows and the ratios and exits 0; its
report fails the run when an analysis was lost or unavailable."""

import importlib.util
import math
import os
import re
import subprocess
import sys

import pytest
from devstack.stack import REPO

RUN_TIMEOUT_S = 180
ROW = re.compile(
    r"^(direct|pipeline) +(\d+) +(\d+) +([\d.]+) +([\d.]+) +(\d+) +([\d.]+)"
    r" +(\d+) +(\d+) +(\d+)$",
    re.MULTILINE,
)
RATIO = re.compile(
    r"^pipeline/direct: analyses/s ([\d.]+), output tokens/s ([\d.]+);", re.MULTILINE
)


def load_bench():
    """``bench/ollama.py`` as a module (the repository root is not on the tests' path)."""
    spec = importlib.util.spec_from_file_location("bench_ollama", REPO / "bench" / "ollama.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.integration
def test_a_short_run_prints_both_rows_and_the_ratios() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.ollama", "--messages", "2", "--concurrency", "2"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO / "tools")},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {match[0]: match[1:] for match in ROW.findall(done.stdout)}
    assert set(rows) == {"direct", "pipeline"}, done.stdout
    for name, (analyses, available, wall_s, per_s, tokens, tokens_per_s, *_ms) in rows.items():
        assert analyses == available == "2", (name, done.stdout)
        assert float(wall_s) > 0 and float(per_s) > 0, (name, done.stdout)
        assert int(tokens) > 0 and float(tokens_per_s) > 0, (name, done.stdout)
        mean_ms, p50_ms, p95_ms = map(int, _ms)
        assert 0 < p50_ms <= p95_ms and mean_ms > 0, (name, done.stdout)
    ratio = RATIO.search(done.stdout)
    assert ratio, done.stdout
    assert all(0 < float(value) < 10 for value in ratio.groups()), done.stdout
    assert "started here (CPU build" in done.stdout
    assert "On a GPU node:" in done.stdout and "No GPU number has been measured" in done.stdout
    assert "load average" in done.stdout


def test_the_report_fails_on_a_lost_or_unavailable_analysis(capsys) -> None:
    bench = load_bench()

    def run(name: str, *statuses: str) -> object:
        analyses = [bench.Analysis(1.0 + i / 10, status, 50) for i, status in enumerate(statuses)]
        return bench.Run(name, analyses, wall_s=2.0, output_tokens=50 * len(statuses))

    ok = run("direct", "available", "available")
    assert bench.report(ok, run("pipeline", "available", "available"), 2) == 0
    out = capsys.readouterr().out
    assert "pipeline/direct: analyses/s 1.00, output tokens/s 1.00;" in out
    assert bench.report(ok, run("pipeline", "available", "lost"), 2) == 1
    assert "pipeline: lost" in capsys.readouterr().out
    pipeline = run("pipeline", "available", "available")
    assert bench.report(run("direct", "unavailable", "available"), pipeline, 2) == 1
    assert "direct: unavailable" in capsys.readouterr().out
    nothing = bench.Run("pipeline", [bench.Analysis(5.0, "lost")], wall_s=5.0)
    assert bench.report(ok, nothing, 2) == 1
    assert math.isnan(nothing.latency_ms(50)) and nothing.analyses_per_s == 0

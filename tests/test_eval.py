"""``make eval``: the AI scored on held-out messages of the demo data set."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from devstack.dataset import load, split
from devstack.fixtures import RealOllama

REPO = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 300


def run_eval(*args: str) -> dict[str, list[str]]:
    """``python -m bench.eval ARGS``: its table as ``{row: [cell per column]}``, plus the
    ``columns`` row and the ``missed`` line."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.eval", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO / "tools")},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {}
    for line in done.stdout.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0] or "columns"] = cells[1:]
        elif line.startswith("Targets missed:"):
            rows["missed"] = [line.split(":", 1)[1].strip()]
    return rows


def percent(cell: str) -> float:
    return float(re.match(r"([\d.]+)%", cell).group(1)) / 100


def test_the_held_out_split_is_fixed_and_never_trained_on() -> None:
    rows = load()
    training, held_out = split(rows)
    assert split(list(reversed(rows)))[1] == list(reversed(held_out))
    assert not {r["text"] for r in training} & {r["text"] for r in held_out}
    assert {r["intent"] for r in held_out} == {r["intent"] for r in training}
    assert len(held_out) == 603 and len(training) + len(held_out) == len(rows)


def test_the_learned_step_beats_the_baseline_on_messages_it_never_saw() -> None:
    table = run_eval()
    assert table["columns"][0] == "learned step" and table["columns"][1].startswith("baseline")
    learned = {row: cells[0] for row, cells in table.items()}
    baseline = {row: cells[1] for row, cells in table.items() if len(cells) > 1}
    # floors a change must not fall under; the targets are make eval's own column
    assert percent(learned["intent accuracy"]) >= 0.84
    assert percent(learned["retrieval recall@3"]) >= 0.90
    assert percent(learned["escalation recall"]) >= 0.93
    assert percent(baseline["intent accuracy"]) < 0.05
    for row in ("intent accuracy", "retrieval recall@3", "escalation recall"):
        assert percent(learned[row]) > percent(baseline[row]), row


@pytest.mark.integration
def test_the_model_run_scores_what_the_model_can_do(real_ollama: RealOllama) -> None:
    table = run_eval("--ollama-url", real_ollama.url, "--model", real_ollama.model, "--limit", "4")
    assert table["columns"][2] == f"model {real_ollama.model}"
    # the test model has random weights: its intents are named, not scored
    assert table["intent accuracy"][2] == "not scored: random weights"
    assert re.fullmatch(r"[\d.]+% of 4", table["JSON-valid rate"][2])
    assert re.fullmatch(r"\d+ / \d+ ms", table["time per insight p50 / p95"][2])
    assert int(table["output tokens per insight"][2]) > 0

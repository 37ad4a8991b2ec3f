"""How good the AI is, on messages it never learned from: ``make eval``.

The demo data set is split once (:mod:`devstack.dataset`: 2,397 training messages, 603 held
out, every one of the 77 intents on both sides). The ai-worker's own code is run on the
held-out messages and scored against their human labels:

* **learned step**: the intent step (:class:`ai_worker.intents.IntentModel`) trained on the
  training split, the routing step with the taxonomy's ``escalate`` flags, and the
  knowledge search ranked with the predicted intents: what an insight gets whatever the model.
* **baseline**, measured in the same run: the majority intent of the training split, the
  routing step's keyword rules alone, and the knowledge search by text alone (BM25): the
  inbox before the intent step.
* **model** (with ``--ollama-url`` and ``--model``, or ``--real-ollama`` for the Ollama that
  ``make tools`` built, with its test model): the whole analysis (:class:`ai_worker.analysis.
  Analyser`) without the intent step, so the intent is the model's own, on ``--limit``
  held-out messages: JSON-valid rate, time and output tokens per insight.

Scores: intent accuracy and macro-F1 over the taxonomy; escalation precision and recall
(truth: the true intent's ``escalate`` flag in ``intents.yaml``); retrieval recall@3 (an
article linked to the true intent among the first three); JSON-valid rate; p50/p95 time per
insight in ms; output tokens per insight. A part a model cannot do is named, not scored: the
test model made here has random weights and writes no sentences.

Usage: ``uv run --frozen python -m bench.eval [--ollama-url URL --model TAG | --real-ollama]
[--limit 60]``.
"""

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ai_worker.analysis import Analyser
from ai_worker.intents import Example, IntentModel
from ai_worker.knowledge import search_knowledge_base
from ai_worker.routing import route
from ai_worker.settings import Settings
from devstack.dataset import HELD_OUT_SHARE, load, split
from devstack.ollama import TEST_MODEL, OllamaServer
from inbox_common.events import InsightStatus, MessageCreated, ReplyStrategy
from inbox_common.knowledge import articles, intents
from prometheus_client import REGISTRY
from sklearn.metrics import f1_score

TARGETS = {"intent accuracy": 0.85, "retrieval recall@3": 0.90, "escalation recall": 0.95}
"""What the default set-up must reach on the held-out split."""
REFERENCES = (
    "BANKING77 paper (Casanueva et al. 2020): 85.19% at 10 examples per intent (USE+ConveRT), "
    "93.66% with all 10,003 training examples (BERT)",
    "sentence embeddings + logistic regression: about 80% at 8 examples per intent",
    "small instruction-tuned LLMs, zero-shot: about 68% reported",
)


@dataclass
class Scores:
    """One column of the table; ``None`` where a row does not apply, a string where a part is
    named instead of scored."""

    name: str
    rows: dict[str, float | str | None] = field(default_factory=dict)


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def _escalation(truth: list[bool], predicted: list[bool]) -> tuple[float, float]:
    hits = sum(t and p for t, p in zip(truth, predicted, strict=True))
    return hits / max(1, sum(predicted)), hits / max(1, sum(truth))


def _recall_at_3(texts: list[str], labels: list[str], ranked: list[list]) -> float:
    linked = {
        name: {a.slug for a in articles().values() if name in a.intents} for name in intents()
    }
    found = 0
    for text, label, likely in zip(texts, labels, ranked, strict=True):
        top = {a.slug for a in search_knowledge_base(text, intents=likely)}
        found += bool(top & linked[label])
    return found / len(texts)


def score_intents(labels: list[str], predicted: list[str]) -> dict[str, str]:
    """Accuracy and macro-F1 over the intents the labels hold, as percentages."""
    accuracy = sum(p == t for p, t in zip(predicted, labels, strict=True)) / len(labels)
    macro = f1_score(labels, predicted, labels=sorted(set(labels)), average="macro")
    return {"intent accuracy": _percent(accuracy), "intent macro-F1": _percent(macro)}


def learned_and_baseline(training: list[dict], held_out: list[dict]) -> list[Scores]:
    """The learned step and the baseline on every held-out message."""
    taxonomy = intents()
    texts = [r["text"] for r in held_out]
    labels = [r["intent"] for r in held_out]
    truth = [taxonomy[label].escalate for label in labels]

    started = time.perf_counter()
    model = IntentModel.train(Example(r["text"], r["intent"]) for r in training)
    train_s = time.perf_counter() - started
    ranked, times_ms = [], []
    for text in texts:
        started = time.perf_counter()
        ranked.append(model.predict(text))
        times_ms.append((time.perf_counter() - started) * 1000)
    predicted = [likely[0][0] for likely in ranked]
    min_score = Settings.model_fields["ai_escalation_min_score"].default
    escalated = [
        route(t, model.escalates(likely, min_score)) is ReplyStrategy.ESCALATION
        for t, likely in zip(texts, ranked, strict=True)
    ]
    precision, recall = _escalation(truth, escalated)
    learned = Scores("learned step")
    learned.rows = {
        **score_intents(labels, predicted),
        "escalation precision": _percent(precision),
        "escalation recall": _percent(recall),
        "retrieval recall@3": _percent(_recall_at_3(texts, labels, ranked)),
        "JSON-valid rate": "n/a (no text written)",
        "time per insight p50 / p95": f"{_quantile(times_ms, 0.5):.1f} / "
        f"{_quantile(times_ms, 0.95):.1f} ms (intent only)",
        "output tokens per insight": "n/a",
        "training time": f"{train_s:.1f} s ({len(training)} messages)",
    }

    majority = Counter(r["intent"] for r in training).most_common(1)[0][0]
    escalated = [route(t) is ReplyStrategy.ESCALATION for t in texts]
    precision, recall = _escalation(truth, escalated)
    baseline = Scores(f"baseline (majority: {majority}; keywords; BM25)")
    baseline.rows = {
        **score_intents(labels, [majority] * len(labels)),
        "escalation precision": _percent(precision),
        "escalation recall": _percent(recall),
        "retrieval recall@3": _percent(_recall_at_3(texts, labels, [[]] * len(texts))),
        "JSON-valid rate": "n/a",
        "time per insight p50 / p95": "n/a",
        "output tokens per insight": "n/a",
        "training time": "n/a",
    }
    return [learned, baseline]


def _quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def _output_tokens() -> float:
    return (
        REGISTRY.get_sample_value("inbox_llm_tokens_total", {"type": "output", "operation": "chat"})
        or 0.0
    )


async def model_run(url: str, model: str, held_out: list[dict], limit: int) -> Scores:
    """The whole analysis on the first ``limit`` held-out messages, one at a time, the
    intent left to the model."""
    settings = Settings(environment="test", ollama_url=url, ollama_model=model)
    analyser = Analyser(settings)
    rows = held_out[:limit]
    completed = []
    tokens_before = _output_tokens()
    for row in rows:
        message = MessageCreated.model_validate(
            {
                "message_id": "00000000-0000-4000-8000-000000000000",
                "conversation_id": "00000000-0000-4000-8000-000000000001",
                "author_role": "customer",
                "author_id": "eval",
                "body": row["text"],
                "submitted_at": "2026-01-01T00:00:00Z",
                "seq": 1,
                "created_at": "2026-01-01T00:00:00Z",
            }
        )
        completed.append(await analyser.analyse(message))
    valid = [c for c in completed if c.status is InsightStatus.AVAILABLE]
    times = [float(c.duration_ms) for c in completed]
    scores = Scores(f"model {model}")
    if model.split(":")[0] == TEST_MODEL:
        intent_rows = {
            "intent accuracy": "not scored: random weights",
            "intent macro-F1": "not scored: random weights",
        }
    else:
        intent_rows = score_intents(
            [r["intent"] for r in rows], [c.intent or "" for c in completed]
        )
    failures = Counter(
        (c.error or "")[:60] for c in completed if c.status is not InsightStatus.AVAILABLE
    )
    scores.rows = {
        **intent_rows,
        "escalation precision": "n/a (routing runs before the model)",
        "escalation recall": "n/a",
        "retrieval recall@3": "n/a (retrieval runs before the model)",
        "JSON-valid rate": f"{_percent(len(valid) / len(rows))} of {len(rows)}",
        "time per insight p50 / p95": (
            f"{_quantile(times, 0.5):.0f} / {_quantile(times, 0.95):.0f} ms"
        ),
        "output tokens per insight": f"{(_output_tokens() - tokens_before) / len(rows):.0f}",
        "training time": "n/a",
    }
    for reason, count in failures.most_common(3):
        print(f"  model run: {count} unavailable: {reason}", file=sys.stderr)
    return scores


def table(columns: list[Scores]) -> str:
    """The scores as a Markdown table, one column per run, targets last."""
    names = list(columns[0].rows)
    lines = [
        "| | " + " | ".join(c.name for c in columns) + " | target |",
        "|---|" + "---|" * (len(columns) + 1),
    ]
    for row in names:
        target = TARGETS.get(row)
        cells = [str(c.rows.get(row, "")) for c in columns]
        lines.append(
            f"| {row} | " + " | ".join(cells) + f" | {_percent(target) if target else ''} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ollama-url", help="an Ollama server to run the whole analysis on")
    parser.add_argument("--model", help="the model tag to ask (with --ollama-url)")
    parser.add_argument(
        "--real-ollama", action="store_true", help="start the Ollama `make tools` built, test model"
    )
    parser.add_argument("--limit", type=int, default=60, help="held-out messages for the model")
    args = parser.parse_args()
    if bool(args.ollama_url) != bool(args.model):
        parser.error("--ollama-url and --model go together")

    training, held_out = split(load())
    print(
        f"Held-out split: {len(held_out)} of {len(training) + len(held_out)} messages "
        f"({HELD_OUT_SHARE:.0%} of each intent, at least 2), {len(intents())} intents, "
        f"{len(articles())} articles; nothing below learned from them."
    )
    columns = learned_and_baseline(training, held_out)
    server = None
    try:
        if args.real_ollama:
            server = OllamaServer(Path(tempfile.mkdtemp(prefix="eval-ollama-"))).start()
            args.ollama_url, args.model = server.url, server.create()
        if args.ollama_url:
            columns.append(
                asyncio.run(model_run(args.ollama_url, args.model, held_out, args.limit))
            )
    finally:
        if server is not None:
            server.stop()
    print(table(columns))
    print("References (published, other splits): " + "; ".join(REFERENCES))
    learned = columns[0].rows
    missed = [
        name
        for name, target in TARGETS.items()
        if float(str(learned[name]).rstrip("%")) / 100 < target
    ]
    print("Targets missed: " + (", ".join(missed) if missed else "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

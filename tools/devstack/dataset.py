"""The demo data set (``../shared/data/support_messages.jsonl``: BANKING77, PolyAI, Casanueva
et al. 2020, CC BY 4.0; see its README) split once into training examples for the intent step
and a held-out evaluation set that nothing learns from (``make eval``).

The split is fixed: within each intent, rows ordered by the SHA-256 of their ``id``, the first
:data:`HELD_OUT_SHARE` (at least two) held out. It depends on nothing but the file.
"""

import hashlib
import json
from collections import defaultdict
from pathlib import Path

DATA_FILE = Path(__file__).resolve().parents[3] / "shared" / "data" / "support_messages.jsonl"
HELD_OUT_SHARE = 0.2
"""The share of each intent's messages kept for evaluation."""


def load(path: Path = DATA_FILE) -> list[dict]:
    """Rows of ``{"id", "text", "intent"}`` in file order, intents lower-cased (the taxonomy's
    names; BANKING77 writes ``Refund_not_showing_up``)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{"id": r["id"], "text": r["text"], "intent": r["intent"].lower()} for r in rows]


def split(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """``(training, held_out)``, each in the rows' order; see the module's docstring."""
    by_intent: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_intent[row["intent"]].append(row)
    held: set[str] = set()
    for group in by_intent.values():
        group.sort(key=lambda r: hashlib.sha256(r["id"].encode()).hexdigest())
        held.update(r["id"] for r in group[: max(2, round(len(group) * HELD_OUT_SHARE))])
    return [r for r in rows if r["id"] not in held], [r for r in rows if r["id"] in held]


def write_training_examples(path: Path, data: Path = DATA_FILE) -> Path:
    """Write the training split to ``path`` as the JSON Lines ``AI_INTENT_EXAMPLES`` reads
    (``text``, ``intent``); returns ``path``."""
    training, _ = split(load(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(json.dumps({"text": r["text"], "intent": r["intent"]}) + "\n" for r in training)
    )
    return path

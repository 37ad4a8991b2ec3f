"""``search_knowledge_base``: the tool the model may call before it suggests a reply.

The help articles (:mod:`inbox_common.knowledge`) are ranked with Okapi BM25 (``rank-bm25``)
over their title and body, words reduced to their stem by the Snowball English stemmer
(``snowballstemmer``: "topped" finds "top"), and, when the intent step ranked the customer's
message, raised by the likelihood of the intents each article answers (its ``intents``): hybrid
ranking, as ``make eval``'s retrieval recall@3 measures. The index is built once per process.
"""

import re
from collections.abc import Sequence
from functools import cache

from inbox_common.knowledge import Article, articles
from rank_bm25 import BM25Okapi
from snowballstemmer import stemmer

TOOL_NAME = "search_knowledge_base"
MAX_RESULTS = 3

SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": (
            "Search the help articles. Use it before suggesting a reply, with the "
            "customer's question in a few words; answer from the articles it returns."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to look up, a few words"}
            },
            "required": ["query"],
        },
    },
}
"""The tool as Ollama's ``tools`` parameter expects it (https://ollama.com/blog/tool-support)."""

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an and are can do does for from has have how i in is it its me my of on or the this to "
    "was what when where which why will with you your".split()
)


_STEM = stemmer("english")


def _tokens(text: str) -> list[str]:
    return _STEM.stemWords([w for w in _WORD.findall(text.lower()) if w not in _STOP])


@cache
def _index() -> tuple[list[Article], BM25Okapi]:
    found = list(articles().values())
    return found, BM25Okapi([_tokens(f"{a.title} {a.title} {a.body}") for a in found])


INTENT_WEIGHT = 2.0
"""How much an intent's likelihood (0 to 1) counts against the best text match (1)."""


def search_knowledge_base(
    query: str, limit: int = MAX_RESULTS, intents: Sequence[tuple[str, float]] = ()
) -> list[Article]:
    """The articles that best match ``query``, best first; at most ``limit``.

    Args:
        query: the words to look up (the customer's message, or the model's query).
        intents: the message's likeliest intents with their scores (0 to 1), from
            :meth:`ai_worker.intents.IntentModel.predict`; none ranks by text alone.

    Returns:
        Ranked by the BM25 score scaled to the best one (0 to 1) plus :data:`INTENT_WEIGHT`
        times the summed score of the article's intents; an article with neither a shared
        word nor a likely intent is never returned.
    """
    found, index = _index()
    words = _tokens(query)
    scores = index.get_scores(words) if words else [0.0] * len(found)
    best = max(scores, default=0.0)
    likely = dict(intents)
    ranked = [
        (
            (score / best if best > 0 else 0.0)
            + INTENT_WEIGHT * sum(likely.get(i, 0.0) for i in article.intents),
            article,
        )
        for score, article in zip(scores, found, strict=True)
    ]
    ranked.sort(key=lambda pair: pair[0], reverse=True)
    return [article for total, article in ranked[:limit] if total > 0]

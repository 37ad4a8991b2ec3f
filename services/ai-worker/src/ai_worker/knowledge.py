"""``search_knowledge_base``: the tool the model may call before it suggests a reply.

The help articles (:mod:`inbox_common.knowledge`) are ranked with Okapi BM25 (``rank-bm25``)
over their title and body, words reduced to their stem by the Snowball English stemmer
(``snowballstemmer``: "topped" finds "top"); the index is built once per process.
"""

import re
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
            "Search the bank's help articles. Use it before suggesting a reply, with the "
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


def search_knowledge_base(query: str, limit: int = MAX_RESULTS) -> list[Article]:
    """The articles that best match ``query``, best first; at most ``limit``, none that share
    no word with it."""
    found, index = _index()
    words = _tokens(query)
    if not words:
        return []
    scores = index.get_scores(words)
    ranked = sorted(zip(scores, found, strict=True), key=lambda pair: pair[0], reverse=True)
    return [article for score, article in ranked[:limit] if score > 0]

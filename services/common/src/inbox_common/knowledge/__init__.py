"""The help articles of the knowledge base, shipped with the code (Markdown, one file each).

The ai-worker searches them for the model (``search_knowledge_base``), the gateway serves them
at ``/api/v1/knowledge/{slug}`` so the UI can link the ones an insight used. An article's slug
is its file name without ``.md``; its title is its first line (``# Title``).
"""

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DIRECTORY = Path(__file__).parent
SLUG = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
"""What a slug looks like; events and routes validate against it."""


@dataclass(frozen=True)
class Article:
    slug: str
    title: str
    body: str = ""


@cache
def articles() -> dict[str, Article]:
    """Every article by slug, read once from :data:`DIRECTORY`."""
    found = {}
    for path in sorted(DIRECTORY.glob("*.md")):
        first, _, rest = path.read_text(encoding="utf-8").partition("\n")
        if not re.match(SLUG, path.stem) or not first.startswith("# "):
            raise ValueError(f"{path.name}: needs a slug-like name and a '# Title' first line")
        found[path.stem] = Article(path.stem, first[2:].strip(), rest.strip())
    return found

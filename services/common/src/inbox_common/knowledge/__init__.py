"""The help articles and the intent taxonomy of the knowledge base: one Markdown file per
article and ``intents.yaml`` for the intents, in one folder. The demo bank's ship beside this
module; a deployment gives its own with ``KNOWLEDGE_DIR`` (:func:`use_directory`).

An article file is ``<slug>.md``: YAML front matter between two ``---`` lines (``title``,
``intents``: the taxonomy's intents it answers, ``tags``), then the Markdown body. The
ai-worker searches the articles for the model (``search_knowledge_base``) and ranks them by
the intents it predicts; the gateway serves them at ``/api/v1/knowledge/{slug}`` so the UI can
link the ones an insight used.
"""

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

DEMO_DIRECTORY = Path(__file__).parent
DIRECTORY = DEMO_DIRECTORY
"""The folder read; :func:`use_directory` sets it."""
SLUG = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
"""What a slug looks like; events and routes validate against it."""
INTENT = r"^[a-z0-9][a-z0-9_?-]*$"
"""What an intent name looks like (BANKING77's labels lower-cased, ``?`` included)."""
OTHER = "other"
"""The intent of a message that fits none of the taxonomy."""
_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n(.*)\Z", re.DOTALL)


@dataclass(frozen=True)
class Article:
    slug: str
    title: str
    body: str = ""
    intents: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Intent:
    """One intent of the taxonomy: ``escalate`` hands its messages to a human specialist."""

    name: str
    description: str
    escalate: bool = False


def use_directory(directory: Path | None) -> None:
    """Read the articles and intents from ``directory`` (``None``: the demo's) from now on,
    checking them at once so that a bad folder stops the service at start.

    Raises:
        OSError: ``intents.yaml`` cannot be read.
        ValueError: as :func:`intents` and :func:`articles`.
    """
    global DIRECTORY  # noqa: PLW0603 - one folder per process, set once at start
    DIRECTORY = directory or DEMO_DIRECTORY
    intents.cache_clear()
    articles.cache_clear()
    articles()


@cache
def intents() -> dict[str, Intent]:
    """The intent taxonomy by name, read once from ``intents.yaml`` in :data:`DIRECTORY`.

    Raises:
        ValueError: a name that is not :data:`INTENT`-like, or given twice.
    """
    found: dict[str, Intent] = {}
    for entry in yaml.safe_load((DIRECTORY / "intents.yaml").read_text(encoding="utf-8")):
        intent = Intent(str(entry["name"]), str(entry["description"]), bool(entry["escalate"]))
        if not re.match(INTENT, intent.name) or intent.name in found or intent.name == OTHER:
            raise ValueError(f"intents.yaml: {intent.name!r} is not a new intent name")
        found[intent.name] = intent
    return found


@cache
def articles() -> dict[str, Article]:
    """Every article by slug, read once from :data:`DIRECTORY`.

    Raises:
        ValueError: a file without a slug-like name, front matter or ``title``, or one that
            names an intent the taxonomy (:func:`intents`) lacks.
    """
    known = intents()
    found = {}
    for path in sorted(DIRECTORY.glob("*.md")):
        parts = _FRONT_MATTER.match(path.read_text(encoding="utf-8"))
        meta = yaml.safe_load(parts.group(1)) if parts else None
        if not re.match(SLUG, path.stem) or not isinstance(meta, dict) or not meta.get("title"):
            raise ValueError(f"{path.name}: needs a slug-like name and front matter with a title")
        unknown = [i for i in meta.get("intents") or () if i not in known]
        if unknown:
            raise ValueError(f"{path.name}: intents not in the taxonomy: {unknown}")
        found[path.stem] = Article(
            slug=path.stem,
            title=str(meta["title"]).strip(),
            body=parts.group(2).strip(),
            intents=tuple(meta.get("intents") or ()),
            tags=tuple(meta.get("tags") or ()),
        )
    return found

"""The help articles the AI grounds its replies on, for the UI's source links.

Public, like the static files: help articles are written for customers and hold no secret.
"""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from fastapi.responses import PlainTextResponse
from inbox_common.knowledge import SLUG, articles
from pydantic import BaseModel

router = APIRouter(prefix="/api/v1/knowledge", tags=["knowledge base"])


class ArticleSummary(BaseModel):
    slug: str
    title: str


@router.get("")
def list_articles() -> list[ArticleSummary]:
    """Every help article, by slug."""
    return [ArticleSummary(slug=a.slug, title=a.title) for a in articles().values()]


@router.get(
    "/{slug}",
    response_class=PlainTextResponse,
    responses={404: {"description": "No such article"}},
)
def read_article(slug: Annotated[str, Path(pattern=SLUG, max_length=80)]) -> PlainTextResponse:
    """One article as text (Markdown): its title line, then its body."""
    article = articles().get(slug)
    if article is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no help article {slug!r}")
    return PlainTextResponse(f"# {article.title}\n\n{article.body}\n")

"""The knowledge base's files: articles with front matter and the intent taxonomy."""

from pathlib import Path

import pytest
from inbox_common import knowledge


def test_every_intent_is_answered_by_an_article_and_six_escalate() -> None:
    linked = {name for article in knowledge.articles().values() for name in article.intents}
    assert linked == set(knowledge.intents())
    assert len(knowledge.intents()) == 77
    assert {i.name for i in knowledge.intents().values() if i.escalate} == {
        "card_payment_not_recognised",
        "cash_withdrawal_not_recognised",
        "direct_debit_payment_not_recognised",
        "compromised_card",
        "lost_or_stolen_card",
        "lost_or_stolen_phone",
    }


def test_an_article_is_front_matter_then_markdown() -> None:
    article = knowledge.articles()["card-arrival"]
    assert article.title == "When will my new card arrive?"
    assert "card_arrival" in article.intents and article.tags
    assert not article.body.startswith(("---", "#"))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("# Old style title\nbody\n", "front matter with a title"),
        ("---\ntags: [x]\n---\nbody\n", "front matter with a title"),
        ("---\ntitle: T\nintents: [no_such_intent]\n---\nbody\n", "not in the taxonomy"),
    ],
)
def test_a_bad_article_is_refused_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, reason: str
) -> None:
    (tmp_path / "intents.yaml").write_text(
        (knowledge.DIRECTORY / "intents.yaml").read_text(encoding="utf-8")
    )
    (tmp_path / "an-article.md").write_text(text)
    monkeypatch.setattr(knowledge, "DIRECTORY", tmp_path)
    knowledge.intents.cache_clear()
    knowledge.articles.cache_clear()
    try:
        with pytest.raises(ValueError, match=reason):
            knowledge.articles()
    finally:
        knowledge.intents.cache_clear()
        knowledge.articles.cache_clear()


def test_a_deployment_gives_its_own_folder(tmp_path: Path) -> None:
    (tmp_path / "intents.yaml").write_text(
        "- {name: slow_site, description: The website is slow., escalate: false}\n"
        "- {name: data_breach, description: Customer data may have leaked., escalate: true}\n"
    )
    (tmp_path / "speed.md").write_text(
        "---\ntitle: When the site is slow\nintents: [slow_site]\ntags: [web]\n---\n"
        "Clear the cache.\n"
    )
    try:
        knowledge.use_directory(tmp_path)
        assert list(knowledge.articles()) == ["speed"]
        assert knowledge.intents()["data_breach"].escalate
    finally:
        knowledge.use_directory(None)
    assert "card-arrival" in knowledge.articles()

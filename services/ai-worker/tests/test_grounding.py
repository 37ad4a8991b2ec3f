"""The routing step and the knowledge base search, without a model."""

import pytest
from ai_worker.knowledge import SEARCH_TOOL, search_knowledge_base
from ai_worker.prompts import STRATEGY_PROMPTS, system_prompt
from ai_worker.routing import route
from inbox_common.events import ReplyStrategy
from inbox_common.knowledge import articles


@pytest.mark.parametrize(
    ("body", "strategy"),
    [
        ("How can I receive a virtual card?", ReplyStrategy.SHORT_ANSWER),
        ("What is the exchange fee?", ReplyStrategy.SHORT_ANSWER),
        (
            "I topped up yesterday with my card. The money left my bank but the balance here "
            "has not changed. Can you check what happened?",
            ReplyStrategy.CAREFUL_ANALYSIS,
        ),
        ("There is a payment on my card that I don't recognise.", ReplyStrategy.ESCALATION),
        ("Someone stole my card and used it!", ReplyStrategy.ESCALATION),
        ("I want to make a complaint about your service.", ReplyStrategy.ESCALATION),
        ("This is fraud, I did not authorise this transfer", ReplyStrategy.ESCALATION),
    ],
)
def test_routing_picks_the_strategy(body: str, strategy: ReplyStrategy) -> None:
    assert route(body) is strategy


def test_each_strategy_has_its_own_prompt() -> None:
    assert set(STRATEGY_PROMPTS) == set(ReplyStrategy)
    prompts = {system_prompt(s) for s in ReplyStrategy}
    assert len(prompts) == 3 and all("search_knowledge_base" in p for p in prompts)


@pytest.mark.parametrize(
    ("query", "slug"),
    [
        ("when will my new card arrive", "card-arrival"),
        ("virtual card", "virtual-card"),
        ("top up with card", "top-up-by-card"),
        ("my card was stolen", "lost-or-stolen-card"),
        ("exchange rate fee weekend", "exchange-rates-and-fees"),
        ("transfer still pending", "pending-transfer"),
    ],
)
def test_search_finds_the_article(query: str, slug: str) -> None:
    assert search_knowledge_base(query)[0].slug == slug


def test_search_returns_nothing_for_nothing() -> None:
    assert search_knowledge_base("") == []
    assert search_knowledge_base("zebra xylophone") == []


def test_articles_and_tool_are_well_formed() -> None:
    found = articles()
    assert len(found) >= 12
    assert all(a.title and len(a.body) > 100 for a in found.values())
    assert SEARCH_TOOL["function"]["parameters"]["required"] == ["query"]

"""The learned intent step and the hybrid knowledge ranking, on the demo data set."""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from ai_worker.intents import Example, IntentModel, load_examples
from ai_worker.knowledge import search_knowledge_base
from inbox_common.knowledge import intents

EXAMPLES = [
    Example("my card has still not arrived", "card_arrival"),
    Example("when will the card I ordered get here", "card_arrival"),
    Example("how long does card delivery take", "card_delivery_estimate"),
    Example("what is the exchange rate for euros", "exchange_rate"),
    Example("which rate do you use to exchange dollars", "exchange_rate"),
    Example("someone has used my card, I think it was stolen", "lost_or_stolen_card"),
    Example("I lost my card yesterday", "lost_or_stolen_card"),
]


@pytest.fixture(scope="module")
def model() -> IntentModel:
    return IntentModel.train(EXAMPLES)


def test_predictions_are_intents_of_the_taxonomy_best_first(model: IntentModel) -> None:
    likely = model.predict("my card has not arrived yet")
    assert likely[0][0] == "card_arrival"
    assert len(likely) == 3 and all(name in intents() for name, _ in likely)
    scores = [score for _, score in likely]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1


def test_a_correction_decides_the_same_text_and_moves_similar_ones() -> None:
    text = "The exchange rate on my card arrival fee looks off"
    before = IntentModel.train(EXAMPLES)
    correction = Example(text.upper() + "  ", "card_payment_wrong_exchange_rate")
    after = IntentModel.train([*EXAMPLES, correction])
    assert before.predict(text)[0][0] != "card_payment_wrong_exchange_rate"
    assert after.predict(text) == [("card_payment_wrong_exchange_rate", 1.0)]


def test_examples_of_intents_outside_the_taxonomy_are_dropped() -> None:
    model = IntentModel.train([*EXAMPLES, Example("pizza please", "order_pizza")])
    assert all(name in intents() for name, _ in model.predict("pizza please"))


def test_escalation_may_come_from_the_second_guess(model: IntentModel) -> None:
    likely = [("card_arrival", 0.6), ("lost_or_stolen_card", 0.1), ("exchange_rate", 0.05)]
    assert model.escalates(likely, 0.05)
    assert not model.escalates(likely, 0.2)


def test_a_bad_examples_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "examples.jsonl"
    path.write_text(json.dumps({"text": "hi", "intent": "Card_Arrival"}) + "\n\n[1]\n")
    with pytest.raises(ValueError, match=r"examples.jsonl:3: not a labelled example"):
        load_examples(path)
    path.write_text(json.dumps({"text": "hi", "intent": "Card_Arrival", "id": "x"}) + "\n")
    assert load_examples(path) == [Example("hi", "card_arrival")]


def test_the_predicted_intents_bring_their_articles_forward() -> None:
    query = "it still has not come"
    by_text = [a.slug for a in search_knowledge_base(query)]
    by_intent = [a.slug for a in search_knowledge_base(query, intents=[("card_arrival", 0.9)])]
    assert by_intent[0] == "card-arrival" and by_text[:1] != ["card-arrival"]
    assert search_knowledge_base("", intents=[("card_arrival", 0.9)])[0].slug == "card-arrival"
    assert search_knowledge_base("zzz qqq") == []


def test_training_and_predicting_at_once_in_threads(model: IntentModel) -> None:
    with ThreadPoolExecutor(4) as pool:
        trained = pool.submit(IntentModel.train, EXAMPLES * 20)
        predicted = [pool.submit(model.predict, f"my card {i} has not arrived") for i in range(200)]
        assert all(p.result()[0][0] in intents() for p in predicted)
        assert trained.result().predict("I lost my card yesterday")[0][0] == "lost_or_stolen_card"

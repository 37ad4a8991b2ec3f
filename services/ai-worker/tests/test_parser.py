"""The defensive parser on a corpus of model outputs seen in the wild and hostile ones."""

import json
import time

import pytest
from ai_worker.parser import (
    FIRST_WINDOW_CHARS,
    INSIGHT_SCHEMA,
    MAX_OUTPUT_CHARS,
    InsightParseError,
    first_json_object,
    parse_insight,
)

GOOD = {
    "intent": "card_arrival",
    "summary": "The customer's new card has not arrived.",
    "suggested_reply": "Sorry about the wait. Cards usually arrive within 5 working days.",
}


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(GOOD),
        "```json\n" + json.dumps(GOOD) + "\n```",
        "```\n" + json.dumps(GOOD) + "\n```",
        "Sure! Here is the JSON:\n```json\n" + json.dumps(GOOD, indent=2) + "\n```\nAnything else?",
        "Here you go: " + json.dumps(GOOD) + " Let me know if you need more.",
        "  \n" + json.dumps({**GOOD, "confidence": 0.9}) + "\n",
        json.dumps(GOOD) + "\n" + json.dumps({"intent": "other"}),
        "{not json} then " + json.dumps(GOOD),
    ],
    ids=[
        "plain",
        "fenced-json",
        "fenced-bare",
        "fenced-with-prose",
        "prose-around",
        "extra-keys",
        "two-objects",
        "broken-then-good",
    ],
)
def test_well_formed_outputs_parse(text: str) -> None:
    insight = parse_insight(text)
    assert insight.intent == "card_arrival"
    assert insight.summary == GOOD["summary"]
    assert insight.suggested_reply == GOOD["suggested_reply"]


def test_braces_inside_strings_do_not_end_the_object() -> None:
    tricky = {**GOOD, "summary": "Customer typed } and { in the text"}
    assert parse_insight("x " + json.dumps(tricky)).summary == tricky["summary"]
    assert first_json_object('say {"a": "quote \\" and }"} done') == {"a": 'quote " and }'}


def test_intent_is_normalised_to_snake_case() -> None:
    assert parse_insight(json.dumps({**GOOD, "intent": "  Card Arrival "})).intent == "card_arrival"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no text"),
        ("   ", "no text"),
        ("The customer wants their card. Reply politely.", "no JSON object"),
        ('{"intent": "card_arrival", "summary": "unterminated', "no JSON object"),
        ('```json\n{"intent": "card_arrival",\n```', "no JSON object"),
        ("[1, 2, 3]", "no JSON object"),
        (json.dumps({"intent": "card_arrival"}), "summary"),
        (json.dumps({**GOOD, "summary": ""}), "summary"),
        (json.dumps({**GOOD, "summary": 42}), "summary"),
        (json.dumps({**GOOD, "suggested_reply": "x" * 2001}), "suggested_reply"),
        (json.dumps({**GOOD, "intent": "<script>alert(1)</script>"}), "intent"),
        (json.dumps({**GOOD, "intent": "a" * 65}), "intent"),
        ("{" * 50, "no JSON object"),
        ("x" * (MAX_OUTPUT_CHARS + 1), "longer than"),
    ],
    ids=[
        "empty",
        "blank",
        "prose",
        "truncated",
        "truncated-fence",
        "array",
        "missing-fields",
        "empty-summary",
        "wrong-type",
        "reply-too-long",
        "html-intent",
        "intent-too-long",
        "unbalanced",
        "oversized",
    ],
)
def test_malformed_or_hostile_outputs_are_rejected(text: str, reason: str) -> None:
    with pytest.raises(InsightParseError, match=reason):
        parse_insight(text)


def test_hostile_text_inside_valid_fields_stays_text() -> None:
    # Model output is rendered as text by the browser; the parser must not alter or trust it.
    hostile = {**GOOD, "suggested_reply": '<img src=x onerror="alert(1)"> Ignore previous rules'}
    assert parse_insight(json.dumps(hostile)).suggested_reply == hostile["suggested_reply"]


def test_error_reason_is_bounded_and_does_not_echo_the_output() -> None:
    secret = "S" * 5000
    with pytest.raises(InsightParseError) as caught:
        parse_insight(json.dumps({**GOOD, "summary": secret}))
    assert len(str(caught.value)) <= 400
    assert secret not in str(caught.value)


def test_schema_given_to_ollama_requires_every_field_with_bounds() -> None:
    assert set(INSIGHT_SCHEMA["required"]) == {"intent", "summary", "suggested_reply"}
    assert INSIGHT_SCHEMA["properties"]["summary"]["maxLength"] == 400


HOSTILE_AT_THE_BOUND = {
    "unbalanced-braces": "{" * MAX_OUTPUT_CHARS,
    "open-keys": '{"' * (MAX_OUTPUT_CHARS // 2),
    "opened-then-closed": "{" * (MAX_OUTPUT_CHARS // 2) + "}" * (MAX_OUTPUT_CHARS // 2),
    "nested-arrays": '{"a": ' + "[" * (MAX_OUTPUT_CHARS - 6),
    "nested-objects": '{"a": ' * (MAX_OUTPUT_CHARS // 6),
    "unterminated-string": '{"a": "' + "{" * (MAX_OUTPUT_CHARS - 7),
    "unclosed-fence": "```" + "a" * (MAX_OUTPUT_CHARS - 3),
    "unclosed-fence-blank": "```" + " " * (MAX_OUTPUT_CHARS - 3),
}


@pytest.mark.parametrize("text", HOSTILE_AT_THE_BOUND.values(), ids=HOSTILE_AT_THE_BOUND)
def test_hostile_output_at_the_bound_is_refused_quickly(text: str) -> None:
    # A loose bound against quadratic blow-up (seconds at this size); `make bench-parser`
    # measures the real figures.
    started = time.perf_counter()
    with pytest.raises(InsightParseError):
        parse_insight(text)
    assert time.perf_counter() - started < 0.5


def test_an_object_after_a_truncated_one_is_found() -> None:
    truncated = '{"intent": "card_arrival", "summary": "The card"\n'
    assert parse_insight(truncated + json.dumps(GOOD)).summary == GOOD["summary"]


@pytest.mark.parametrize("pad", range(0, 80, 3))
def test_objects_longer_than_the_first_window_decode_whole_wherever_it_ends(pad: int) -> None:
    # The decoder first reads FIRST_WINDOW_CHARS from the "{": wherever that window ends
    # (inside a number, a literal, an escape, a surrogate pair), the object is the same.
    tokens = {"n": -1.5e10, "t": True, "f": False, "z": None, "e": '\U0001f600 \\ " \u00e9'}
    document = {"pad": "x" * pad} | {f"k{i}": tokens for i in range(8)} | GOOD
    assert len(json.dumps(document)) > 2 * FIRST_WINDOW_CHARS
    assert first_json_object("Here: " + json.dumps(document)) == document

"""The resolution summary's defensive parsing (what the model is sent: test_prompts.py)."""

import json

import pytest
from ai_worker.summary import SUMMARY_SCHEMA, SummaryParseError, parse_summary
from inbox_common.events import SUMMARY_MAX_TEXT


def test_schema_asks_for_one_summary_string() -> None:
    assert SUMMARY_SCHEMA["required"] == ["summary"]
    assert SUMMARY_SCHEMA["properties"]["summary"]["type"] == "string"


@pytest.mark.parametrize(
    "text",
    [
        '{"summary": "Card refunded."}',
        'Sure!\n```json\n{"summary": "Card refunded."}\n```',
        'Here: {"summary": "  Card refunded.  ", "extra": 1} done',
    ],
)
def test_well_formed_and_wrapped_output_parses(text) -> None:
    assert parse_summary(text).summary == "Card refunded."


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no text"),
        ("The customer wanted a refund.", "no JSON object"),
        ('{"summary": "unterminated', "no JSON object"),
        ('{"summary": ""}', "does not match the schema"),
        (json.dumps({"summary": "x" * (SUMMARY_MAX_TEXT + 1)}), "does not match the schema"),
        ('{"text": "wrong key"}', "does not match the schema"),
    ],
)
def test_bad_output_is_refused_with_a_reason(text, reason) -> None:
    with pytest.raises(SummaryParseError, match=reason):
        parse_summary(text)

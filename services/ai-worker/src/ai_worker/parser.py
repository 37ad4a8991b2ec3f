"""Defensive parsing of model output into an :class:`LlmInsight`.

Ollama is asked for JSON matching :data:`INSIGHT_SCHEMA` (structured outputs, ``format=``), but
models and servers vary, so the text is still treated as untrusted (OWASP LLM05, improper output
handling): Markdown code fences are stripped, the first JSON object is taken, and it must
validate against the model with bounded lengths. Anything else raises
:class:`InsightParseError`, which the worker reports as ``unavailable``.

The text is hostile input of up to :data:`MAX_OUTPUT_CHARS` characters, and parsing it runs on
the worker's event loop, so every step is linear in its length (``make bench-parser``).
"""

import json
import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

MAX_OUTPUT_CHARS = 20_000
"""Longer model output is rejected without parsing."""

# Possessive quantifiers: a fence that is never closed fails once, instead of once per way of
# splitting its info string and blanks (quadratic in their length).
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*+\s*+(.*?)```", re.DOTALL)
_DECODER = json.JSONDecoder()
# Where an object may start: "{" then a key or "}". Other braces (a run of "{" in prose) are
# passed over by one regex scan, instead of a failed decode each.
_OBJECT_START = re.compile(r'\{(?=\s*+["}])')
FIRST_WINDOW_CHARS = 256
"""The text a decode reads first from its "{"; doubled while the decoder ran into its end."""
_LOOKAHEAD_CHARS = 16
"""A failure this close to a window's end may be a token the window cut (``-Infinity``, a
``\\uXXXX`` pair): read further before believing it."""


class LlmInsight(BaseModel):
    """What the model must return for one customer message."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    intent: Annotated[
        str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_?-]*$")
    ]
    summary: Annotated[str, StringConstraints(min_length=1, max_length=400)]
    suggested_reply: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


INSIGHT_SCHEMA: dict = LlmInsight.model_json_schema()
"""JSON Schema passed to Ollama as ``format`` (https://ollama.com/blog/structured-outputs)."""


class InsightParseError(ValueError):
    """The model output holds no valid insight; ``str(exc)`` says why (bounded, no raw output)."""


def parse_insight(text: str) -> LlmInsight:
    """Extract and validate an insight from raw model output.

    Args:
        text: the assistant message content, as returned by Ollama.

    Returns:
        The validated insight; ``intent`` is normalised to lower snake_case.

    Raises:
        InsightParseError: empty or oversized output, no JSON object, or one that fails the
            schema (missing fields, wrong types, over-long strings).
    """
    if not text or not text.strip():
        raise InsightParseError("model returned no text")
    if len(text) > MAX_OUTPUT_CHARS:
        raise InsightParseError(f"model output longer than {MAX_OUTPUT_CHARS} characters")
    obj = json_object_in(text)
    if obj is None:
        raise InsightParseError("no JSON object in model output")
    if isinstance(obj.get("intent"), str):
        obj["intent"] = re.sub(r"[\s]+", "_", obj["intent"].strip().lower())
    try:
        return LlmInsight.model_validate(obj)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'object'}: {e['msg']}" for e in exc.errors()
        )
        reason = f"model output does not match the schema: {problems}"
        raise InsightParseError(reason[:400]) from None


def json_object_in(text: str) -> dict | None:
    """The first JSON object inside a Markdown code fence of ``text``, else the first one in
    ``text`` itself (see :func:`first_json_object`); ``None`` when there is none."""
    fenced = _FENCE.search(text)
    for candidate in [fenced.group(1), text] if fenced else [text]:
        obj = first_json_object(candidate)
        if obj is not None:
            return obj
    return None


def first_json_object(text: str) -> dict | None:
    """The first JSON object in ``text``, prose around it allowed, else ``None``.

    Each ``{`` that may open an object is decoded with :meth:`json.JSONDecoder.raw_decode`,
    which reads one value and stops, so braces inside JSON strings (and escaped quotes) are
    skipped: ``{"a": "}"}`` is whole. After a failed try the search goes on from where the
    decoder gave up, so the time is linear in ``len(text)``; the price is that a ``{`` inside a
    malformed object is not tried on its own. An object nested deeper than Python's recursion
    limit ends the search (``None``): it cannot be an insight.
    """
    found = _OBJECT_START.search(text)
    while found:
        try:
            value, gave_up_at = _decode_at(text, found.start())
        except RecursionError:
            return None
        if value is not None:
            return value
        found = _OBJECT_START.search(text, max(gave_up_at, found.start() + 1))
    return None


def _decode_at(text: str, start: int) -> tuple[dict | None, int]:
    """The object that starts at ``text[start]``, or ``None`` and the index in ``text`` where
    the decoder gave up.

    The decoder reads a window of ``text`` that doubles while a failure may be the window's
    doing, so a failed try costs time in proportion to how far it got. Decoding ``text`` itself
    would not: :class:`json.JSONDecodeError` counts the lines before the failure, which is
    linear in ``start`` and quadratic over all the tries.
    """
    size = FIRST_WINDOW_CHARS
    while True:
        window = text[start : start + size]
        try:
            return _DECODER.raw_decode(window)[0], start
        except json.JSONDecodeError as exc:
            cut = start + size < len(text) and (
                exc.pos > len(window) - _LOOKAHEAD_CHARS
                or exc.msg.startswith("Unterminated string")
            )
            if not cut:
                return None, start + exc.pos
        size *= 2

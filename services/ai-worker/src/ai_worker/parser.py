"""Defensive parsing of model output into an :class:`LlmInsight`.

Ollama is asked for JSON matching :data:`INSIGHT_SCHEMA` (structured outputs, ``format=``), but
models and servers vary, so the text is still treated as untrusted (OWASP LLM05, improper output
handling): Markdown code fences are stripped, the first balanced JSON object is taken, and it
must validate against the model with bounded lengths. Anything else raises
:class:`InsightParseError`, which the worker reports as ``unavailable``.
"""

import json
import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

MAX_OUTPUT_CHARS = 20_000
"""Longer model output is rejected without parsing."""

_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.DOTALL)


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
    """The first balanced ``{...}`` in ``text`` that parses as a JSON object, else ``None``.

    Braces inside JSON strings (and escaped quotes) are skipped, so ``{"a": "}"}`` is whole.
    """
    start = text.find("{")
    while start != -1:
        end = _balanced_end(text, start)
        if end is not None:
            try:
                value = json.loads(text[start : end + 1])
            except ValueError:
                value = None
            if isinstance(value, dict):
                return value
        start = text.find("{", start + 1)
    return None


def _balanced_end(text: str, start: int) -> int | None:
    depth = 0
    in_string = escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
    return None

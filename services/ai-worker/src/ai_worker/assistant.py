"""Whether the AI assistant answers a customer itself, or hands the conversation to a person.

Only for conversations that are ``answering`` (a chat widget channel in ``answer`` mode). The
insight is made as for every message; its suggested reply then goes to the customer unless a
rule below hands the conversation off, for good (messaging records it; the assistant stays
silent in it afterwards):

1. the customer asks for a person;
2. the routing step chose ``escalation`` (complaints, possible fraud: :mod:`ai_worker.routing`);
3. no usable answer: the insight is ``unavailable`` (the model failed, timed out, or wrote
   something that is not an insight), so no confident reply exists;
4. the reply would commit the bank to something only a person may grant (a refund,
   compensation, a fee waived, a limit raised) or echoes the assistant's instructions: model
   output is untrusted, and a prompt injection aims at exactly this (OWASP LLM01, LLM05).

The rules are plain on purpose: each handoff carries its reason, shown to operators.

Rule 4 also guards the reply while it is streamed to the customer: only complete sentences
go out, and none once the text so far breaks it (:func:`customer_safe_prefix`), so a promise
is never shown to the customer even for the moment before the whole reply is judged.
"""

import re

from inbox_common.events import AiCompleted, InsightStatus, ReplyStrategy

from ai_worker.routing import route

_ASKS_FOR_PERSON = re.compile(
    r"\b(?:human|real person|a person|someone real|live (?:agent|person|chat)|"
    r"(?:an?|the|your|speak to|talk to) (?:agent|operator|representative|advisor|adviser)|"
    r"customer service|not a (?:bot|robot|machine))\b",
    re.IGNORECASE,
)
_GRANTS = r"(?:refund|reimburs|compensat|waiv|credit|pay|rais|increas|guarantee)\w*"
_COMMITS = re.compile(
    # a promise, not a mention: "we will refund", "I have waived", "you will be reimbursed"
    rf"\b(?:we|i)(?:'ll|'ve| will| can| have| shall| are going to)?\s+(?:\w+\s+)?{_GRANTS}|"
    rf"\byou(?:'ll| will)\s+(?:get|receive|be)\s+(?:\w+\s+)?{_GRANTS}|"
    r"\b(?:we )?guarantee\w*",
    re.IGNORECASE,
)
_ECHOES_INSTRUCTIONS = re.compile(
    r"(?:\bstrategy:|\bsystem prompt\b|\byou are (?:a|an|the) (?:support|customer)|"
    r"\bmy instructions\b|<\|[a-z_]+\|>)",
    re.IGNORECASE,
)


_SENTENCE_END = re.compile(r"[.!?…](?=\s)|\n")


def held_back(reply: str) -> str | None:
    """Why rule 4 keeps ``reply`` from the customer (one line, for operators); ``None``: it
    may go out."""
    if _COMMITS.search(reply):
        return "the draft answer promised what only a person may grant; held back"
    if _ECHOES_INSTRUCTIONS.search(reply):
        return "the draft answer echoed the assistant's instructions; held back"
    return None


def customer_safe_prefix(draft: str) -> str | None:
    """The part of a reply still being written that may be streamed to the customer: its
    complete sentences (up to the last ``.``, ``!``, ``?`` or ``…`` followed by a space, or a
    line break), ``""`` before the first one ends. ``None`` once those sentences break rule 4:
    nothing more of this draft may be shown. A half-written sentence is never shown, since a
    promise ("we will ref…") is only recognisable once its words are complete."""
    ends = [m.end() for m in _SENTENCE_END.finditer(draft)]
    prefix = draft[: ends[-1]].rstrip() if ends else ""
    return None if held_back(prefix) else prefix


def asks_for_person(body: str) -> bool:
    """Whether the customer message ``body`` asks for a person instead of the assistant."""
    return bool(_ASKS_FOR_PERSON.search(body))


def hands_off_first(body: str) -> bool:
    """Whether ``body`` is handed off whatever the model writes (rules 1 and 2), so its reply
    is never streamed to the customer."""
    return asks_for_person(body) or route(body) is ReplyStrategy.ESCALATION


def decide(body: str, completed: AiCompleted) -> AiCompleted:
    """``completed`` with ``answered`` set, or ``handoff`` with the reason (one line, for
    operators), for the customer message ``body`` of an ``answering`` conversation."""
    reason = None
    if asks_for_person(body):
        reason = "the customer asked for a person"
    elif completed.strategy is ReplyStrategy.ESCALATION:
        reason = f"escalation: {completed.intent or 'a complaint or possible fraud'}"
    elif completed.status is not InsightStatus.AVAILABLE or not completed.suggested_reply:
        reason = f"no answer the assistant could give ({completed.error or 'empty reply'})"
    else:
        reason = held_back(completed.suggested_reply)
    if reason:
        return completed.model_copy(update={"handoff": reason, "answered": False})
    return completed.model_copy(update={"answered": True, "handoff": None})

"""The routing step: which prompt strategy a customer message gets, decided before the LLM.

Rules, in order: a complaint or possible fraud goes to a human (``escalation``): the words
below, or an intent the taxonomy marks ``escalate`` (``intents.yaml``); a short
single question gets a ``short_answer``; anything else a ``careful_analysis``. The rules are
plain and testable on purpose: the decision is recorded on the insight and must be
explainable to an operator.
"""

import re

from inbox_common.events import ReplyStrategy

_ESCALATE = re.compile(
    r"\b(fraud\w*|scam\w*|stole\w*|steal\w*|hack\w*|unauthori[sz]ed|"
    r"did ?n[o']t (?:make|authori[sz]e)|"
    r"(?:do ?n[o']t|did ?n[o']t|not) recogni[sz]e|complain\w*|unacceptable|disgust\w*|"
    r"ombudsman|lawyer|sue)\b",
    re.IGNORECASE,
)
SHORT_WORDS = 20
"""A message of at most this many words and one sentence is a short question."""


def route(body: str, escalate: bool = False) -> ReplyStrategy:
    """The strategy for the customer message ``body``; ``escalate`` when its predicted intent
    is one the taxonomy hands to a human."""
    if escalate or _ESCALATE.search(body):
        return ReplyStrategy.ESCALATION
    sentences = [s for s in re.split(r"[.!?]+\s", body.strip()) if s.strip()]
    if len(body.split()) <= SHORT_WORDS and len(sentences) <= 1:
        return ReplyStrategy.SHORT_ANSWER
    return ReplyStrategy.CAREFUL_ANALYSIS

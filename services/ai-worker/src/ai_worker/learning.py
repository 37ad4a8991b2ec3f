"""The intent step as the deployment teaches it: the seed examples (``AI_INTENT_EXAMPLES``)
plus the operators' corrections, which messaging keeps in the state store
(``intent-examples``) and announces on ``intent.examples.changed`` to every replica.

A replica reads the corrections when it starts and again on each announcement, trains a new
model off the event loop (about a second for 2,400 examples) and swaps it in; an analysis in
flight keeps the model it started with.
"""

import asyncio
import logging

from inbox_common.keys import INTENT_EXAMPLES_KEY
from inbox_common.read_models import IntentExamples
from inbox_common.sidecar import Sidecar

from ai_worker.intents import Example, IntentModel

log = logging.getLogger(__name__)


class IntentStep:
    """Holds the current :class:`IntentModel`, trained on ``seed`` when made (seconds).

    Args:
        seed: the deployment's labelled examples; without any, ``model`` stays ``None``:
            corrections are stored by messaging but not learned (the model's own intent is
            used).
    """

    def __init__(self, seed: list[Example]) -> None:
        self._seed = seed
        self._lock = asyncio.Lock()
        self.model = IntentModel.train(seed) if seed else None
        self.version = 0
        """The corrections version the model learned (0: the seed alone)."""

    async def learn(self, sidecar: Sidecar) -> bool:
        """Read the corrections from the state store and retrain when they are newer than the
        model's (or no model exists yet).

        Returns:
            Whether a new model was swapped in.

        Raises:
            TransientError: the state store did not answer.
        """
        if self.model is None:
            return False
        async with self._lock:
            raw = await sidecar.get_state(INTENT_EXAMPLES_KEY)
            known = IntentExamples.model_validate_json(raw) if raw else IntentExamples(version=0)
            if known.version <= self.version:
                return False
            corrections = [Example(e.text, e.intent) for e in known.examples]
            self.model = await asyncio.to_thread(IntentModel.train, self._seed + corrections)
            self.version = known.version
        log.info(
            "intent step learned",
            extra={"corrections": len(corrections), "version": known.version},
        )
        return True

"""The shape shared by log detectors: events in, a score in ``[0, 1]`` out.

Log detectors see *records* (a template id with its key, a user's block of commands, an
authentication event), not float vectors, so they take the :class:`detectors.base.Detector`
contract (prequential ``score_one``/``learn_one``, JSON snapshots without pickle, scores
meaning ``P(a normal record scores lower)``) and replace only the batch helpers, which
in the base class assume numeric rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np

from detectors.base import Detector


class LogDetector(Detector):
    """A detector of records (any Python object the subclass documents)."""

    kind: ClassVar[str] = "logs"

    def learn_many(self, X: Iterable[Any]) -> None:  # type: ignore[override]
        """Learn every record of ``X`` in order."""
        for x in X:
            self.learn_one(x)

    def score_learn_many(self, X: Iterable[Any]) -> np.ndarray:  # type: ignore[override]
        """Prequential scores of the records of ``X``: each scored, then learned."""
        return np.asarray([self.score_learn_one(x) for x in X], dtype=np.float64)

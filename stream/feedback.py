"""Operator feedback: a verdict on an incident moves that key's alert rate.

A false positive halves the key's target alert rates (its thresholds rise to the
score quantile of the lower rate), down to ``min_scale`` of the configured rates; a
true positive doubles them back, never above the configured rates. Every verdict is
counted in the key's state and in ``vigil_feedback_total``. The change applies to all
of the key's streams (its sensors, joint score and log detectors) from the next score.

Examples
--------
>>> fb = KeyFeedback()
>>> fb.apply("false_positive", min_scale=1 / 64), fb.apply("false_positive", 1 / 64)
(0.5, 0.25)
>>> fb.apply("true_positive", 1 / 64), (fb.false_positives, fb.true_positives)
(0.5, (2, 1))
"""

from __future__ import annotations

from typing import Any


class KeyFeedback:
    """The verdicts an operator gave on one key's incidents, and their effect."""

    __slots__ = ("false_positives", "scale", "true_positives")

    def __init__(self) -> None:
        self.scale = 1.0  # multiplies the configured target alert rates of this key
        self.false_positives = 0
        self.true_positives = 0

    def apply(self, verdict: str, min_scale: float) -> float:
        """Record ``verdict``; returns the key's new rate scale."""
        if verdict == "false_positive":
            self.false_positives += 1
            self.scale = max(self.scale / 2.0, min_scale)
        elif verdict == "true_positive":
            self.true_positives += 1
            self.scale = min(self.scale * 2.0, 1.0)
        else:
            raise ValueError(f"unknown verdict {verdict!r}")
        return self.scale

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "fp": self.false_positives, "tp": self.true_positives}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeyFeedback:
        fb = cls()
        fb.scale = float(data["scale"])
        fb.false_positives = int(data["fp"])
        fb.true_positives = int(data["tp"])
        if not 0.0 < fb.scale <= 1.0:
            raise ValueError(f"feedback scale {fb.scale} outside (0, 1]")
        return fb

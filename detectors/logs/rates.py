"""Per-template event rates of one key, scored by a univariate detector.

A burst of ``Failed password`` lines, a service that suddenly logs ``connection
reset`` a hundred times a minute, a cron job that stopped: the *rate* of a template is
anomalous, not the template. Events are counted per template in fixed event-time
buckets; when a bucket closes, its counts (and zeros for the empty buckets since)
form one row with a channel per tracked template (empty buckets are learned as
zero rows, not scored: a quiet minute is never an increase). Counts are Poisson-like, whose
variance grows with the mean, so each count goes through Anscombe's variance
stabilising transform ``2 sqrt(x + 3/8)`` (unit variance whatever the rate) before a
univariate detector (by default the robust z-score, with a unit scale floor) scores
every channel. Only increases count (one-sided): a rare template's quiet minute is
normal.

References
----------
F. J. Anscombe, "The Transformation of Poisson, Binomial and Negative-Binomial Data",
Biometrika 35(3/4), 1948. The per-template count matrix is the "event count vector"
of S. He, J. Zhu, P. He, M. R. Lyu, "Experience Report: System Log Analysis for
Anomaly Detection", ISSRE 2016.

Examples
--------
>>> rates = TemplateRates(bucket_s=60.0, warmup=20)
>>> closed = []
>>> for minute in range(120):  # about 3 "login ok" a minute, steady
...     for k in range(3):
...         closed += rates.add("login ok", minute * 60.0 + k)
>>> for k in range(40):  # then 40 failures inside one minute
...     closed += rates.add("login failed", 120 * 60.0 + k)
>>> last = rates.add("login ok", 121 * 60.0)  # the minute closes
>>> row = last[-1]
>>> dict(zip(row.templates, row.counts.tolist()))
{'login ok': 0.0, 'login failed': 40.0}
>>> bool(row.scores[1] > 0.9999), bool(row.scores[0] < 0.5)
(True, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

import detectors
from detectors.base import Detector


@dataclass(frozen=True, slots=True)
class RateRow:
    """One closed bucket: its end time, the tracked templates, counts, expected, scores."""

    end_ts: float
    templates: list[str]
    counts: np.ndarray
    expected: np.ndarray  # the count the detector expected (before this bucket)
    scores: np.ndarray


_ANSCOMBE_ZERO = 2.0 * np.sqrt(0.375)  # the transform of a zero count


def anscombe(x: np.ndarray) -> np.ndarray:
    return 2.0 * np.sqrt(x + 0.375)


def inverse_anscombe(y: np.ndarray) -> np.ndarray:
    return np.maximum((y / 2.0) ** 2 - 0.375, 0.0)


class TemplateRates:
    """Bucketed per-template counts of one key and the detector of their rates.

    Parameters
    ----------
    bucket_s
        Bucket length in event-time seconds.
    max_templates
        Templates tracked (the first seen); later ones are not rated (their rarity is
        the ``rare_template`` detector's job).
    max_gap
        Empty buckets learned at most between two events (a longer silence counts as
        this many), which bounds the work of one event.
    warmup
        Buckets learned before scores are given.
    """

    def __init__(
        self,
        bucket_s: float = 60.0,
        max_templates: int = 32,
        max_gap: int = 10,
        warmup: int = 30,
    ) -> None:
        if bucket_s <= 0 or max_templates < 1 or max_gap < 1:
            raise ValueError("bucket_s, max_templates and max_gap must be positive")
        self.bucket_s = float(bucket_s)
        self.max_templates = int(max_templates)
        self.max_gap = int(max_gap)
        self.warmup = int(warmup)
        self.templates: list[str] = []
        self.index: dict[str, int] = {}
        self.bucket: int | None = None  # index of the open bucket
        self.counts: list[float] = []
        self.closed = 0  # buckets closed so far
        self.detector: Detector = self._new_detector()

    def _new_detector(self) -> Detector:
        # Anscombe-transformed Poisson counts have unit variance: floor the scale there.
        return detectors.create(
            "robust_zscore", alpha=0.02, warmup=max(self.warmup, 2), min_scale=1.0
        )

    def add(self, template_id: str, ts: float) -> list[RateRow]:
        """Count one event; return the bucket it closed, scored (empty buckets are learned)."""
        b = math.floor(ts / self.bucket_s)
        rows: list[RateRow] = []
        if self.bucket is None:
            self.bucket = b
        elif b > self.bucket:
            rows.append(self._close(self.bucket))
            gap = min(b - self.bucket - 1, self.max_gap)
            if gap > 0 and self.templates:
                # Empty buckets only teach the detector what silence looks like: learned
                # in one call, not scored (a zero count is never an increase).
                zeros = np.full((gap, len(self.templates)), anscombe(np.zeros(1))[0])
                self.detector.learn_many(zeros)
                self.closed += gap
            self.bucket = b
        # An event older than the open bucket counts in the open one (arrival order).
        i = self.index.get(template_id)
        if i is None and len(self.templates) < self.max_templates:
            i = self.index[template_id] = len(self.templates)
            self.templates.append(template_id)
            self.counts.append(0.0)
            self.detector.grow(len(self.templates))  # type: ignore[attr-defined]
            if self.closed >= self.warmup:
                # A template new to a warmed-up key had a count of 0 in every bucket
                # so far: start its channel there instead of warming it up.
                self.detector.prime(i, float(anscombe(np.zeros(1))[0]), 1.0)  # type: ignore[attr-defined]
        if i is not None:
            self.counts[i] += 1.0
        return rows

    def _close(self, bucket: int) -> RateRow:
        counts = np.asarray(self.counts, dtype=np.float64)
        row = anscombe(counts)
        expected = self._expected(len(counts))
        scores = np.asarray(self.detector.score_learn_many(row[None, :]), dtype=np.float64)
        scores = scores.reshape(-1)
        scores = np.where(row > anscombe(expected), scores, 0.0)  # increases only
        self.counts = [0.0] * len(self.counts)
        self.closed += 1
        return RateRow((bucket + 1) * self.bucket_s, list(self.templates), counts, expected, scores)

    def _expected(self, d: int) -> np.ndarray:
        fn = getattr(self.detector, "expected", None)
        if fn is None or d == 0:
            return np.zeros(d)
        loc, _ = fn()
        loc = np.asarray(loc, dtype=np.float64)
        if len(loc) != d:
            return np.zeros(d)
        return inverse_anscombe(np.where(np.isfinite(loc), loc, _ANSCOMBE_ZERO))

    def to_dict(self) -> dict[str, Any]:
        return {
            "bucket_s": self.bucket_s,
            "max_templates": self.max_templates,
            "max_gap": self.max_gap,
            "warmup": self.warmup,
            "templates": self.templates,
            "bucket": self.bucket,
            "counts": self.counts,
            "closed": self.closed,
            "detector": self.detector.snapshot(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TemplateRates:
        rates = cls(
            float(data["bucket_s"]),
            int(data["max_templates"]),
            int(data["max_gap"]),
            int(data["warmup"]),
        )
        rates.templates = [str(t) for t in data["templates"]]
        rates.index = {t: i for i, t in enumerate(rates.templates)}
        rates.bucket = None if data["bucket"] is None else int(data["bucket"])
        rates.counts = [float(c) for c in data["counts"]]
        rates.closed = int(data["closed"])
        rates.detector = detectors.restore(data["detector"])
        if len(rates.counts) != len(rates.templates):
            raise ValueError("template rate lists disagree")
        return rates

    def state_size(self) -> int:
        return self.detector.state_size() + 16 * len(self.templates) + 32

"""Flatline: a sensor that repeats the same value for longer than it ever does.

A stuck sensor (frozen ADC, dead transmitter repeating its last value, a gateway
forward-filling) produces no outlier at all: every value is plausible. What is
implausible is the *run*: a noisy analogue signal almost never repeats a value
exactly. The detector models repeats as a two-state Markov chain per channel: it
learns the probability ``p`` that a sample equals the previous one (a Beta(1,
1)-smoothed frequency, exponentially forgotten) and the probability ``p1`` that it does
so again right after a repeat, and scores a run of ``r`` repeats by the probability of
a run at least that long, ``p * p1 ** (r - 1)``. Quantised or genuinely constant
channels learn a large ``p`` and stay quiet. Why two states: a slowly moving quantised
sensor repeats in runs (``p1`` well above ``p``); the independent-repeat model
``p ** r`` called its ordinary runs rare (on SKAB's anomaly-free pumps it alone gave
16x the target alert rate at 1e-4).

``p1`` is learned from *finished* runs only, so a sensor stuck right now cannot teach
the model that long runs are normal while it is being scored; with no finished runs
yet ``p1`` is ``p`` (two pseudo-samples), the independent-repeat model.

Reference: the run-length test of a Bernoulli sequence; see W. Feller, "An
Introduction to Probability Theory and Its Applications", vol. 1, ch. XIII (runs).
Stuck-sensor detection by run length is standard in sensor data validation, e.g.
Mourad & Bertrand-Krajewski, "A method for automatic validation of long time series
of data in urban hydrology", Water Science & Technology 45(4-5), 2002.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detectors._arrays import pack, tail_to_score, unpack
from detectors.base import UnivariateDetector
from detectors.registry import register


@register("flatline")
class Flatline(UnivariateDetector):
    """Scores runs of exactly repeated values by their improbability.

    Parameters
    ----------
    alpha
        Forgetting factor of the repeat probability (memory about ``1 / alpha``).
    warmup
        Samples learned before scores are given.
    tolerance
        Values closer than this (absolute) count as a repeat.

    Notes
    -----
    Cost per update: O(d). State: 6 floats per channel. Use it beside any
    value-based detector: it is the one that sees stuck sensors. It cannot see a
    sensor stuck at a value that keeps moving (e.g. one that replays old data).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = Flatline(warmup=50)
    >>> det.learn_many(rng.normal(0, 1, 500))
    >>> for _ in range(4):
    ...     det.learn_one(0.25)
    >>> det.score_one(0.25) > 0.9999   # the 5th identical value in a row
    True
    >>> det.score_one(0.3) == 0.0
    True
    """

    channel_state = ("_n", "_last", "_run", "_p", "_s1", "_n1")

    def __init__(self, alpha: float = 0.001, warmup: int = 100, tolerance: float = 0.0) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        if warmup < 1 or tolerance < 0:
            raise ValueError("warmup must be >= 1 and tolerance >= 0")
        self.alpha = float(alpha)
        self.warmup = int(warmup)
        self.tolerance = float(tolerance)
        self._n: np.ndarray | None = None
        self._last: np.ndarray | None = None
        self._run: np.ndarray | None = None  # repeats of the last value so far
        self._p: np.ndarray | None = None  # smoothed repeat probability
        self._s1: np.ndarray | None = None  # repeats that followed a repeat (finished runs)
        self._n1: np.ndarray | None = None  # samples that followed a repeat (finished runs)

    def params(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "warmup": self.warmup, "tolerance": self.tolerance}

    @classmethod
    def conformance_faults(cls) -> dict[str, Any]:
        """What the shared conformance test should inject: a stuck sensor, its job."""
        return {"faults": ("stuck",)}

    @property
    def n_channels(self) -> int:
        return 0 if self._n is None else len(self._n)

    def grow(self, d: int) -> None:
        if self._n is None or d <= len(self._n):
            return
        k = d - len(self._n)
        assert self._last is not None and self._run is not None and self._p is not None
        assert self._s1 is not None and self._n1 is not None
        self._s1 = np.concatenate([self._s1, np.zeros(k)])
        self._n1 = np.concatenate([self._n1, np.zeros(k)])
        self._n = np.concatenate([self._n, np.zeros(k, dtype=np.int64)])
        self._last = np.concatenate([self._last, np.full(k, np.nan)])
        self._run = np.concatenate([self._run, np.zeros(k)])
        self._p = np.concatenate([self._p, np.full(k, 0.5)])

    def _ensure(self, d: int) -> None:
        if self._n is None:
            self._n = np.zeros(d, dtype=np.int64)
            self._last = np.full(d, np.nan)
            self._run = np.zeros(d)
            self._p = np.full(d, 0.5)
            self._s1 = np.zeros(d)
            self._n1 = np.zeros(d)
        elif len(self._n) != d:
            raise ValueError(f"this detector has {len(self._n)} channels, got {d}")

    def _repeats(self, x: np.ndarray) -> np.ndarray:
        assert self._last is not None
        with np.errstate(invalid="ignore"):
            return np.abs(x - self._last) <= self.tolerance

    def _score_vector(self, x: np.ndarray) -> np.ndarray:
        self._ensure(len(x))
        assert self._n is not None and self._run is not None and self._p is not None
        rep = self._repeats(x) & np.isfinite(x) & (self._n >= self.warmup)
        tail = np.where(rep, self._p * self._p1() ** self._run, 1.0)
        return tail_to_score(tail)

    def _p1(self) -> np.ndarray:
        assert self._s1 is not None and self._n1 is not None and self._p is not None
        return (self._s1 + 2.0 * self._p) / (self._n1 + 2.0)

    def _surprise_vector(self, x: np.ndarray) -> np.ndarray:
        self._ensure(len(x))
        assert self._n is not None and self._run is not None and self._p is not None
        rep = self._repeats(x) & np.isfinite(x) & (self._n >= self.warmup)
        log_tail = np.log10(self._p) + self._run * np.log10(self._p1())
        return np.where(rep, -log_tail, 0.0)

    def _learn_vector(self, x: np.ndarray) -> None:
        self._ensure(len(x))
        assert self._n is not None and self._last is not None
        assert self._run is not None and self._p is not None
        assert self._s1 is not None and self._n1 is not None
        ok = np.isfinite(x)
        seen = ok & np.isfinite(self._last)
        rep = self._repeats(x) & seen
        # Beta(1, 1) prior: after n samples with m repeats, p = (m + 1) / (n + 2); then
        # exponential forgetting so a channel whose resolution changes re-learns.
        a = np.maximum(self.alpha, 1.0 / (self._n + 2.0))
        self._p = np.where(seen, (1 - a) * self._p + a * rep, self._p)
        # A run of r repeats ends: r samples followed a repeat, r - 1 of them repeats.
        ended = seen & ~rep & (self._run > 0)
        decay = (1.0 - self.alpha) ** self._run
        self._s1 = np.where(ended, self._s1 * decay + self._run - 1.0, self._s1)
        self._n1 = np.where(ended, self._n1 * decay + self._run, self._n1)
        self._run = np.where(ok, np.where(rep, self._run + 1, 0.0), self._run)
        self._last = np.where(ok, x, self._last)
        self._n = self._n + ok

    def _get_state(self) -> dict[str, Any]:
        return {
            "n": pack(self._n),
            "last": pack(self._last),
            "run": pack(self._run),
            "p": pack(self._p),
            "s1": pack(self._s1),
            "n1": pack(self._n1),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self._n = unpack(state["n"])
        self._last = unpack(state["last"])
        self._run = unpack(state["run"])
        self._p = unpack(state["p"])
        # snapshots from before the two-state model: no finished runs (independent repeats)
        d = 0 if self._p is None else len(self._p)
        self._s1 = unpack(state["s1"]) if "s1" in state else np.zeros(d)
        self._n1 = unpack(state["n1"]) if "n1" in state else np.zeros(d)

    def state_size(self) -> int:
        arrays = (self._n, self._last, self._run, self._p, self._s1, self._n1)
        return sum(a.nbytes for a in arrays if a is not None)

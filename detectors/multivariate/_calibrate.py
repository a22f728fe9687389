"""Rank calibration: raw anomaly scores to ``[0, 1]`` against a window of recent ones.

Detectors whose raw score has no known null distribution (Half-Space Trees masses,
LODA log densities) map it to the shared score scale ``1 - tail probability`` by
comparing it with the last ``size`` raw scores:

* below the ``tail_frac`` upper quantile ``u`` of the window, the score is the mid-rank
  fraction ``(below + ties / 2) / n`` of window values under the raw score;
* above ``u``, the tail is extrapolated with an exponential (a generalised Pareto
  tail with shape 0; Pickands–Balkema–de Haan): ``tail = tail_frac * exp(-(raw - u) /
  β)`` with ``β`` the mean excess of the window over ``u``. Without it every point beyond
  the window maximum would get the same score ``1 - 1/n``, and extreme-value thresholds
  downstream would see a flat ceiling.

The window includes anomalies that were scored (no gating, so the calibration cannot
lock itself out after a regime change); with anomalies rare this barely moves it.

Cost per update: ``O(size)`` memory moves (a sorted list insert and delete, in C) and
``O(size * tail_frac)`` for the mean excess. State: ``size`` floats.

Examples
--------
>>> cal = RankCalibrator(size=100, min_count=10)
>>> for v in range(100):
...     cal.update(float(v))
>>> round(cal.score(49.5), 2)
0.5
>>> cal.score(1000.0) > 0.9999
True
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from typing import Any

import numpy as np

from detectors._arrays import pack, unpack


class RankCalibrator:
    """Empirical-CDF calibration of raw scores (higher raw = more anomalous).

    Parameters
    ----------
    size
        Number of recent raw scores kept.
    min_count
        Scores are 0 until this many raw scores were seen.
    tail_frac
        Fraction of the window above which the exponential tail takes over.
    """

    def __init__(self, size: int = 512, min_count: int = 32, tail_frac: float = 0.05) -> None:
        if size < 2 or min_count < 1:
            raise ValueError("size must be >= 2 and min_count >= 1")
        if not 0.0 < tail_frac < 1.0:
            raise ValueError("tail_frac must be in (0, 1)")
        self.size = int(size)
        self.min_count = int(min_count)
        self.tail_frac = float(tail_frac)
        self._fifo: deque[float] = deque()
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._sorted)

    def score(self, raw: float) -> float:
        """Calibrated score of ``raw`` in ``[0, 1]`` (0 while warming up or if not finite)."""
        s = self._sorted
        n = len(s)
        if n < self.min_count or math.isnan(raw):
            return 0.0
        k = max(1, int(self.tail_frac * n))
        u = s[n - k - 1] if n > k else s[0]
        tol = 1e-9 * (1.0 + abs(u))
        if raw > u + tol:
            top = s[n - k :]
            beta = sum(top) / k - u
            if beta <= tol:  # the window's tail is flat: anything above it is new
                return 1.0
            tail = (k / n) * math.exp(-(raw - u) / beta)
            return min(1.0, max(0.0, 1.0 - tail))
        lo = bisect.bisect_left(s, raw - tol)
        hi = bisect.bisect_right(s, raw + tol)
        return (lo + 0.5 * (hi - lo)) / n

    def update(self, raw: float) -> None:
        """Add ``raw`` to the window, dropping the oldest value once full."""
        if not math.isfinite(raw):
            return
        if len(self._fifo) >= self.size:
            old = self._fifo.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._fifo.append(raw)
        bisect.insort(self._sorted, raw)

    def score_update(self, raw: float) -> float:
        """Score ``raw``, then add it to the window."""
        out = self.score(raw)
        self.update(raw)
        return out

    def get_state(self) -> dict[str, Any]:
        """JSON-safe state: the window in arrival order."""
        return {"window": pack(np.asarray(self._fifo, dtype=np.float64))}

    def set_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`get_state`."""
        window = unpack(state["window"])
        values = [] if window is None else [float(v) for v in window.ravel()]
        if len(values) > self.size or not all(math.isfinite(v) for v in values):
            raise ValueError("calibration window too long or not finite")
        self._fifo = deque(values)
        self._sorted = sorted(values)

    def state_size(self) -> int:
        """Bytes of state (8 per kept raw score)."""
        return 8 * len(self._fifo)

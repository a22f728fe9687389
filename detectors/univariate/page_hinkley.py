"""Page-Hinkley test: cumulative deviation from the running mean of the current segment.

Unlike CUSUM, which compares each sample with a learned baseline, Page-Hinkley compares
it with the mean of everything seen since the last change, so it needs no baseline
location, only a scale. On the standardised value ``z_t`` with running mean
``zbar_t`` (since the last restart) the upward statistic is::

    m_t = sum_{i <= t} (z_i - zbar_i - delta),   PH+_t = m_t - min_{i <= t} m_i

and the downward one mirrors it. A statistic above ``threshold`` (Hinkley's
``lambda``) signals a change; the test then restarts (new segment, new mean).

Tail model of the score: in control ``PH+`` is a random walk with drift ``-delta``
reflected at its running minimum, whose stationary tail is Siegmund's
``exp(-2 delta (s + 0.583))`` (see :mod:`detectors.univariate.cusum`); the score is
``1 - min(1, 2 * tail(max(PH+, PH-)))``. Right after a restart the running mean is noisy and the
statistic a little more variable than the model says.

References: E. S. Page, "Continuous Inspection Schemes", Biometrika 41(1/2), 1954;
D. V. Hinkley, "Inference about the change-point from cumulative sum tests",
Biometrika 58(3), 1971.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detectors._arrays import pack, tail_to_score, unpack
from detectors.base import UnivariateDetector
from detectors.registry import register
from detectors.univariate.cusum import reflected_walk_tail
from detectors.univariate.robust_zscore import RobustZScore


@register("page_hinkley")
class PageHinkley(UnivariateDetector):
    """Two-sided Page-Hinkley change test of each channel (scale-free).

    Parameters
    ----------
    delta
        Tolerated drift per sample, in sigmas (the slack, like CUSUM's ``k``).
    threshold
        Hinkley's ``lambda`` in sigmas: a statistic above it signals and restarts.
    scale_alpha
        Forgetting factor of the robust scale that standardises the values.
    clip
        Huber constant of the scale estimate.
    warmup
        Samples learned before the test runs and scores are given.
    min_scale
        Floor of the scale.

    Notes
    -----
    Cost per update: O(d). State: 8 floats and 2 counters per channel.
    Use it for concept-drift style changes of the mean when there is no trustworthy
    baseline (the reference is the current segment), e.g. after a redeploy. Do not use
    it for spikes, seasonal or autocorrelated series, or for slow drifts shorter than
    the segment it has averaged (the running mean absorbs them).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> det = PageHinkley()
    >>> det.learn_many(rng.normal(10.0, 2.0, 500))
    >>> s = det.score_learn_many(rng.normal(8.0, 2.0, 60))  # a 1-sigma drop
    >>> bool(s.max() > 0.99)
    True
    """

    def __init__(
        self,
        delta: float = 0.25,
        threshold: float = 10.0,
        scale_alpha: float = 0.005,
        clip: float = 3.0,
        warmup: int = 50,
        min_scale: float = 1e-9,
    ) -> None:
        if delta <= 0 or threshold <= 0:
            raise ValueError("delta and threshold must be positive")
        self.delta = float(delta)
        self.threshold = float(threshold)
        self._base = RobustZScore(alpha=scale_alpha, clip=clip, warmup=warmup, min_scale=min_scale)
        self._count: np.ndarray | None = None  # samples in the current segment
        self._mean: np.ndarray | None = None  # running mean of z in the segment
        self._m_up: np.ndarray | None = None
        self._min_up: np.ndarray | None = None
        self._m_dn: np.ndarray | None = None
        self._min_dn: np.ndarray | None = None
        self._alarms: np.ndarray | None = None

    def params(self) -> dict[str, Any]:
        base = self._base.params()
        return {
            "delta": self.delta,
            "threshold": self.threshold,
            "scale_alpha": base["alpha"],
            "clip": base["clip"],
            "warmup": base["warmup"],
            "min_scale": base["min_scale"],
        }

    _FIELDS = ("_count", "_mean", "_m_up", "_min_up", "_m_dn", "_min_dn", "_alarms")

    def _ensure(self, d: int) -> None:
        self._base._ensure(d)
        if self._count is None:
            self._count = np.zeros(d, dtype=np.int64)
            self._alarms = np.zeros(d, dtype=np.int64)
            self._mean = np.zeros(d)
            self._m_up = np.zeros(d)
            self._min_up = np.zeros(d)
            self._m_dn = np.zeros(d)
            self._min_dn = np.zeros(d)

    @property
    def alarms(self) -> np.ndarray:
        """How many times each channel has signalled."""
        return np.zeros(0, np.int64) if self._alarms is None else self._alarms.copy()

    def expected(self) -> tuple[np.ndarray, np.ndarray]:
        """Location and scale of each channel (for "expected value" bands)."""
        return self._base.expected()

    def _next(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The test's fields after ``x`` (unchanged where ``x`` is not learnable)."""
        assert self._count is not None and self._mean is not None
        assert self._m_up is not None and self._min_up is not None
        assert self._m_dn is not None and self._min_dn is not None
        assert self._base._n is not None
        z = self._base.zscores(x)
        run = np.isfinite(x) & (self._base._n >= self._base.warmup)
        count = self._count + run
        mean = np.where(run, self._mean + (z - self._mean) / np.maximum(count, 1), self._mean)
        m_up = np.where(run, self._m_up + z - mean - self.delta, self._m_up)
        m_dn = np.where(run, self._m_dn - z + mean - self.delta, self._m_dn)
        return {
            "_count": count,
            "_mean": mean,
            "_m_up": m_up,
            "_min_up": np.minimum(self._min_up, m_up),
            "_m_dn": m_dn,
            "_min_dn": np.minimum(self._min_dn, m_dn),
        }

    def _score_vector(self, x: np.ndarray) -> np.ndarray:
        self._ensure(len(x))
        f = self._next(x)
        up = f["_m_up"] - f["_min_up"]
        dn = f["_m_dn"] - f["_min_dn"]
        tail = 2.0 * reflected_walk_tail(np.maximum(up, dn), self.delta)
        return np.where(np.isfinite(x), tail_to_score(tail), 0.0)

    def _learn_vector(self, x: np.ndarray) -> None:
        self._ensure(len(x))
        assert self._alarms is not None
        f = self._next(x)
        signal = (f["_m_up"] - f["_min_up"] > self.threshold) | (
            f["_m_dn"] - f["_min_dn"] > self.threshold
        )
        self._alarms = self._alarms + signal
        for name, value in f.items():
            # A signal starts a new segment: every field of the test restarts at 0.
            setattr(self, name, np.where(signal, np.zeros_like(value), value))
        self._base._learn_vector(x)

    def _get_state(self) -> dict[str, Any]:
        state = {name.lstrip("_"): pack(getattr(self, name)) for name in self._FIELDS}
        state["base"] = self._base._get_state()
        return state

    def _set_state(self, state: dict[str, Any]) -> None:
        self._base._set_state(state["base"])
        for name in self._FIELDS:
            setattr(self, name, unpack(state[name.lstrip("_")]))

    def state_size(self) -> int:
        own = sum(getattr(self, n).nbytes for n in self._FIELDS if getattr(self, n) is not None)
        return self._base.state_size() + own

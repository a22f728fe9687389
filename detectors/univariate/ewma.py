"""EWMA control chart: an exponentially weighted mean watched against a baseline.

The chart statistic ``w_t = lam * x_t + (1 - lam) * w_{t-1}`` averages away noise, so
a small sustained shift of the mean stands out sooner than in any single sample. For
i.i.d. in-control data with mean ``mu`` and deviation ``sigma`` its asymptotic variance
is ``lam / (2 - lam) * sigma**2``; the score is the two-sided normal tail of
``(w_t - mu) / (sigma * sqrt(lam / (2 - lam)))``.

The baseline ``mu, sigma`` is a slow robust exponentially weighted estimate
(:class:`~detectors.univariate.robust_zscore.RobustZScore` with a small ``alpha``), so
the chart follows slow drift but a fault lasting far fewer than ``1 / baseline_alpha``
samples does not absorb itself.

References: S. W. Roberts, "Control Chart Tests Based on Geometric Moving Averages",
Technometrics 1(3), 1959; J. M. Lucas and M. S. Saccucci, "Exponentially Weighted Moving
Average Control Schemes: Properties and Enhancements", Technometrics 32(1), 1990.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from detectors._arrays import normal_two_sided_tail, pack, tail_to_score, unpack
from detectors.base import UnivariateDetector
from detectors.registry import register
from detectors.univariate.robust_zscore import RobustZScore


@register("ewma")
class EWMAChart(UnivariateDetector):
    """EWMA control chart of each channel against a slow robust baseline.

    Parameters
    ----------
    lam
        Chart smoothing ``lambda`` in ``(0, 1]``: small values (0.05-0.2) catch small
        sustained shifts; ``lam = 1`` is a plain Shewhart z-chart.
    baseline_alpha
        Forgetting factor of the robust baseline (memory about ``1 / baseline_alpha``).
    clip
        Huber constant of the baseline.
    warmup
        Samples learned before scores are given (scores are 0 meanwhile).
    min_scale
        Floor of the baseline scale, so a constant channel does not divide by zero.

    Notes
    -----
    Cost per update: O(d). State: 5 floats and 1 counter per channel.
    Use it for small persistent mean shifts (about 0.5-2 sigma) in stationary noise,
    where a single-sample z-score is too noisy. Do not use it on seasonal signals
    (the cycle itself is a "shift"; see ``seasonal`` / ``forecast``), for isolated spikes
    (a spike moves the chart only by ``lam`` times its size) or on autocorrelated
    series (the variance formula assumes independence, so scores run high).

    Successive scores are strongly correlated (the chart has memory about
    ``2 / lam`` samples); the marginal score is what is calibrated.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> det = EWMAChart(lam=0.1)
    >>> for v in rng.normal(5.0, 1.0, 400):
    ...     det.learn_one(v)
    >>> det.score_one(5.0) < 0.9
    True
    >>> scores = [det.score_learn_one(v) for v in rng.normal(6.0, 1.0, 30)]  # +1 sigma
    >>> max(scores) > 0.999
    True
    """

    def __init__(
        self,
        lam: float = 0.1,
        baseline_alpha: float = 0.005,
        clip: float = 3.0,
        warmup: int = 50,
        min_scale: float = 1e-9,
    ) -> None:
        if not 0.0 < lam <= 1.0:
            raise ValueError("lam must be in (0, 1]")
        self.lam = float(lam)
        self._base = RobustZScore(
            alpha=baseline_alpha, clip=clip, warmup=warmup, min_scale=min_scale
        )
        # Asymptotic standard deviation of the chart, in units of sigma.
        self._chart_sd = math.sqrt(self.lam / (2.0 - self.lam))
        self._w: np.ndarray | None = None  # chart statistic (0 until a channel's first sample)

    def params(self) -> dict[str, Any]:
        base = self._base.params()
        return {
            "lam": self.lam,
            "baseline_alpha": base["alpha"],
            "clip": base["clip"],
            "warmup": base["warmup"],
            "min_scale": base["min_scale"],
        }

    def _ensure(self, d: int) -> None:
        self._base._ensure(d)
        if self._w is None:
            self._w = np.zeros(d)

    def _next_chart(self, x: np.ndarray) -> np.ndarray:
        """The chart after learning ``x`` (unchanged where ``x`` is not finite)."""
        assert self._w is not None and self._base._n is not None
        ok = np.isfinite(x)
        fresh = ok & (self._base._n == 0)  # the chart starts at the first value
        w = np.where(ok, self.lam * x + (1.0 - self.lam) * self._w, self._w)
        return np.where(fresh, x, w)

    def expected(self) -> tuple[np.ndarray, np.ndarray]:
        """Baseline location and scale of each channel (for "expected value" bands)."""
        return self._base.expected()

    def chart_zscores(self, x: np.ndarray) -> np.ndarray:
        """Standardised chart statistic if ``x`` were learned (0 until warmed up)."""
        self._ensure(len(x))
        assert self._base._n is not None
        loc, scale = self._base.expected()
        z = (self._next_chart(x) - loc) / (scale * self._chart_sd)
        ok = np.isfinite(x) & (self._base._n >= self._base.warmup)
        return np.where(ok, z, 0.0)

    def _score_vector(self, x: np.ndarray) -> np.ndarray:
        return tail_to_score(normal_two_sided_tail(self.chart_zscores(x)))

    def _learn_vector(self, x: np.ndarray) -> None:
        self._ensure(len(x))
        self._w = self._next_chart(x)
        self._base._learn_vector(x)

    def _get_state(self) -> dict[str, Any]:
        return {"base": self._base._get_state(), "w": pack(self._w)}

    def _set_state(self, state: dict[str, Any]) -> None:
        self._base._set_state(state["base"])
        self._w = unpack(state["w"])

    def state_size(self) -> int:
        return self._base.state_size() + (self._w.nbytes if self._w is not None else 0)

"""Robust online z-score: Huber-weighted exponential location and scale.

A classic exponentially weighted z-score is dragged by the very outliers it should
flag: one spike inflates the variance and hides the next. Here each update clips the
standardised residual at ``c`` (Huber's psi function), so a single point can move the
location by at most ``alpha * c * scale``, while a real level shift still wins after
about ``1 / alpha`` samples.

Reference: P. J. Huber, "Robust Estimation of a Location Parameter", Annals of
Mathematical Statistics 35(1), 1964; the exponentially weighted recursion is the
robust EWMA of Cipra, "Robust exponential smoothing", Journal of Forecasting 11(1), 1992.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detectors._arrays import normal_two_sided_tail, pack, tail_to_score, unpack
from detectors.base import UnivariateDetector
from detectors.registry import register


@register("robust_zscore")
class RobustZScore(UnivariateDetector):
    """Robust exponentially weighted z-score of each channel.

    Parameters
    ----------
    alpha
        Forgetting factor: the model's memory is about ``1 / alpha`` samples.
    clip
        Huber constant ``c``: residuals beyond ``c`` scales count as ``c``.
    warmup
        Samples learned before scores are given (plain mean/variance initialise the
        robust estimates; scores are 0 meanwhile).
    min_scale
        Floor of the scale, so a constant channel does not divide by zero.

    Notes
    -----
    Cost per update: O(d) for d channels. State: 4 floats and 1 counter per channel.
    Use it for stationary or slowly drifting sensors with spikes and level shifts.
    Do not use it for strong daily cycles (see ``seasonal``) or to detect that a sensor
    is stuck (variance collapse is not an outlier; see ``cusum`` / ``page_hinkley``).

    Scores are ``1 - P(|Z| >= |z|)`` under a normal model of the residual.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = RobustZScore(alpha=0.02, warmup=50)
    >>> for v in rng.normal(10.0, 1.0, 500):
    ...     det.learn_one(v)
    >>> round(det.score_one(10.2), 2) < 0.5
    True
    >>> det.score_one(18.0) > 0.9999
    True
    """

    channel_state = ("_n", "_loc", "_var")

    def __init__(
        self,
        alpha: float = 0.01,
        clip: float = 3.0,
        warmup: int = 30,
        min_scale: float = 1e-9,
    ) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        if clip <= 0:
            raise ValueError("clip must be positive")
        if warmup < 2:
            raise ValueError("warmup must be at least 2")
        self.alpha = float(alpha)
        self.clip = float(clip)
        self.warmup = int(warmup)
        self.min_scale = float(min_scale)
        self._n: np.ndarray | None = None  # samples learned per channel
        self._loc: np.ndarray | None = None
        self._var: np.ndarray | None = None  # EW winsorised variance (Welford M2 during warm-up)

    def params(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "clip": self.clip,
            "warmup": self.warmup,
            "min_scale": self.min_scale,
        }

    def _ensure(self, d: int) -> None:
        if self._n is None:
            self._n = np.zeros(d, dtype=np.int64)
            self._loc = np.zeros(d)
            self._var = np.zeros(d)
        elif len(self._n) != d:
            raise ValueError(f"this detector has {len(self._n)} channels, got {d}")

    @property
    def n_channels(self) -> int:
        return 0 if self._n is None else len(self._n)

    def grow(self, d: int) -> None:
        if self._n is None or d <= len(self._n):
            return
        extra = d - len(self._n)
        assert self._loc is not None and self._var is not None
        self._n = np.concatenate([self._n, np.zeros(extra, dtype=np.int64)])
        self._loc = np.concatenate([self._loc, np.zeros(extra)])
        self._var = np.concatenate([self._var, np.zeros(extra)])

    def prime(self, channel: int, loc: float, scale: float) -> None:
        """Start ``channel`` warmed up at ``loc`` and ``scale``: a prior, not a warm-up.

        For a channel that appears late but whose normal is known, e.g. a new log
        template's rate (zero until now) or a new device of a known kind.
        """
        if self._n is None or not 0 <= channel < len(self._n):
            raise ValueError(f"no channel {channel}")
        assert self._loc is not None and self._var is not None
        self._n[channel] = max(int(self._n[channel]), self.warmup)
        self._loc[channel] = float(loc)
        self._var[channel] = float(scale) ** 2

    def _scale(self) -> np.ndarray:
        assert self._n is not None and self._var is not None
        n = self._n
        warm = n >= self.warmup
        var = np.where(warm, self._var, self._var / np.maximum(n - 1, 1))
        return np.maximum(np.sqrt(np.maximum(var, 0.0)), self.min_scale)

    def expected(self) -> tuple[np.ndarray, np.ndarray]:
        """The current location and scale of each channel (for "expected value" bands)."""
        if self._loc is None:
            return np.empty(0), np.empty(0)
        return self._loc.copy(), self._scale()

    def zscores(self, x: np.ndarray) -> np.ndarray:
        """Signed robust z-scores of ``x`` (0 where not warmed up or not finite)."""
        self._ensure(len(x))
        assert self._n is not None and self._loc is not None
        z = (x - self._loc) / self._scale()
        ok = np.isfinite(x) & (self._n >= self.warmup)
        return np.where(ok, z, 0.0)

    def _score_vector(self, x: np.ndarray) -> np.ndarray:
        return tail_to_score(normal_two_sided_tail(self.zscores(x)))

    def _learn_vector(self, x: np.ndarray) -> None:
        self._ensure(len(x))
        assert self._n is not None and self._loc is not None and self._var is not None
        ok = np.isfinite(x)
        if not ok.any():
            return
        xs = np.where(ok, x, 0.0)
        warming = ok & (self._n < self.warmup)
        steady = ok & ~warming
        if warming.any():
            # Welford's running mean and M2 initialise the robust recursion.
            n1 = self._n + 1
            delta = xs - self._loc
            loc = self._loc + delta / n1
            m2 = self._var + delta * (xs - loc)
            done = warming & (n1 == self.warmup)
            m2 = np.where(done, m2 / np.maximum(n1 - 1, 1), m2)  # M2 -> variance at the switch
            self._loc = np.where(warming, loc, self._loc)
            self._var = np.where(warming, m2, self._var)
        if steady.any():
            scale = self._scale()
            r = (xs - self._loc) / scale
            psi = np.clip(r, -self.clip, self.clip)
            a = self.alpha
            self._loc = np.where(steady, self._loc + a * scale * psi, self._loc)
            self._var = np.where(steady, (1 - a) * self._var + a * (scale * psi) ** 2, self._var)
        self._n = self._n + ok

    def _get_state(self) -> dict[str, Any]:
        return {"n": pack(self._n), "loc": pack(self._loc), "var": pack(self._var)}

    def _set_state(self, state: dict[str, Any]) -> None:
        self._n = unpack(state["n"])
        self._loc = unpack(state["loc"])
        self._var = unpack(state["var"])

    def state_size(self) -> int:
        return sum(a.nbytes for a in (self._n, self._loc, self._var) if a is not None)

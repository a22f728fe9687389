"""Predictive detector: an online AR(p) forecast per channel, scored by its residual.

Each channel is forecast one step ahead by an autoregression with intercept,
``xhat_t = w0 + w1 x_{t-1} + ... + wp x_{t-p}``, whose weights are fitted online by
recursive least squares (RLS) with exponential forgetting ``lam``: the weights minimise
``sum_i lam^(t-i) e_i^2``, so they follow slowly changing dynamics. The score is the
two-sided normal tail of the residual standardised by a robust exponentially weighted
residual scale. Residuals beyond ``clip`` scales are clipped before they update the
weights (Huber-RLS), so one spike does not bend the model.

The residual scale has a floor relative to the signal's own spread (its exponentially
weighted mean absolute deviation). Without it, a noiseless signal with routine jumps
(a square wave) drives the clipped scale towards zero between the jumps, so each jump
looks more surprising than the last and no threshold learned from the past holds: the
floor is the signal's effective resolution.

A forecaster captures what a location/scale baseline cannot: trends, smooth cycles
and autocorrelation. It flags samples the recent dynamics did not predict, including a
change of the dynamics itself (e.g. a sensor starting to oscillate or to freeze).

Reference: S. Haykin, "Adaptive Filter Theory", 4th ed., Prentice Hall 2002, ch. 9
(exponentially weighted RLS); the robust clipping follows Huber (1964).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detectors._arrays import (
    normal_two_sided_surprise,
    normal_two_sided_tail,
    pack,
    tail_to_score,
    unpack,
)
from detectors.base import UnivariateDetector
from detectors.registry import register


@register("forecast")
class ARForecast(UnivariateDetector):
    """Online AR(p) forecaster per channel (RLS with forgetting); scores the residual.

    Parameters
    ----------
    order
        Autoregressive order ``p``.
    forgetting
        RLS forgetting factor ``lam`` in ``(0, 1]``; memory about ``1 / (1 - lam)``.
    scale_alpha
        Forgetting factor of the robust residual scale.
    clip
        Huber constant: residuals beyond ``clip`` scales update weights and scale as
        ``clip`` scales.
    warmup
        Samples learned before scores are given (``order`` of them fill the lags).
    delta
        Initial ``P = I / delta``: a small ``delta`` lets the first samples move the
        weights freely.
    min_scale
        Absolute floor of the residual scale.
    rel_min_scale
        Floor of the residual scale as a fraction of the signal's mean absolute deviation
        (tracked with forgetting ``spread_alpha``); 0 disables it.
    spread_alpha
        Forgetting factor of the signal's mean and mean absolute deviation.

    Notes
    -----
    Cost per update: O(d p^2). State: ``(p + 1)^2 + 2p + 6`` floats per channel.
    Use it for autocorrelated, trending or smoothly cyclic signals, and to catch changes
    of dynamics. Do not use it on white noise (a z-score is cheaper and as good), when
    the cycle is longer than about ``p`` samples and sharp-edged (use ``seasonal``), or
    with ``forgetting`` far below 1 on long gaps of a constant value (RLS "wind-up":
    ``P`` grows when the regressors carry no new information; a cap on the trace of
    ``P`` bounds it here).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(5)
    >>> t = np.arange(2000)
    >>> x = np.sin(2 * np.pi * t / 50) + rng.normal(0.0, 0.05, len(t))
    >>> det = ARForecast(order=3)
    >>> det.learn_many(x)
    >>> loc, scale = det.expected()  # the forecast of the next sample and its scale
    >>> bool(abs(loc[0] - np.sin(2 * np.pi * 2000 / 50)) < 0.2)
    True
    >>> det.score_one(float(loc[0]) + 1.0) > 0.999  # 1.0 off a forecast good to ~0.05
    True
    """

    channel_state = ("_n", "_lags", "_w", "_P", "_var", "_mean", "_spread")

    def __init__(
        self,
        order: int = 4,
        forgetting: float = 0.999,
        scale_alpha: float = 0.01,
        clip: float = 3.0,
        warmup: int = 50,
        delta: float = 1e-2,
        min_scale: float = 1e-9,
        rel_min_scale: float = 1e-3,
        spread_alpha: float = 1e-3,
    ) -> None:
        if order < 1:
            raise ValueError("order must be at least 1")
        if not 0.0 < forgetting <= 1.0:
            raise ValueError("forgetting must be in (0, 1]")
        if not 0.0 < scale_alpha < 1.0:
            raise ValueError("scale_alpha must be in (0, 1)")
        if warmup <= order:
            raise ValueError("warmup must exceed order")
        if not 0.0 <= rel_min_scale < 1.0:
            raise ValueError("rel_min_scale must be in [0, 1)")
        if not 0.0 < spread_alpha < 1.0:
            raise ValueError("spread_alpha must be in (0, 1)")
        self.order = int(order)
        self.forgetting = float(forgetting)
        self.scale_alpha = float(scale_alpha)
        self.clip = float(clip)
        self.warmup = int(warmup)
        self.delta = float(delta)
        self.min_scale = float(min_scale)
        self.rel_min_scale = float(rel_min_scale)
        self.spread_alpha = float(spread_alpha)
        self._n: np.ndarray | None = None  # samples learned per channel
        self._lags: np.ndarray | None = None  # (d, p): x_{t-1}, ..., x_{t-p}
        self._w: np.ndarray | None = None  # (d, p + 1): intercept, then lag weights
        self._P: np.ndarray | None = None  # (d, p + 1, p + 1): inverse correlation matrix
        self._var: np.ndarray | None = None  # EW residual variance (running mean when young)
        self._mean: np.ndarray | None = None  # EW mean of the signal
        self._spread: np.ndarray | None = None  # EW mean absolute deviation of the signal

    def params(self) -> dict[str, Any]:
        return {
            "order": self.order,
            "forgetting": self.forgetting,
            "scale_alpha": self.scale_alpha,
            "clip": self.clip,
            "warmup": self.warmup,
            "delta": self.delta,
            "min_scale": self.min_scale,
            "rel_min_scale": self.rel_min_scale,
            "spread_alpha": self.spread_alpha,
        }

    def _ensure(self, d: int) -> None:
        if self._n is None:
            k = self.order + 1
            self._n = np.zeros(d, dtype=np.int64)
            self._lags = np.zeros((d, self.order))
            self._w = np.zeros((d, k))
            self._P = np.repeat(np.eye(k)[None] / self.delta, d, axis=0)
            self._var = np.zeros(d)
            self._mean = np.zeros(d)
            self._spread = np.zeros(d)
        elif len(self._n) != d:
            raise ValueError(f"this detector has {len(self._n)} channels, got {d}")

    def _regressors(self) -> np.ndarray:
        assert self._lags is not None
        return np.concatenate([np.ones((self._lags.shape[0], 1)), self._lags], axis=1)

    def _forecast(self) -> np.ndarray:
        assert self._w is not None
        return np.einsum("dk,dk->d", self._w, self._regressors())

    def _scale(self) -> np.ndarray:
        assert self._var is not None and self._spread is not None
        floor = np.maximum(self.rel_min_scale * self._spread, self.min_scale)
        return np.maximum(np.sqrt(self._var), floor)

    def expected(self) -> tuple[np.ndarray, np.ndarray]:
        """One-step forecast of each channel and the residual scale around it."""
        if self._n is None:
            return np.empty(0), np.empty(0)
        return self._forecast(), self._scale()

    def _residual_z(self, x: np.ndarray) -> np.ndarray:
        self._ensure(len(x))
        assert self._n is not None
        with np.errstate(invalid="ignore"):
            z = (x - self._forecast()) / self._scale()
        ok = np.isfinite(x) & (self._n >= self.warmup)
        return np.where(ok, z, 0.0)

    def _score_vector(self, x: np.ndarray) -> np.ndarray:
        return tail_to_score(normal_two_sided_tail(self._residual_z(x)))

    def _surprise_vector(self, x: np.ndarray) -> np.ndarray:
        return normal_two_sided_surprise(self._residual_z(x))

    def _learn_vector(self, x: np.ndarray) -> None:
        self._ensure(len(x))
        assert self._n is not None and self._lags is not None and self._w is not None
        assert self._P is not None and self._var is not None
        assert self._mean is not None and self._spread is not None
        ok = np.isfinite(x)
        if not ok.any():
            return
        xs = np.where(ok, x, 0.0)
        phi = self._regressors()
        scale = self._scale()
        err = xs - np.einsum("dk,dk->d", self._w, phi)
        # Regress only once the lags are filled; the scale only once the weights have
        # seen a few samples (the first residuals are the untrained model's).
        fit = ok & (self._n >= self.order)
        tracked = ok & (self._n >= 2 * self.order + 1)
        young = self._var == 0.0
        psi = np.where(young, err, np.clip(err, -self.clip * scale, self.clip * scale))
        lam = self.forgetting
        Pphi = np.einsum("dij,dj->di", self._P, phi)
        gain = Pphi / (lam + np.einsum("di,di->d", phi, Pphi))[:, None]
        w = self._w + gain * psi[:, None]
        P = (self._P - gain[:, :, None] * Pphi[:, None, :]) / lam
        P = 0.5 * (P + P.transpose(0, 2, 1))  # keep P symmetric against round-off
        # Anti-windup: cap the trace of P at its initial value.
        trace = np.einsum("dii->d", P)
        cap = (self.order + 1) / self.delta
        P = P * np.minimum(1.0, cap / np.maximum(trace, 1e-300))[:, None, None]
        self._w = np.where(fit[:, None], w, self._w)
        self._P = np.where(fit[:, None, None], P, self._P)
        m = np.maximum(self._n - 2 * self.order, 1)
        a = np.maximum(self.scale_alpha, 1.0 / m)
        self._var = np.where(tracked, (1.0 - a) * self._var + a * psi**2, self._var)
        b = np.maximum(self.spread_alpha, 1.0 / (self._n + 1))
        dev = np.abs(xs - self._mean)
        self._spread = np.where(ok, self._spread + b * (dev - self._spread), self._spread)
        self._mean = np.where(ok, self._mean + b * (xs - self._mean), self._mean)
        shifted = np.concatenate([xs[:, None], self._lags[:, :-1]], axis=1)
        self._lags = np.where(ok[:, None], shifted, self._lags)
        self._n = self._n + ok

    def _get_state(self) -> dict[str, Any]:
        return {
            "n": pack(self._n),
            "lags": pack(self._lags),
            "w": pack(self._w),
            "P": pack(self._P),
            "var": pack(self._var),
            "mean": pack(self._mean),
            "spread": pack(self._spread),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self._n = unpack(state["n"])
        self._lags = unpack(state["lags"])
        self._w = unpack(state["w"])
        self._P = unpack(state["P"])
        self._var = unpack(state["var"])
        # Snapshots from before the relative floor: start the spread from nothing.
        lags = unpack(state["lags"])
        assert lags is not None  # a snapshot always holds the lag window
        self._mean = unpack(state["mean"]) if "mean" in state else lags[:, 0].copy()
        self._spread = unpack(state["spread"]) if "spread" in state else np.zeros_like(self._var)

    def state_size(self) -> int:
        arrays = (self._n, self._lags, self._w, self._P, self._var, self._mean, self._spread)
        return sum(a.nbytes for a in arrays if a is not None)

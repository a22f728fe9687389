"""Robust online Mahalanobis distance.

The squared distance ``D² = (x - μ)ᵀ Σ⁻¹ (x - μ)`` of a point from an exponentially
weighted mean and covariance is, for Gaussian data, chi-square with ``d`` degrees of
freedom (Mahalanobis, "On the generalised distance in statistics", Proceedings of the
National Institute of Sciences of India 2(1), 1936). Two changes make it fit a stream:

* Huber-type down-weighting (Huber, "Robust Statistics", 1981, ch. 8; Maronna,
  "Robust M-estimators of multivariate location and scatter", Annals of Statistics
  4(1), 1976): a point with ``D > c`` enters the mean and covariance as if it lay at
  distance ``c`` (weight ``c / D``), so a spike cannot inflate the covariance and mask
  the next one, while a lasting shift is still followed, at a bounded speed.
  ``c² = d + 3√(2d)``, three standard deviations above the mean of ``χ²_d``.
* Shrinkage toward the diagonal, ``(1 - ρ) Σ + ρ diag(Σ)`` (Ledoit & Wolf, "A
  well-conditioned estimator for large-dimensional covariance matrices", Journal of
  Multivariate Analysis 88(2), 2004), so nearly collinear channels stay invertible.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from detectors._arrays import as_vector, pack, unpack
from detectors.base import MultivariateDetector
from detectors.multivariate._special import chi2_sf
from detectors.registry import register


@register("mahalanobis")
class RobustMahalanobis(MultivariateDetector):
    """Huber-weighted, shrunk exponentially weighted Mahalanobis distance.

    Parameters
    ----------
    alpha
        Forgetting factor (memory about ``1 / alpha`` samples).
    shrinkage
        Weight ``ρ`` of the diagonal target in ``(1 - ρ) Σ + ρ diag(Σ)``.
    refresh
        Invert the covariance every ``refresh`` learned samples (every sample during
        warm-up).
    warmup
        Samples learned (plain averages) before scores are given.
    min_scale
        Floor of a channel's standard deviation (constant channels).

    Notes
    -----
    Cost per update: ``O(d²)``, plus an ``O(d³)`` inversion every ``refresh`` samples.
    State: ``2d² + d`` floats (covariance, its shrunk inverse, mean) and a counter:
    1.2 kB for ``d = 8``.

    Use it for roughly elliptical (Gaussian-like) joint behaviour, when any unusual
    combination matters, inside or off the correlation structure. Do not use it on
    multimodal data (a point between two modes looks normal; use ``hst`` or ``loda``),
    or with many more channels than ``1 / alpha`` samples.

    Scores are ``1 - P(χ²_d >= D²)``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(2)
    >>> f = rng.normal(size=(800, 1))
    >>> X = np.hstack([f, 2 * f, rng.normal(size=(800, 1))])
    >>> det = RobustMahalanobis()
    >>> det.learn_many(X)
    >>> det.score_one([1.0, 2.0, 0.0]) < 0.9
    True
    >>> det.score_one([1.0, -2.0, 0.0]) > 0.999
    True
    >>> [round(float(v), 2) for v in det.explain_one([0.0, 0.0, 6.0])]
    [0.0, 0.0, 1.0]
    """

    version: ClassVar[int] = 1

    def __init__(
        self,
        alpha: float = 0.01,
        shrinkage: float = 0.01,
        refresh: int = 10,
        warmup: int = 50,
        min_scale: float = 1e-9,
    ) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        if not 0.0 <= shrinkage <= 1.0:
            raise ValueError("shrinkage must be in [0, 1]")
        if refresh < 1 or warmup < 2:
            raise ValueError("refresh must be >= 1 and warmup >= 2")
        self.alpha = float(alpha)
        self.shrinkage = float(shrinkage)
        self.refresh = int(refresh)
        self.warmup = int(warmup)
        self.min_scale = float(min_scale)
        self._n = 0
        self._mean: np.ndarray | None = None
        self._cov: np.ndarray | None = None
        self._prec: np.ndarray | None = None  # inverse of the shrunk covariance

    def params(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "shrinkage": self.shrinkage,
            "refresh": self.refresh,
            "warmup": self.warmup,
            "min_scale": self.min_scale,
        }

    @classmethod
    def conformance_params(cls) -> dict[str, Any]:
        """Small, fast parameters for the shared conformance tests."""
        return {"alpha": 0.02, "warmup": 30}

    def _check(self, d: int) -> None:
        if self._mean is not None and len(self._mean) != d:
            raise ValueError(f"this detector has {len(self._mean)} channels, got {d}")

    def _ready(self, x: np.ndarray) -> bool:
        return self._n >= self.warmup and bool(np.all(np.isfinite(x)))

    def _d2(self, x: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """``D²``, the deviation ``δ`` and ``Σ⁻¹δ``."""
        assert self._mean is not None and self._prec is not None
        delta = x - self._mean
        pd = self._prec @ delta
        return float(delta @ pd), delta, pd

    def score_one(self, x: Any) -> float:
        vec, _ = as_vector(x)
        self._check(len(vec))
        if not self._ready(vec):
            return 0.0
        d2, _, _ = self._d2(vec)
        return float(min(1.0, max(0.0, 1.0 - chi2_sf(d2, len(vec)))))

    def learn_one(self, x: Any) -> None:
        self._step(x, want_score=False)

    def score_learn_one(self, x: Any) -> float:
        return self._step(x, want_score=True)

    def score_learn_many(self, X: np.ndarray) -> np.ndarray:
        rows = np.asarray(X, dtype=np.float64)
        rows = rows[:, None] if rows.ndim == 1 else rows
        return np.fromiter((self._step(r, True) for r in rows), np.float64, len(rows))

    def _step(self, x: Any, want_score: bool) -> float:
        vec, _ = as_vector(x)
        d = len(vec)
        self._check(d)
        if not np.all(np.isfinite(vec)):
            return 0.0  # a row with a hole is neither scored nor learned
        if self._mean is None or self._cov is None:
            self._mean = vec.copy()
            self._cov = np.zeros((d, d))
            self._n = 1
            return 0.0
        score, w = 0.0, 1.0
        if self._n >= self.warmup:
            d2, _, _ = self._d2(vec)
            if want_score:
                score = float(min(1.0, max(0.0, 1.0 - chi2_sf(d2, d))))
            c2 = d + 3.0 * math.sqrt(2.0 * d)
            w = 1.0 if d2 <= c2 else math.sqrt(c2 / d2)
        self._n += 1
        a = max(self.alpha, 1.0 / self._n)
        delta = w * (vec - self._mean)
        self._mean = self._mean + a * delta
        # The covariance also takes the outlier at a rate cut by w²: its contribution,
        # c⁴ / r² in model units, falls as the point gets more extreme (redescending),
        # so a burst of outliers neither inflates nor erases the learned structure.
        b = a * w * w
        self._cov = (1.0 - b) * (self._cov + b * np.outer(delta, delta))
        if self._n <= self.warmup or self._n % self.refresh == 0:
            self._invert()
        return score

    def _invert(self) -> None:
        assert self._cov is not None
        diag = np.maximum(np.diag(self._cov), self.min_scale**2)
        shrunk = (1.0 - self.shrinkage) * self._cov
        shrunk[np.diag_indices_from(shrunk)] = diag
        try:
            self._prec = np.linalg.inv(shrunk)
        except np.linalg.LinAlgError:  # singular despite the floor: fall back to diagonal
            self._prec = np.diag(1.0 / diag)

    def explain_one(self, x: Any) -> np.ndarray:
        """Channel shares from reconstruction-based contributions, normalised.

        Channel ``i``'s contribution ``(Σ⁻¹δ)_i² / (Σ⁻¹)_ii`` is how much ``D²`` falls when
        ``x_i`` is replaced by its expectation given the other channels (Alcala & Qin,
        "Reconstruction-based contribution for process monitoring", Automatica 45(7),
        2009). Unlike the terms ``δ_i (Σ⁻¹δ)_i`` of ``D²`` it is never negative and
        does not smear a fault over the channels correlated with the faulty one.
        """
        vec, _ = as_vector(x)
        d = len(vec)
        self._check(d)
        if not self._ready(vec):
            return np.full(d, 1.0 / max(d, 1))
        assert self._prec is not None
        _, _, pd = self._d2(vec)
        terms = pd * pd / np.diag(self._prec)
        total = float(terms.sum())
        return terms / total if total > 0.0 else np.full(d, 1.0 / d)

    def _get_state(self) -> dict[str, Any]:
        return {
            "n": self._n,
            "mean": pack(self._mean),
            "cov": pack(self._cov),
            "prec": pack(self._prec),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self._n = int(state["n"])
        self._mean = unpack(state["mean"])
        self._cov = unpack(state["cov"])
        self._prec = unpack(state["prec"])
        d = 0 if self._mean is None else len(self._mean)
        for name, arr in (("cov", self._cov), ("prec", self._prec)):
            if arr is not None and arr.shape != (d, d):
                raise ValueError(f"{name} has shape {arr.shape}, expected {(d, d)}")

    def state_size(self) -> int:
        return 8 + sum(a.nbytes for a in (self._mean, self._cov, self._prec) if a is not None)

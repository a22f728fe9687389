"""Online PCA with Hotelling's T² and the squared prediction error Q (SPE).

Multivariate statistical process control (MSPC) models the normal correlation of the
channels with ``k`` principal components of their correlation matrix, then watches two
statistics (MacGregor & Kourti, "Statistical process control of multivariate
processes", Control Engineering Practice 3(3), 1995):

* Hotelling's ``T² = Σ_j t_j² / λ_j`` of the scores ``t = Pₖᵀ z``: an unusual
  *combination inside* the model plane (all channels high together);
* ``Q = ‖z - Pₖ t‖²``, the residual off the plane: a *broken correlation*, for
  example one sensor of a correlated group drifting on its own, which per-channel
  z-scores cannot see because each channel alone still looks normal.

``T²`` is referred to a chi-square with ``k`` degrees of freedom (the large-sample limit
of its F distribution; the exponential memory here is a few hundred samples). ``Q`` is
referred to Box's scaled chi-square ``g·χ²_h`` with ``g = θ₂/θ₁`` and ``h = θ₁²/θ₂``,
``θᵢ = Σ λⱼⁱ`` over the residual eigenvalues (Box, Annals of Mathematical Statistics
25(2), 1954), the same moment match that underlies Jackson & Mudholkar's limit
("Control procedures for residuals associated with principal component analysis",
Technometrics 21(3), 1979). The score is Bonferroni's combination
``1 - min(1, 2·min(p_T², p_Q))``: at most ``q`` of normal points score above ``1 - q``.

The channels are standardised online (exponentially weighted mean and variance), and the
covariance is exponentially weighted with a Huber-type weight ``w = min(1, c / r)``
(``r²`` the model's squared Mahalanobis distance of the point, ``c² = d + 3√(2d)``), so
a spike moves the model by a bounded step while a lasting change still wins. The
eigendecomposition is refreshed every ``refresh`` samples.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from detectors._arrays import as_vector, pack, unpack
from detectors.base import MultivariateDetector
from detectors.multivariate._special import chi2_sf
from detectors.registry import register

_TINY = 1e-300


@register("pca")
class OnlinePCA(MultivariateDetector):
    """Online PCA monitoring with Hotelling's T² and Q (SPE), Bonferroni-combined.

    Parameters
    ----------
    alpha
        Forgetting factor of the mean and covariance (memory about ``1 / alpha``).
    var_explained
        Keep the fewest components explaining at least this share of the variance...
    n_components
        ...unless a fixed number of components is given (at most ``d - 1``).
    refresh
        Recompute the eigendecomposition every ``refresh`` learned samples.
    warmup
        Samples learned (plain averages) before the first decomposition; scores are 0
        until then.
    min_scale
        Floor of a channel's standard deviation (constant channels).
    min_eig
        Floor of the correlation eigenvalues, so perfectly collinear channels do not
        divide by zero (a departure from exact collinearity is then a large Q).

    Notes
    -----
    Cost per update: ``O(d²)`` for the covariance, plus ``O(d³)`` eigendecomposition
    every ``refresh`` samples (amortised ``O(d³ / refresh)``); scoring is ``O(d·k)``
    plus two incomplete-gamma evaluations. State: ``2d² + 2d`` floats (covariance,
    eigenvectors, mean, eigenvalues) and two integers: 1.1 kB for ``d = 8``.

    Use it for groups of linearly correlated sensors (temperatures of one machine,
    phase currents) where faults break the correlation, and to point at the channel
    responsible (:meth:`explain_one`). Do not use it for nonlinear structure (use ``hst``
    or ``loda``), for ``d = 1`` (there is no residual space; use a univariate detector),
    or for strongly seasonal channels without deseasonalising them first.

    Scores are ``1 - min(1, 2·min(p_T², p_Q))`` (Bonferroni over the two tests).
    Measured calibration on i.i.d. Gaussian data, ``d = 8``, defaults: 1.9 % of scores
    exceed 0.99 (nominal at most 1 %), because eigenvalues estimated from a few hundred
    effective samples understate the smallest ones and so inflate ``Q``; a longer
    memory (smaller ``alpha``) tightens it, and SPOT thresholds fit the actual tail.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> f = rng.normal(size=(600, 1))
    >>> X = np.hstack([f, f, f]) + 0.1 * rng.normal(size=(600, 3))
    >>> det = OnlinePCA(alpha=0.01)
    >>> det.learn_many(X)
    >>> det.score_one([0.5, 0.5, 0.5]) < 0.9
    True
    >>> broken = [0.5, 0.5, -0.5]  # each value normal, the correlation broken
    >>> det.score_one(broken) > 0.999
    True
    >>> int(np.argmax(det.explain_one(broken)))
    2
    """

    version: ClassVar[int] = 1

    def __init__(
        self,
        alpha: float = 0.005,
        var_explained: float = 0.9,
        n_components: int | None = None,
        refresh: int = 25,
        warmup: int = 100,
        min_scale: float = 1e-9,
        min_eig: float = 1e-4,
    ) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        if not 0.0 < var_explained <= 1.0:
            raise ValueError("var_explained must be in (0, 1]")
        if n_components is not None and n_components < 1:
            raise ValueError("n_components must be positive")
        if refresh < 1 or warmup < 2:
            raise ValueError("refresh must be >= 1 and warmup >= 2")
        self.alpha = float(alpha)
        self.var_explained = float(var_explained)
        self.n_components = None if n_components is None else int(n_components)
        self.refresh = int(refresh)
        self.warmup = int(warmup)
        self.min_scale = float(min_scale)
        self.min_eig = float(min_eig)
        self._n = 0
        self._mean: np.ndarray | None = None
        self._cov: np.ndarray | None = None
        self._eigval: np.ndarray | None = None  # descending, floored
        self._eigvec: np.ndarray | None = None  # columns
        self._k = 0

    def params(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "var_explained": self.var_explained,
            "n_components": self.n_components,
            "refresh": self.refresh,
            "warmup": self.warmup,
            "min_scale": self.min_scale,
            "min_eig": self.min_eig,
        }

    @classmethod
    def conformance_params(cls) -> dict[str, Any]:
        """Small, fast parameters for the shared conformance tests."""
        return {"alpha": 0.02, "warmup": 30, "refresh": 10}

    # -- model ---------------------------------------------------------------------
    def _check(self, d: int) -> None:
        if self._mean is not None and len(self._mean) != d:
            raise ValueError(f"this detector has {len(self._mean)} channels, got {d}")

    def _stats(self, x: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray, np.ndarray]:
        """``T²``, ``Q``, scores ``t``, residual ``e`` and standardised ``z`` of ``x``."""
        assert self._mean is not None and self._cov is not None
        assert self._eigval is not None and self._eigvec is not None
        sd = np.sqrt(np.maximum(np.diag(self._cov), self.min_scale**2))
        z = (x - self._mean) / sd
        pk = self._eigvec[:, : self._k]
        t = z @ pk
        t2 = float(np.sum(t * t / self._eigval[: self._k]))
        e = z - pk @ t
        q = float(e @ e)
        return t2, q, t, e, z

    def _box_gh(self) -> tuple[float, float]:
        assert self._eigval is not None
        res = self._eigval[self._k :]
        th1, th2 = float(res.sum()), float((res * res).sum())
        return th2 / th1, th1 * th1 / th2

    def _tails(self, t2: float, q: float) -> tuple[float, float]:
        d = len(self._eigval) if self._eigval is not None else 0
        p_t2 = chi2_sf(t2, self._k)
        if self._k >= d:
            return p_t2, 1.0
        g, h = self._box_gh()
        return p_t2, chi2_sf(q / g, h)

    def _ready(self, x: np.ndarray) -> bool:
        return self._eigval is not None and bool(np.all(np.isfinite(x)))

    def _score_from(self, t2: float, q: float) -> float:
        assert self._eigval is not None
        p_t2, p_q = self._tails(t2, q)
        n_tests = 2.0 if self._k < len(self._eigval) else 1.0
        return float(min(1.0, max(0.0, 1.0 - min(1.0, n_tests * min(p_t2, p_q)))))

    def score_one(self, x: Any) -> float:
        vec, _ = as_vector(x)
        self._check(len(vec))
        if not self._ready(vec):
            return 0.0
        t2, q, *_ = self._stats(vec)
        return self._score_from(t2, q)

    def _weight(self, t2: float, q: float, d: int) -> float:
        # Huber weight on the model's Mahalanobis radius (T² plus Q in residual units).
        assert self._eigval is not None
        r2 = t2
        if self._k < d:
            r2 += q / max(float(self._eigval[self._k :].mean()), _TINY)
        c2 = d + 3.0 * math.sqrt(2.0 * d)
        return 1.0 if r2 <= c2 else math.sqrt(c2 / r2)

    def learn_one(self, x: Any) -> None:
        vec, _ = as_vector(x)
        self._check(len(vec))
        if not np.all(np.isfinite(vec)):
            return  # a row with a hole is not learned
        w = 1.0
        if self._eigval is not None:
            t2, q, *_ = self._stats(vec)
            w = self._weight(t2, q, len(vec))
        self._update(vec, w)

    def score_learn_one(self, x: Any) -> float:
        vec, _ = as_vector(x)
        self._check(len(vec))
        if not np.all(np.isfinite(vec)):
            return 0.0
        if self._eigval is None:
            self._update(vec, 1.0)
            return 0.0
        t2, q, *_ = self._stats(vec)  # one pass serves both the score and the weight
        score = self._score_from(t2, q)
        self._update(vec, self._weight(t2, q, len(vec)))
        return score

    def score_learn_many(self, X: np.ndarray) -> np.ndarray:
        rows = np.asarray(X, dtype=np.float64)
        rows = rows[:, None] if rows.ndim == 1 else rows
        return np.fromiter((self.score_learn_one(r) for r in rows), np.float64, len(rows))

    def _update(self, x: np.ndarray, w: float) -> None:
        d = len(x)
        if self._mean is None or self._cov is None:
            self._mean = x.copy()
            self._cov = np.zeros((d, d))
            self._n = 1
            return
        self._n += 1
        a = max(self.alpha, 1.0 / self._n)  # plain averages first, then forgetting
        delta = w * (x - self._mean)
        self._mean = self._mean + a * delta
        # The covariance also takes the outlier at a rate cut by w²: its contribution,
        # c⁴ / r² in model units, falls as the point gets more extreme (redescending),
        # so a burst of outliers neither inflates nor erases the learned structure.
        b = a * w * w
        # West's exponentially weighted covariance recursion.
        self._cov = (1.0 - b) * (self._cov + b * np.outer(delta, delta))
        since = self._n - self.warmup
        if since >= 0 and (self._eigval is None or since % self.refresh == 0):
            self._decompose()

    def _decompose(self) -> None:
        assert self._cov is not None
        d = self._cov.shape[0]
        sd = np.sqrt(np.maximum(np.diag(self._cov), self.min_scale**2))
        corr = self._cov / np.outer(sd, sd)
        vals, vecs = np.linalg.eigh(corr)
        order = np.argsort(vals)[::-1]
        vals = np.maximum(vals[order], self.min_eig)
        self._eigvec = np.ascontiguousarray(vecs[:, order])  # same BLAS path after restore
        self._eigval = vals
        if self.n_components is not None:
            k = self.n_components
        else:
            share = np.cumsum(vals) / vals.sum()
            k = int(np.searchsorted(share, self.var_explained - 1e-12) + 1)
        self._k = max(1, min(k, d - 1)) if d > 1 else 1

    # -- attribution -------------------------------------------------------------------
    def explain_one(self, x: Any) -> np.ndarray:
        """Channel shares: Q contributions ``e_i²`` and T² contributions, mixed by surprise.

        The T² contributions are Westerhuis, Gurden & Smilde's ``Σ_j (t_j/λ_j) p_ij z_i``
        ("Generalized contribution plots in multivariate statistical process monitoring",
        Chemometrics and Intelligent Laboratory Systems 51(1), 2000), negatives clipped
        to 0. The two normalised profiles are averaged with weights ``-log p`` of their
        statistic, so the test that fired dominates.
        """
        vec, _ = as_vector(x)
        d = len(vec)
        uniform = np.full(d, 1.0 / max(d, 1))
        self._check(d)
        if not self._ready(vec):
            return uniform
        assert self._eigval is not None and self._eigvec is not None
        t2, q, t, e, z = self._stats(vec)
        p_t2, p_q = self._tails(t2, q)
        lam = self._eigval[: self._k]
        c_t2 = np.maximum((self._eigvec[:, : self._k] @ (t / lam)) * z, 0.0)
        c_q = e * e
        w_t2 = -math.log(max(p_t2, _TINY))
        w_q = -math.log(max(p_q, _TINY))
        out = np.zeros(d)
        for w, c in ((w_t2, c_t2), (w_q, c_q)):
            total = float(c.sum())
            if w > 0.0 and total > 0.0:
                out += w * c / total
        s = float(out.sum())
        return out / s if s > 0.0 else uniform

    # -- state -------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        return {
            "n": self._n,
            "k": self._k,
            "mean": pack(self._mean),
            "cov": pack(self._cov),
            "eigval": pack(self._eigval),
            "eigvec": pack(self._eigvec),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self._n = int(state["n"])
        self._k = int(state["k"])
        self._mean = unpack(state["mean"])
        self._cov = unpack(state["cov"])
        self._eigval = unpack(state["eigval"])
        self._eigvec = unpack(state["eigvec"])
        d = 0 if self._mean is None else len(self._mean)
        for name, arr, shape in (
            ("cov", self._cov, (d, d)),
            ("eigval", self._eigval, (d,)),
            ("eigvec", self._eigvec, (d, d)),
        ):
            if arr is not None and arr.shape != shape:
                raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")

    def state_size(self) -> int:
        arrays = (self._mean, self._cov, self._eigval, self._eigvec)
        return 16 + sum(a.nbytes for a in arrays if a is not None)

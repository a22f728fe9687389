"""LODA: an ensemble of one-dimensional histograms on sparse random projections.

Pevný, "Loda: Lightweight on-line detector of anomalies", Machine Learning 102(2), 2016.
Each of ``k`` projections ``z_j = w_jᵀ x`` uses a sparse random vector with about
``√d`` non-zero standard normal weights; each projection keeps a histogram density
``p_j``, and the raw anomaly score is the mean negative log density
``-(1/k) Σ_j log p_j(z_j)``. Individually weak, the projections together approximate
the joint density well enough to rank outliers, at a cost linear in ``k``.

On a stream the histograms follow the paper's two-window scheme for non-stationary
data: a *reference* histogram (the last complete window of ``ψ`` points) scores, a
*latest* one counts, and they swap every ``ψ`` points. Bin edges come from the first
window (warm-up), padded by 10 % on each side, with ``n_bins`` equal-width bins plus
one underflow and one overflow bin; densities use add-``λ`` smoothing, and beyond the
edges the log density falls linearly with the distance in bin widths, so a far outlier
scores higher than a near one. As with Half-Space Trees, the reference counts change
only at a swap, so a batch is scored window by window in one pass and matches the
one-at-a-time scores exactly.

Attribution follows the paper's feature relevance (Section 3.3): for feature ``i``, a
one-tailed two-sample t statistic compares the ``-log p_j(x)`` of the projections that
use ``i`` with those that do not; positive statistics, normalised, are the shares.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from detectors._arrays import as_matrix, as_vector, pack, unpack
from detectors.base import MultivariateDetector
from detectors.multivariate._calibrate import RankCalibrator
from detectors.registry import register


@register("loda")
class Loda(MultivariateDetector):
    """LODA with windowed histograms and rank-calibrated scores.

    Parameters
    ----------
    n_projections
        Number of sparse random projections ``k``.
    n_bins
        Equal-width bins per histogram (plus an underflow and an overflow bin).
    window_size
        Window ``ψ``: the first sets the bin edges and first reference counts; then the
        reference and latest histograms swap every ``ψ`` learned points.
    smoothing
        Pseudo-count ``λ`` added to every bin.
    calibration_size
        Recent raw scores kept by the rank calibration.
    seed
        Seed of the projections; the detector is deterministic given it.

    Notes
    -----
    Cost per update: ``O(k·√d)`` for the projections (summed feature by feature over ``d × k``)
    plus ``O(k)`` histogram lookups. State: ``2·k·(n_bins + 2)`` counts, ``2k`` floats of
    bin edges and the calibration window: 41 kB for the defaults (64-bit counts; 4 kB
    of it the calibration window), whatever ``d``; projections are rebuilt from ``seed``.

    Use it as a cheap, memory-light density detector for many channels (dozens to
    thousands), where trees or covariance matrices cost too much, and when a rough
    per-channel explanation is enough. Do not use it for low ``d`` with clear linear
    correlation (``pca`` or ``mahalanobis`` are sharper and calibrated), or for slow
    drift beyond the warm-up range (drifted points share the outer bins, which the next
    reference window calls normal).

    Scores are the calibrated rank of the mean negative log density among the last
    ``calibration_size`` raw scores, with an exponential tail beyond their top 5 %.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(4)
    >>> det = Loda(n_projections=50, window_size=128, seed=0)
    >>> det.learn_many(rng.normal(size=(800, 4)))
    >>> det.score_one([0.0, 0.0, 0.0, 0.0]) < 0.9
    True
    >>> det.score_one([0.0, 0.0, 8.0, 0.0]) > 0.99
    True
    >>> int(np.argmax(det.explain_one([0.0, 0.0, 8.0, 0.0])))
    2
    """

    version: ClassVar[int] = 1

    def __init__(
        self,
        n_projections: int = 100,
        n_bins: int = 20,
        window_size: int = 256,
        smoothing: float = 0.5,
        calibration_size: int = 512,
        seed: int = 0,
    ) -> None:
        if n_projections < 1 or n_bins < 2 or window_size < 2 or smoothing <= 0:
            raise ValueError(
                "need n_projections >= 1, n_bins >= 2, window_size >= 2, smoothing > 0"
            )
        self.n_projections = int(n_projections)
        self.n_bins = int(n_bins)
        self.window_size = int(window_size)
        self.smoothing = float(smoothing)
        self.calibration_size = int(calibration_size)
        self.seed = int(seed)
        self._d = 0
        self._w: np.ndarray | None = None  # (d, k) projection matrix, from the seed
        self._buffer: list[np.ndarray] = []
        self._lo: np.ndarray | None = None  # (k,) left edge of bin 1
        self._width: np.ndarray | None = None  # (k,)
        self._r: np.ndarray | None = None  # (k, n_bins + 2) reference counts
        self._l: np.ndarray | None = None  # (k, n_bins + 2) latest counts
        self._count = 0
        self._cal = RankCalibrator(size=self.calibration_size, min_count=min(32, window_size))

    def params(self) -> dict[str, Any]:
        return {
            "n_projections": self.n_projections,
            "n_bins": self.n_bins,
            "window_size": self.window_size,
            "smoothing": self.smoothing,
            "calibration_size": self.calibration_size,
            "seed": self.seed,
        }

    @classmethod
    def conformance_params(cls) -> dict[str, Any]:
        """Small, fast parameters for the shared conformance tests."""
        return {"n_projections": 30, "n_bins": 10, "window_size": 50, "seed": 0}

    # -- model -----------------------------------------------------------------------
    def _check(self, d: int) -> None:
        if self._d == 0:
            self._d = d
        elif d != self._d:
            raise ValueError(f"this detector has {self._d} channels, got {d}")
        if self._w is None:
            self._w = self._projections(d)

    def _projections(self, d: int) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        k = self.n_projections
        nnz = max(1, round(d**0.5))  # the paper's d^(-1/2) density
        chosen = np.argsort(rng.random((k, d)), axis=1)[:, :nnz]
        w = np.zeros((d, k))
        w[chosen.T, np.arange(k)[None, :]] = rng.standard_normal((nnz, k))
        return w

    def _project(self, X: np.ndarray) -> np.ndarray:
        """``X @ W`` summed feature by feature, so a row's projection does not depend on
        the batch it came in (BLAS picks different kernels for one row and many)."""
        assert self._w is not None
        Z = X[:, :1] * self._w[0]
        for i in range(1, X.shape[1]):
            Z = Z + X[:, i : i + 1] * self._w[i]
        return Z

    def _bins(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bin index (0 underflow, ``n_bins + 1`` overflow) and out-of-range distance."""
        assert self._lo is not None and self._width is not None
        u = (Z - self._lo) / self._width
        b = np.floor(u)
        outside = np.maximum(-u, 0.0) + np.maximum(u - self.n_bins, 0.0)
        return (np.clip(b, -1, self.n_bins) + 1).astype(np.int64), outside

    def _neglogp(self, Z: np.ndarray) -> np.ndarray:
        """``-log p_j(z_j)``, shape of ``Z`` (rows × projections)."""
        assert self._r is not None and self._width is not None
        b, outside = self._bins(Z)
        counts = np.take_along_axis(self._r, b.T, axis=1).T
        total = self.window_size + self.smoothing * (self.n_bins + 2)
        dens = (counts + self.smoothing) / (total * self._width)
        return -np.log(dens) + outside

    def _add_latest(self, Z: np.ndarray) -> None:
        assert self._l is not None
        b, _ = self._bins(Z)
        flat = b + (np.arange(self.n_projections) * (self.n_bins + 2))[None, :]
        self._l += np.bincount(flat.ravel(), minlength=self._l.size).reshape(self._l.shape)

    def _finish_warmup(self) -> None:
        assert self._w is not None
        rows = np.asarray(self._buffer)
        self._buffer = []
        Z = self._project(rows)
        lo, hi = Z.min(axis=0), Z.max(axis=0)
        span = np.maximum(hi - lo, 1e-9 * (1.0 + np.abs(lo)))
        self._lo = lo - 0.1 * span
        self._width = 1.2 * span / self.n_bins
        self._l = np.zeros((self.n_projections, self.n_bins + 2), dtype=np.int64)
        self._add_latest(Z)
        self._r, self._l = self._l, np.zeros_like(self._l)
        self._count = 0
        for v in self._neglogp(Z).mean(axis=1):  # in-sample scores seed the calibration
            self._cal.update(float(v))

    # -- streaming ---------------------------------------------------------------------
    def score_one(self, x: Any) -> float:
        vec, _ = as_vector(x)
        self._check(len(vec))
        if self._r is None or not np.all(np.isfinite(vec)):
            return 0.0
        assert self._w is not None
        return self._cal.score(float(self._neglogp(self._project(vec[None, :])).mean()))

    def learn_one(self, x: Any) -> None:
        self.score_learn_many(np.asarray(x, dtype=np.float64)[None, :])

    def score_learn_one(self, x: Any) -> float:
        vec, _ = as_vector(x)
        return float(self.score_learn_many(vec[None, :])[0])

    def learn_many(self, X: np.ndarray) -> None:
        self.score_learn_many(X)

    def score_learn_many(self, X: np.ndarray) -> np.ndarray:
        rows = as_matrix(X)
        self._check(rows.shape[1])
        assert self._w is not None
        out = np.zeros(rows.shape[0])
        good = np.flatnonzero(np.all(np.isfinite(rows), axis=1))  # holes: score 0, not learned
        i = 0
        while i < len(good):
            if self._r is None:
                self._buffer.append(rows[good[i]].copy())
                i += 1
                if len(self._buffer) >= self.window_size:
                    self._finish_warmup()
                continue
            take = good[i : i + self.window_size - self._count]
            Z = self._project(rows[take])
            raw = self._neglogp(Z).mean(axis=1)
            for j, v in zip(take, raw, strict=True):
                out[j] = self._cal.score_update(float(v))
            self._add_latest(Z)
            self._count += len(take)
            i += len(take)
            if self._count >= self.window_size:
                assert self._l is not None
                self._r, self._l = self._l, np.zeros_like(self._l)
                self._count = 0
        return out

    # -- attribution -------------------------------------------------------------------
    def explain_one(self, x: Any) -> np.ndarray:
        """Feature relevance by the paper's one-tailed t-test, positive parts normalised."""
        vec, _ = as_vector(x)
        d = len(vec)
        self._check(d)
        uniform = np.full(d, 1.0 / max(d, 1))
        if self._r is None or not np.all(np.isfinite(vec)) or d < 2:
            return uniform
        assert self._w is not None
        f = self._neglogp(self._project(vec[None, :]))[0]
        uses = self._w != 0.0  # (d, k)
        t = np.zeros(d)
        for i in range(d):
            a, b = f[uses[i]], f[~uses[i]]
            if len(a) < 2 or len(b) < 2:
                continue
            se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
            t[i] = (a.mean() - b.mean()) / max(float(se), 1e-12)
        rel = np.maximum(t, 0.0)
        total = float(rel.sum())
        return rel / total if total > 0.0 else uniform

    # -- state -------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        buffer = np.asarray(self._buffer) if self._buffer else None
        return {
            "d": self._d,
            "count": self._count,
            "buffer": pack(buffer),
            "lo": pack(self._lo),
            "width": pack(self._width),
            "r": pack(self._r),
            "l": pack(self._l),
            "calibration": self._cal.get_state(),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self._d = int(state["d"])
        self._count = int(state["count"])
        buffer = unpack(state["buffer"])
        self._buffer = [] if buffer is None else [row.copy() for row in buffer]
        self._lo = unpack(state["lo"])
        self._width = unpack(state["width"])
        self._r = unpack(state["r"])
        self._l = unpack(state["l"])
        self._cal.set_state(state["calibration"])
        self._w = self._projections(self._d) if self._d else None
        shape = (self.n_projections, self.n_bins + 2)
        for name, arr in (("r", self._r), ("l", self._l)):
            if arr is not None and arr.shape != shape:
                raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
        if len(self._buffer) >= self.window_size or not 0 <= self._count < self.window_size:
            raise ValueError("window counters out of range")

    def state_size(self) -> int:
        arrays = [self._lo, self._width, self._r, self._l]
        size = sum(a.nbytes for a in arrays if a is not None)
        return 16 + size + 8 * self._d * len(self._buffer) + self._cal.state_size()

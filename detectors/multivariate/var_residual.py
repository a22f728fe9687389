"""Predictive multivariate score: T² of a vector autoregression's one-step residual.

A VAR(p) model ``x_t = c + Σ_k A_k x_{t-k} + e_t`` is fitted by ridge-regularised least
squares on the first ``warmup`` rows (running moments, so it streams), then kept
fixed (``alpha = 0``, the phase-I / phase-II split of statistical process control and
of SKAB's published methods, which train on an anomaly-free start and freeze) or
followed slowly (``alpha > 0``). The score is the Hotelling T² of the residual,
``e_tᵀ Σ_e⁻¹ e_t``, which for a well-specified model is white and ``χ²_d`` (Hotelling,
1947; residual control charts for autocorrelated processes: Alwan & Roberts, "Time
series modeling for statistical process control", J. Bus. Econ. Stat. 6(1), 1988;
Montgomery, "Introduction to Statistical Quality Control", §10.4).

Two consequences of predicting instead of comparing with a mean:

* slow, smooth wandering of a channel (a temperature that warms or cools over the
  experiment) is predicted by the channel's own lag and does not alarm;
* a lasting step in a channel that is otherwise noise around a level keeps a residual
  of about ``(I - Σ A_k)`` times the step, which for such a channel is nearly the step.

Collective anomalies are judged on ``window`` rows at once: the sum of the last
``window`` residual T² values is ``χ²`` with ``window · d`` degrees of freedom for white
residuals, so the evidence of a lasting fault adds up while an isolated spike is
diluted (the moving-sum chart; a window of 1 is the plain residual T²).

``Σ_e`` is estimated prequentially on the second half of the warm-up (each residual is
computed before its row is learned), so it measures the model's out-of-sample error
rather than its fit.
"""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar

import numpy as np

from detectors._arrays import as_vector, pack, unpack
from detectors.base import MultivariateDetector
from detectors.multivariate._special import chi2_sf
from detectors.registry import register


@register("var_residual")
class VarResidual(MultivariateDetector):
    """Hotelling T² of the one-step residual of a VAR(``order``) model.

    Parameters
    ----------
    order
        Lags of the autoregression.
    warmup
        Rows learned (plain averages) before scores are given; the first half fits the
        regression, the second half also the residual covariance.
    alpha
        Forgetting factor after the warm-up; ``0`` freezes the model (default).
    window
        Rows whose residual T² are summed into one score (``χ²`` with ``window · d``
        degrees of freedom).
    ridge
        Ridge penalty, relative to each lagged channel's variance.
    shrinkage
        Weight of the diagonal in the residual covariance, ``(1 - ρ) Σ + ρ diag(Σ)``.
    refresh
        Refit the regression and invert the covariance every ``refresh`` learned rows.

    Notes
    -----
    Cost per row: ``O(p² d²)`` for the moments, plus an ``O(p³ d³)`` solve every
    ``refresh`` rows while learning. State: about ``(p d)² + 2 d² + p d² `` floats
    (3.6 kB for ``p = 2``, ``d = 8``) and the last ``p`` rows and ``window`` T² values.

    A row with a missing value is neither scored nor learned and breaks the lag chain
    (the next ``order`` rows rebuild it).

    Use it when each run starts with a stretch of normal operation that stands for the
    rest (a test rig, a batch or a device after maintenance: "phase I" in process
    control) and the sensors are autocorrelated and coupled, so that prediction
    explains their wandering; the window suits faults that last (valve leaks, a stuck
    actuator). Frozen (``alpha = 0``) it suits only runs as short as its reference: on
    SKAB's 9,405-row anomaly-free run it flags 94 % of the rows as the process drifts.
    With ``alpha > 0`` it follows drift, and would learn a lasting fault within about
    ``1 / alpha`` rows unless the pipeline holds anomalous rows back (``learning:
    protect``; a held row still moves the lags on, :meth:`hold_one`). That pair
    (``alpha = 1e-4``, ``configs/skab.yaml``) gives F1 0.816 at 7.3 % FAR on SKAB and
    flags 3.8 % of the anomaly-free run; ``alpha``, ``order`` and ``window`` were
    chosen on SKAB (see ``docs/QUALITY.md``).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> e = rng.normal(size=(600, 2))
    >>> X = np.zeros((600, 2))
    >>> for t in range(1, 600):
    ...     X[t] = 0.9 * X[t - 1] + e[t]
    >>> det = VarResidual(order=1, warmup=400, window=1)
    >>> det.learn_many(X[:500])
    >>> det.score_one(0.9 * X[499]) < 0.9
    True
    >>> det.score_one(0.9 * X[499] + np.array([6.0, 0.0])) > 0.999
    True
    """

    version: ClassVar[int] = 1

    def __init__(
        self,
        order: int = 2,
        warmup: int = 400,
        alpha: float = 0.0,
        window: int = 3,
        ridge: float = 1e-3,
        shrinkage: float = 0.01,
        refresh: int = 10,
    ) -> None:
        if order < 1 or window < 1 or refresh < 1:
            raise ValueError("order, window and refresh must be >= 1")
        if warmup < 4 * order + 8:
            raise ValueError("warmup is too short for the order")
        if not 0.0 <= alpha < 1.0:
            raise ValueError("alpha must be in [0, 1)")
        if ridge < 0.0 or not 0.0 <= shrinkage <= 1.0:
            raise ValueError("ridge must be >= 0 and shrinkage in [0, 1]")
        self.order = int(order)
        self.warmup = int(warmup)
        self.alpha = float(alpha)
        self.window = int(window)
        self.ridge = float(ridge)
        self.shrinkage = float(shrinkage)
        self.refresh = int(refresh)
        self._reset()

    def _reset(self) -> None:
        self._d = 0
        self._n = 0  # rows learned into the regression moments
        self._hist: deque[np.ndarray] = deque(maxlen=self.order)
        self._d2s: deque[float] = deque(maxlen=self.window)
        self._mf: np.ndarray | None = None  # mean of the lag vector
        self._mx: np.ndarray | None = None  # mean of the row
        self._sff: np.ndarray | None = None  # second moment of the lag vector
        self._sfx: np.ndarray | None = None  # cross moment lag vector x row
        self._coef: np.ndarray | None = None  # (p d, d)
        self._icpt: np.ndarray | None = None  # (d,)
        self._srr: np.ndarray | None = None  # residual second moment
        self._nr = 0  # residuals learned into _srr
        self._prec: np.ndarray | None = None

    def params(self) -> dict[str, Any]:
        return {
            "order": self.order,
            "warmup": self.warmup,
            "alpha": self.alpha,
            "window": self.window,
            "ridge": self.ridge,
            "shrinkage": self.shrinkage,
            "refresh": self.refresh,
        }

    @classmethod
    def conformance_params(cls) -> dict[str, Any]:
        """Small, fast parameters for the shared conformance tests."""
        return {"order": 1, "warmup": 40, "window": 2}

    # -- helpers -------------------------------------------------------------------------
    def _check(self, d: int) -> None:
        if self._d and d != self._d:
            raise ValueError(f"this detector has {self._d} channels, got {d}")

    def _lags(self) -> np.ndarray | None:
        if len(self._hist) < self.order:
            return None
        return np.concatenate(list(reversed(self._hist)))  # x_{t-1}, ..., x_{t-p}

    def _residual(self, x: np.ndarray, f: np.ndarray) -> np.ndarray:
        assert self._coef is not None and self._icpt is not None
        return x - self._icpt - f @ self._coef

    def _d2(self, x: np.ndarray) -> float | None:
        f = self._lags()
        if f is None or self._prec is None or self._coef is None:
            return None
        r = self._residual(x, f)
        return float(r @ self._prec @ r)

    def _tail(self, d2: float) -> float:
        """``1 - P(χ²_{m d} ≥ Σ D²)`` over this and the last ``window - 1`` rows."""
        past = list(self._d2s)[-(self.window - 1) :] if self.window > 1 else []
        m = len(past) + 1
        return float(min(1.0, max(0.0, 1.0 - chi2_sf(d2 + sum(past), m * self._d))))

    def _solve(self) -> None:
        assert self._sff is not None and self._sfx is not None
        assert self._mf is not None and self._mx is not None
        cff = self._sff - np.outer(self._mf, self._mf)
        cfx = self._sfx - np.outer(self._mf, self._mx)
        diag = np.maximum(np.diag(cff), 1e-300)
        lhs = cff + np.diag(self.ridge * diag + 1e-12 * float(diag.max()))
        try:
            self._coef = np.linalg.solve(lhs, cfx)
        except np.linalg.LinAlgError:
            self._coef = np.zeros_like(cfx)
        self._icpt = self._mx - self._mf @ self._coef

    def _invert(self) -> None:
        assert self._srr is not None
        diag = np.maximum(np.diag(self._srr), 1e-18)
        shrunk = (1.0 - self.shrinkage) * self._srr
        shrunk[np.diag_indices_from(shrunk)] = diag
        try:
            self._prec = np.linalg.inv(shrunk)
        except np.linalg.LinAlgError:
            self._prec = np.diag(1.0 / diag)

    # -- the interface -------------------------------------------------------------------
    def score_one(self, x: Any) -> float:
        vec, _ = as_vector(x)
        self._check(len(vec))
        if not np.all(np.isfinite(vec)):
            return 0.0
        d2 = self._d2(vec)
        return 0.0 if d2 is None else self._tail(d2)

    def learn_one(self, x: Any) -> None:
        self._step(x, learn=True)

    def hold_one(self, x: Any) -> None:
        """Advance the lags and the window of ``x`` without fitting on it."""
        self._step(x, learn=False)

    def _step(self, x: Any, learn: bool) -> None:
        vec, _ = as_vector(x)
        self._check(len(vec))
        if not np.all(np.isfinite(vec)):
            self._hist.clear()  # a hole breaks the lag chain
            return
        d = self._d = len(vec)
        f = self._lags()
        if f is not None:
            d2 = self._d2(vec)
            if d2 is not None:
                self._d2s.append(d2)
            if learn and (self._n < self.warmup or self.alpha > 0.0):
                self._learn(vec, f, d)
        self._hist.append(vec.copy())

    def _learn(self, x: np.ndarray, f: np.ndarray, d: int) -> None:
        half = self.warmup // 2
        if self._mf is None:
            k = len(f)
            self._mf, self._mx = np.zeros(k), np.zeros(d)
            self._sff, self._sfx = np.zeros((k, k)), np.zeros((k, d))
            self._srr = np.zeros((d, d))
        assert self._mx is not None and self._sff is not None and self._sfx is not None
        assert self._srr is not None
        # The residual is taken with the coefficients before this row (prequential).
        if self._coef is not None:
            r = self._residual(x, f)
            self._nr += 1
            b = 1.0 / self._nr if self._n < self.warmup else self.alpha
            self._srr += b * (np.outer(r, r) - self._srr)
        self._n += 1
        a = 1.0 / self._n if self._n <= self.warmup else self.alpha
        self._mf += a * (f - self._mf)
        self._mx += a * (x - self._mx)
        self._sff += a * (np.outer(f, f) - self._sff)
        self._sfx += a * (np.outer(f, x) - self._sfx)
        if self._n >= half and (self._n % self.refresh == 0 or self._n in (half, self.warmup)):
            self._solve()
        if (
            self._n >= self.warmup
            and self._nr > 0
            and (self._n == self.warmup or self._n % self.refresh == 0)
        ):
            self._invert()

    def explain_one(self, x: Any) -> np.ndarray:
        """Reconstruction-based contributions of the residual (as in ``mahalanobis``)."""
        vec, _ = as_vector(x)
        self._check(len(vec))
        f = self._lags()
        if f is None or self._prec is None or not np.all(np.isfinite(vec)):
            return np.full(len(vec), 1.0 / max(len(vec), 1))
        pd = self._prec @ self._residual(vec, f)
        terms = pd * pd / np.diag(self._prec)
        total = float(terms.sum())
        return terms / total if total > 0.0 else np.full(len(vec), 1.0 / len(vec))

    # -- state ---------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        hist = np.array(list(self._hist)) if self._hist else None
        return {
            "d": self._d,
            "n": self._n,
            "nr": self._nr,
            "hist": pack(hist),
            "d2s": [float(v) for v in self._d2s],
            "mf": pack(self._mf),
            "mx": pack(self._mx),
            "sff": pack(self._sff),
            "sfx": pack(self._sfx),
            "coef": pack(self._coef),
            "icpt": pack(self._icpt),
            "srr": pack(self._srr),
            "prec": pack(self._prec),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self._reset()
        self._d = int(state["d"])
        self._n = int(state["n"])
        self._nr = int(state["nr"])
        hist = unpack(state["hist"])
        if hist is not None:
            if hist.ndim != 2 or hist.shape[1] != self._d or len(hist) > self.order:
                raise ValueError("bad lag history")
            self._hist.extend(np.array(r) for r in hist)
        self._d2s.extend(float(v) for v in state["d2s"][-self.window :])
        for name in ("mf", "mx", "sff", "sfx", "coef", "icpt", "srr", "prec"):
            setattr(self, "_" + name, unpack(state[name]))
        d, k = self._d, self._d * self.order
        shapes = {
            "mf": (k,),
            "mx": (d,),
            "sff": (k, k),
            "sfx": (k, d),
            "coef": (k, d),
            "icpt": (d,),
            "srr": (d, d),
            "prec": (d, d),
        }
        for name, shape in shapes.items():
            arr = getattr(self, "_" + name)
            if arr is not None and arr.shape != shape:
                raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")

    def state_size(self) -> int:
        arrays = (
            self._mf,
            self._mx,
            self._sff,
            self._sfx,
            self._coef,
            self._icpt,
            self._srr,
            self._prec,
        )
        hist = sum(a.nbytes for a in self._hist)
        return 24 + hist + 8 * len(self._d2s) + sum(a.nbytes for a in arrays if a is not None)

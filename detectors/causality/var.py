"""Online vector autoregression kept as sufficient statistics (no re-scan of data).

For ``d`` sensors and lag ``p`` each time step gives the augmented row

``a_t = [1, y_t, y_{t-1}, ..., y_{t-p}]``  (length ``k = 1 + d (p + 1)``),

and the model keeps ``G = sum_t a_t a_t'``. ``G`` holds every cross-product a least
squares fit of the VAR(p) needs: the regressors ``z_t = [1, y_{t-1..t-p}]`` (``m = d p + 1``
of them) give ``Z'Z``, the targets give ``Z'y_j`` and ``y_j'y_j``. Any regression of one
sensor on a subset of lags is a sub-block of ``G`` (see :mod:`detectors.causality.granger`).

Two memories:

* **exact sliding window** of ``W`` rows: a ring buffer keeps the last ``W + p + 1`` raw
  samples, and ``G`` is computed from them, in one matrix product, only when a fit or a
  test asks for it (a monitor tests every few samples: cheaper than adding the new row
  and subtracting the one that leaves at every sample). ``G`` is then a function of the
  buffer alone: a snapshot does not store it, and a restored window is bit-identical.
  Statistics equal a batch fit on the window, which is what the exact match with
  ``statsmodels`` relies on.
* **exponential forgetting** ``G <- lambda G + a a'`` (recursive least squares with
  forgetting, Haykin, "Adaptive Filter Theory", ch. 10), effective window
  ``n_eff = 1 / (1 - lambda)``; only the last ``p + 1`` samples are kept.
  ``lambda = 1`` weighs every row alike: a growing window that costs no more memory
  than forgetting (a warm-up uses it, since none of its rows ever leaves).

Numerics: rows are centred by a per-sensor shift (the constant regressor absorbs it,
so fits are unchanged) and the shift is moved to the current mean every refresh. The
ring buffer holds samples already centred, so ``compact=True`` can store it in float32:
half the memory, and each sample keeps 7 significant digits of its *deviation* from the
recent mean (of its raw value, a large offset would eat them).

A row is used only if its ``p + 1`` samples are all finite: a NaN costs ``p + 1`` rows,
never poisons ``G`` (the buffer stores 0 and a validity flag, so state stays finite).

Cost per update: O(k^2) with forgetting; O(d) for the window, plus O(W k^2) each time
its ``G`` is read after new samples. State: ``k^2`` floats for ``G`` plus ``(W + p + 1)
d`` floats for the sliding ring buffer (``(p + 1) d`` with forgetting). The window's
``G`` is only a cache: dropped as soon as a sample makes it stale (or on
:meth:`OnlineVAR.release`), and never in snapshots.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from detectors._arrays import pack, unpack

#: Updates between re-centrings of a growing window (``forgetting = 1``).
_CUMULATIVE_REFRESH = 1000

#: The window's ``G`` when it is not cached.
_NO_GRAM = np.zeros((0, 0))


class OnlineVAR:
    """Sufficient statistics of a VAR(p) over a sliding window or with forgetting.

    Parameters
    ----------
    d
        Number of sensors.
    lag
        Autoregressive order ``p``.
    window
        Rows of the exact sliding window (``None`` with ``forgetting``).
    forgetting
        Forgetting factor ``lambda`` in ``(0, 1]`` (``None`` with ``window``); ``1`` keeps
        every row (a growing window).
    refresh_every
        Updates between re-centring (and, for the window, exact rebuilds); defaults to
        the window, ``n_eff``, or 1,000 rows without forgetting.
    compact
        Store the ring buffer's centred samples in float32 (half the memory; relative
        error ~6e-8 of each sample's deviation from the recent mean). The default,
        float64, is what the exact match with ``statsmodels`` is tested with.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> var = OnlineVAR(d=2, lag=1, window=100)
    >>> for y in rng.normal(size=(150, 2)):
    ...     var.update(y)
    >>> var.n_obs
    100.0
    >>> var.gram().shape
    (5, 5)
    """

    def __init__(
        self,
        d: int,
        lag: int,
        window: int | None = None,
        forgetting: float | None = None,
        refresh_every: int | None = None,
        compact: bool = False,
    ) -> None:
        if d < 1 or lag < 1:
            raise ValueError("d and lag must be at least 1")
        if (window is None) == (forgetting is None):
            raise ValueError("give exactly one of window and forgetting")
        if window is not None and window < lag + 1:
            raise ValueError("window must exceed the lag")
        if forgetting is not None and not 0.0 < forgetting <= 1.0:
            raise ValueError("forgetting must be in (0, 1]")
        self.d = int(d)
        self.lag = int(lag)
        self.window = None if window is None else int(window)
        self.forgetting = None if forgetting is None else float(forgetting)
        if refresh_every is None:
            if self.window is not None:
                refresh_every = self.window
            elif self.forgetting == 1.0:
                refresh_every = _CUMULATIVE_REFRESH
            else:
                refresh_every = math.ceil(1.0 / (1.0 - float(forgetting or 0.0)))
        self.refresh_every = int(refresh_every)
        self.compact = bool(compact)
        k = self.k
        self._L = (self.window + self.lag + 1) if self.window else (self.lag + 1)
        # samples minus the shift (0 where not finite)
        self._buf = np.zeros((self._L, self.d), dtype=np.float32 if compact else np.float64)
        self._ok = np.zeros(self._L, dtype=bool)  # slot holds an all-finite sample
        # The window's G is a cache (empty when stale, see _gram); forgetting's is state.
        self._G = _NO_GRAM if self.window is not None else np.zeros((k, k))
        self._stale = self.window is not None
        self._shift = np.zeros(self.d)
        self._t = 0  # samples seen
        self._has_shift = False
        self._since_refresh = 0

    # -- layout ------------------------------------------------------------------------
    @property
    def k(self) -> int:
        """Length of the augmented row ``[1, y_t, ..., y_{t-p}]``."""
        return 1 + self.d * (self.lag + 1)

    @property
    def m(self) -> int:
        """Number of VAR regressors ``d p + 1``."""
        return 1 + self.d * self.lag

    def lag_index(self, sensor: int, lag: int) -> int:
        """Position of ``y_{t-lag}[sensor]`` in the augmented row (``lag = 0``: target)."""
        return 1 + lag * self.d + sensor

    def regressor_index(self) -> np.ndarray:
        """Positions of the VAR regressors ``[1, y_{t-1}, ..., y_{t-p}]``."""
        return np.concatenate([[0], np.arange(1 + self.d, self.k)])

    # -- data ----------------------------------------------------------------------------
    @property
    def n_samples(self) -> int:
        """Samples seen since creation."""
        return self._t

    @property
    def n_obs(self) -> float:
        """Rows in the statistics (weighted count ``n_eff`` under forgetting)."""
        if self.window is not None and self._stale:  # G[0, 0] without building G
            return float(self._window_valid().sum())
        return float(self._G[0, 0])

    @property
    def shift(self) -> np.ndarray:
        """Per-sensor centring of the statistics (raw value = centred value + shift)."""
        return self._shift.copy()

    def gram(self) -> np.ndarray:
        """The centred cross-product matrix ``G`` (a copy)."""
        return self._gram().copy()

    def _gram(self) -> np.ndarray:
        """``G``; for the window, rebuilt from the ring buffer if samples came since."""
        if self._stale:
            self._stale = False
            rows, ok = self._window_rows()
            n = int(ok.sum())
            A = np.empty((n, self.k))
            A[:, 0] = 1.0
            A[:, 1:] = rows[ok].reshape(n, -1)  # centred already
            self._G = np.ascontiguousarray(A.T) @ A  # a strided A.T is 10x slower in BLAS
        return self._G

    def release(self) -> None:
        """Drop the window's cached ``G`` (it is rebuilt when next read).

        A monitor that reads the window every few samples calls this after its checks,
        so that many idle windows do not each hold a ``k x k`` matrix. No effect with
        forgetting, where ``G`` is the state.
        """
        if self.window is not None:
            self._G = _NO_GRAM
            self._stale = True

    def _row(self, r: int) -> np.ndarray | None:
        """Centred augmented row of time ``r`` (``None`` if unavailable or not finite)."""
        if r < self.lag or r - self.lag < self._t - self._L:
            return None
        lo = (r - self.lag) % self._L
        if lo + self.lag < self._L:  # no wrap: a reversed slice, no index arrays
            if not self._ok[lo : lo + self.lag + 1].all():
                return None
            x = self._buf[lo : lo + self.lag + 1][::-1]
        else:
            idx = (r - np.arange(self.lag + 1)) % self._L
            if not self._ok[idx].all():
                return None
            x = self._buf[idx]
        out = np.empty(self.k)
        out[0] = 1.0
        out[1:] = x.ravel()
        return out

    def update(self, y: np.ndarray) -> None:
        """Add one sample (a length-``d`` vector; non-finite values void its rows)."""
        y = np.asarray(y, dtype=np.float64)
        if y.shape != (self.d,):
            raise ValueError(f"expected {self.d} values, got shape {y.shape}")
        finite = np.isfinite(y)
        if not self._has_shift and finite.all():
            self._shift = y.copy()
            self._has_shift = True
        self._buf[self._t % self._L] = np.where(finite, y - self._shift, 0.0)
        self._ok[self._t % self._L] = finite.all()
        self._t += 1
        if self.window is not None:
            self._G, self._stale = _NO_GRAM, True  # G follows when read (_gram)
        else:
            new = self._row(self._t - 1)
            if self.forgetting is not None and self.forgetting < 1.0:
                self._G *= self.forgetting
            if new is not None:
                self._G += np.outer(new, new)
        self._since_refresh += 1
        if self._since_refresh >= self.refresh_every:
            self.refresh()

    def refresh(self) -> None:
        """Re-centre on the current mean (for the window: ``G`` follows when read)."""
        self._since_refresh = 0
        if self.window is not None:
            rows, ok = self._window_rows()
            if ok.any():
                self._rebase(rows[ok, 0, :].mean(axis=0))
            self._G, self._stale = _NO_GRAM, True
            return
        n = self._G[0, 0]
        if n <= 0:
            return
        # a' = a - delta a_0 moves the centre; G' = G - delta g0' - g0 delta' + G00 delta delta'.
        mean = self._G[0, 1 : 1 + self.d] / n
        delta = np.concatenate([[0.0], np.tile(mean, self.lag + 1)])
        g0 = self._G[:, 0].copy()
        self._G = self._G - np.outer(delta, g0) - np.outer(g0, delta) + n * np.outer(delta, delta)
        self._rebase(mean)

    def _rebase(self, delta: np.ndarray) -> None:
        """Move the centre by ``delta``: the shift gains it, the stored samples lose it."""
        self._shift = self._shift + delta
        self._buf[self._ok] -= delta.astype(self._buf.dtype)

    def _window_index(self) -> np.ndarray:
        """Ring positions of every row in the sliding window, shape ``(n, p + 1)``."""
        assert self.window is not None
        first = max(self.lag, self._t - self.window)
        r = np.arange(first, self._t)
        return (r[:, None] - np.arange(self.lag + 1)[None, :]) % self._L

    def _window_valid(self) -> np.ndarray:
        return self._ok[self._window_index()].all(axis=1)

    def _window_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Centred samples of every row in the sliding window, shape ``(n, p + 1, d)``
        (float64), and validity."""
        idx = self._window_index()
        return self._buf[idx].astype(np.float64), self._ok[idx].all(axis=1)

    def design(self) -> tuple[np.ndarray, np.ndarray]:
        """Raw regressors ``(n, m)`` and targets ``(n, d)`` of the window's valid rows."""
        if self.window is None:
            raise ValueError("design() needs the sliding window")
        rows, ok = self._window_rows()
        rows = rows[ok] + self._shift
        Z = np.hstack([np.ones((rows.shape[0], 1)), rows[:, 1:, :].reshape(rows.shape[0], -1)])
        return Z, rows[:, 0, :]

    def last_regressors(self) -> np.ndarray | None:
        """Raw ``[1, y_t, ..., y_{t-p+1}]``: the regressors that predict the next sample."""
        if self._t < self.lag:
            return None
        lo = (self._t - self.lag) % self._L
        if lo + self.lag <= self._L:  # no wrap: a reversed slice, no index arrays
            if not self._ok[lo : lo + self.lag].all():
                return None
            x = self._buf[lo : lo + self.lag][::-1]
        else:
            idx = (self._t - 1 - np.arange(self.lag)) % self._L
            if not self._ok[idx].all():
                return None
            x = self._buf[idx]
        out = np.empty(1 + self.d * self.lag)
        out[0] = 1.0
        np.add(x, self._shift, out=out[1:].reshape(self.lag, self.d))
        return out

    def fit(self, ridge: float = 1e-10) -> np.ndarray:
        """Least-squares VAR coefficients in raw units, shape ``(m, d)``.

        Row 0 is the intercept, then lag 1 of every sensor, lag 2, ...: the prediction
        of the next sample is ``last_regressors() @ fit()``.
        """
        z = self.regressor_index()
        G = self._gram()
        Gzz = G[np.ix_(z, z)]
        Gzy = G[np.ix_(z, np.arange(1, 1 + self.d))]
        Gzz = Gzz + ridge * np.trace(Gzz) / len(z) * np.eye(len(z))
        L = np.linalg.cholesky(Gzz)
        B = np.linalg.solve(L.T, np.linalg.solve(L, Gzy))
        # Centred fit -> raw intercept: c_raw = c + s_target - sum(beta * s_lagged).
        lagged_shift = np.tile(self._shift, self.lag)
        B[0] = B[0] + self._shift - lagged_shift @ B[1:]
        return B

    # -- state ---------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """Constructor parameters (JSON-safe)."""
        return {
            "d": self.d,
            "lag": self.lag,
            "window": self.window,
            "forgetting": self.forgetting,
            "refresh_every": self.refresh_every,
            "compact": self.compact,
        }

    def get_state(self) -> dict[str, Any]:
        """JSON-safe state (arrays packed)."""
        return {
            "buf": pack(self._buf),
            "centred": True,  # samples minus the shift (before 2026-12-02: raw samples)
            "ok": pack(self._ok),
            # the window's G is a function of the buffer: rebuilt on restore, not stored
            "G": None if self.window is not None else pack(self._G),
            "shift": pack(self._shift),
            "t": self._t,
            "has_shift": self._has_shift,
            "since_refresh": self._since_refresh,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`get_state`; checks shapes."""
        buf, shift = unpack(state["buf"]), unpack(state["shift"])
        # A window's G is rebuilt from the buffer (snapshots before 2026-12-01 stored it)
        G = _NO_GRAM if self.window is not None else unpack(state.get("G"))
        ok = unpack(state["ok"])
        if ok is None or ok.shape != self._ok.shape:
            raise ValueError("validity flags have the wrong shape")
        if buf is None or buf.shape != self._buf.shape:
            raise ValueError("ring buffer has the wrong shape")
        if G is None or G.shape != self._G.shape or shift is None or shift.shape != (self.d,):
            raise ValueError("statistics have the wrong shape")
        if not state.get("centred", False):  # an older snapshot: raw samples
            buf = np.where(ok[:, None], buf - shift, 0.0)
        self._ok = ok
        self._buf = buf.astype(self._buf.dtype)
        self._G, self._shift = G, shift
        self._stale = self.window is not None
        self._t = int(state["t"])
        self._has_shift = bool(state["has_shift"])
        self._since_refresh = int(state["since_refresh"])

    @classmethod
    def from_snapshot(cls, snap: dict[str, Any]) -> OnlineVAR:
        """Rebuild from ``{"params": ..., "state": ...}``."""
        var = cls(**snap["params"])
        var.set_state(snap["state"])
        return var

    def snapshot(self) -> dict[str, Any]:
        """``{"params": ..., "state": ...}``, JSON-safe."""
        return {"params": self.params(), "state": self.get_state()}

    def state_size(self) -> int:
        """Bytes of numeric state (with the window's ``G`` if it is cached now)."""
        return int(self._buf.nbytes + self._ok.nbytes + self._G.nbytes + self._shift.nbytes + 16)

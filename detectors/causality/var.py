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
ring buffer holds samples already centred, so it can be stored narrower than float64
(``storage``) at no cost to a large offset:

* ``"float32"``: half the memory; each sample keeps 7 significant digits of its
  *deviation* from the recent mean (of its raw value, a large offset would eat them).
* ``"int16"``: a quarter; each sensor's deviations are integers of a power-of-two
  ``unit``, chosen so the largest deviation in the ring takes 2^13 to 2^14 steps (the
  first non-zero deviation sets it; a larger one doubles it, and every refresh halves
  it while the ring's deviations allow). The rounding error is at most ``unit / 2``,
  ~3e-5 of the window's largest deviation (below one unit for samples re-rounded when
  it doubled): noise some 90 dB below the signal's range, which matters only for a
  sensor whose innovations are that far below its swings. Re-centring moves the shift
  by whole units, so it adds no error.

A row is used only if its ``p + 1`` samples are all finite: a NaN costs ``p + 1`` rows,
never poisons ``G`` (the buffer stores 0 and a validity flag, so state stays finite).

Cost per update: O(k^2) with forgetting; O(d) for the window, plus O(W k^2) each time
its ``G`` is read after new samples. State: ``k (k + 1) / 2`` floats for ``G`` with
forgetting (it is symmetric: only its upper triangle is kept, and the full matrix is
built when read) plus ``(p + 1) d`` samples; ``(W + p + 1) d`` samples for the sliding
window, whose ``G`` is only a cache: dropped as soon as a sample makes it stale (or on
:meth:`OnlineVAR.release`), and never in snapshots.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from detectors._arrays import pack, stack_alike, unpack

#: Updates between re-centrings of a growing window (``forgetting = 1``).
_CUMULATIVE_REFRESH = 1000

#: The window's ``G`` when it is not cached.
_NO_GRAM = np.zeros((0, 0))

#: Storage types of the ring buffer.
_STORAGE = {"float64": np.float64, "float32": np.float32, "int16": np.int16}

#: int16 storage: the largest deviation takes at most 2^14 steps after a unit change
#: (the other half of the range is headroom before the next doubling), and the first
#: non-zero deviation of a sensor 2^12.
_STEPS, _FIRST_STEPS, _INT16_MAX = 2.0**14, 2.0**12, 32767


def _in_steps(x: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """``x / unit`` rounded to whole steps; 0 where a sensor has no unit yet."""
    return np.rint(np.divide(x, unit, out=np.zeros(x.shape), where=unit > 0))


def _pow2_at_least(x: np.ndarray) -> np.ndarray:
    """The smallest powers of two at or above the positive ``x`` (at least 2^-1000, so
    that a denormal deviation still gets a usable unit)."""
    return np.exp2(np.ceil(np.log2(np.maximum(x, 2.0**-1000))))


#: Row and column of each entry of a packed upper triangle, per matrix size (shared).
_TRIANGLES: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _triangle(k: int) -> tuple[np.ndarray, np.ndarray]:
    if k not in _TRIANGLES:
        _TRIANGLES[k] = np.triu_indices(k)
    return _TRIANGLES[k]


def _unpack_triangle(packed: np.ndarray, k: int) -> np.ndarray:
    """The symmetric ``k x k`` matrix whose upper triangle is ``packed``."""
    rows, cols = _triangle(k)
    full = np.empty((k, k))
    full[rows, cols] = packed
    full[cols, rows] = packed
    return full


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
    storage
        Type of the ring buffer's centred samples: ``"float64"`` (the default, what the
        exact match with ``statsmodels`` is tested with), ``"float32"`` (half the
        memory; relative error ~6e-8 of each deviation from the recent mean) or
        ``"int16"`` (a quarter; error below ~3e-5 of the window's largest deviation;
        see the module docstring). Only the sliding window has a ring worth narrowing.

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
        storage: str = "float64",
    ) -> None:
        if d < 1 or lag < 1:
            raise ValueError("d and lag must be at least 1")
        if (window is None) == (forgetting is None):
            raise ValueError("give exactly one of window and forgetting")
        if window is not None and window < lag + 1:
            raise ValueError("window must exceed the lag")
        if forgetting is not None and not 0.0 < forgetting <= 1.0:
            raise ValueError("forgetting must be in (0, 1]")
        if storage not in _STORAGE:
            raise ValueError(f"storage must be one of {sorted(_STORAGE)}")
        if storage == "int16" and window is None:
            raise ValueError("int16 storage needs the sliding window")
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
        self.storage = storage
        k = self.k
        self._L = (self.window + self.lag + 1) if self.window else (self.lag + 1)
        # samples minus the shift (0 where not finite); int16: in steps of _unit
        self._buf = np.zeros((self._L, self.d), dtype=_STORAGE[storage])
        self._unit = np.zeros(self.d if storage == "int16" else 0)  # 0: not set yet
        self._ok = np.zeros(self._L, dtype=bool)  # slot holds an all-finite sample
        # The window's G is a cache (empty when stale, see _gram); forgetting's is state,
        # kept as its packed upper triangle (_Gt).
        self._G = _NO_GRAM
        self._Gt = np.zeros(0 if self.window is not None else k * (k + 1) // 2)
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
        if self.window is None:
            return float(self._Gt[0])  # G[0, 0]
        if self._stale:  # G[0, 0] without building G
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
        if self.window is None:
            return _unpack_triangle(self._Gt, self.k)
        if self._stale:
            self._stale = False
            A = self._window_design()
            self._G = np.ascontiguousarray(A.T) @ A  # a strided A.T is 10x slower in BLAS
        return self._G

    def _window_design(self) -> np.ndarray:
        """The window's augmented rows ``[1, y_t, ..., y_{t-p}]`` (centred), one per
        valid row, shape ``(n, k)``."""
        assert self.window is not None
        samples = self._window_samples()
        if samples is None:  # a gap: pick the valid rows one by one
            rows, ok = self._window_rows()
            n = int(ok.sum())
            A = np.empty((n, self.k))
            A[:, 0] = 1.0
            A[:, 1:] = rows[ok].reshape(n, -1)
            return A
        # no gap: lag j of row i is sample i + p - j, so each lag block is one slice
        p, d = self.lag, self.d
        n = len(samples) - p
        A = np.empty((n, self.k))
        A[:, 0] = 1.0
        for j in range(p + 1):
            A[:, 1 + j * d : 1 + (j + 1) * d] = samples[p - j : p - j + n]
        return A

    def _window_samples(self) -> np.ndarray | None:
        """Centred float64 samples of the window's rows and their lags, oldest first
        (``n + p`` for ``n`` rows); ``None`` if one is missing."""
        assert self.window is not None
        first = max(self.lag, self._t - self.window)
        count = self._t - first + self.lag
        if count <= self.lag:
            return None
        start = (first - self.lag) % self._L
        if start + count <= self._L:
            stored, ok = self._buf[start : start + count], self._ok[start : start + count]
        else:  # wrapped: the end of the ring, then its start
            rest = start + count - self._L
            stored = np.concatenate((self._buf[start:], self._buf[:rest]))
            ok = np.concatenate((self._ok[start:], self._ok[:rest]))
        return self._values(stored) if ok.all() else None

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
        deviation = np.where(finite, y - self._shift, 0.0)
        if self.storage == "int16":
            self._buf[self._t % self._L] = self._quantise(deviation)
        else:
            self._buf[self._t % self._L] = deviation
        self._ok[self._t % self._L] = finite.all()
        self._t += 1
        if self.window is not None:
            self._G, self._stale = _NO_GRAM, True  # G follows when read (_gram)
        else:
            new = self._row(self._t - 1)
            if self.forgetting is not None and self.forgetting < 1.0:
                self._Gt *= self.forgetting
            if new is not None:
                rows, cols = _triangle(self.k)
                self._Gt += new[rows] * new[cols]
        self._since_refresh += 1
        if self._since_refresh >= self.refresh_every:
            self.refresh()

    def _append(self, stored: np.ndarray) -> None:
        """Store one finite sample already in this ring's form (centred; in steps for
        int16), without the statistics' work of :meth:`update` (the stacks of many
        windows below do that work for all of them)."""
        slot = self._t % self._L
        self._buf[slot] = stored
        self._ok[slot] = True
        self._t += 1
        self._since_refresh += 1

    # -- int16 storage -------------------------------------------------------------------
    def _quantise(self, deviation: np.ndarray) -> np.ndarray:
        """One sample's deviations in steps of ``_unit`` (set or coarsened as needed);
        float64 holding integers, for the int16 ring to take exactly."""
        unit = self._unit
        if not unit.all():  # a sensor without a unit yet: its first non-zero deviation
            first = (unit == 0.0) & (deviation != 0.0)
            unit[first] = _pow2_at_least(np.abs(deviation[first]) / _FIRST_STEPS)
            steps = _in_steps(deviation, unit)
        else:  # the common case: four small ufuncs
            steps = np.rint(deviation / unit)
        if np.abs(steps).max() > _INT16_MAX:
            self._coarsen(np.where(np.abs(steps) > _INT16_MAX, np.abs(deviation) / _STEPS, 0.0))
            unit = self._unit
            steps = _in_steps(deviation, unit)
        return steps

    def _coarsen(self, needed: np.ndarray) -> None:
        """Raise each sensor's unit to a power of two of at least ``needed`` (0: keep),
        re-rounding its stored steps."""
        grow = needed > self._unit
        if not grow.any():
            return
        new = self._unit.copy()
        new[grow] = _pow2_at_least(needed[grow])
        factor = new / self._unit  # powers of two
        self._buf[:, grow] = np.rint(self._buf[:, grow] / factor[grow]).astype(np.int16)
        self._unit = new

    def _rebase_steps(self, delta: np.ndarray) -> None:
        """int16 re-centring: move the shift by whole units near ``delta`` (no rounding
        of the stored steps), then use finer units where the deviations now allow."""
        unit = self._unit
        moved = _in_steps(delta, unit)
        self._shift = self._shift + moved * unit
        steps = self._buf.astype(np.int64)
        steps[self._ok] -= moved.astype(np.int64)
        largest = np.abs(steps).max(axis=0)
        # a range beyond int16 after the move (an extreme sample still in the ring)
        coarse = largest > _INT16_MAX
        if coarse.any():
            factor = np.where(coarse, _pow2_at_least(largest / _STEPS), 1.0)
            steps = np.rint(steps / factor).astype(np.int64)
            self._unit = unit * factor
            largest = np.abs(steps).max(axis=0)
        fine = (largest > 0) & (largest < _STEPS / 2)
        if fine.any():
            # halve the unit while the largest deviation stays within 2^14 steps
            factor = np.where(
                fine, np.exp2(np.floor(np.log2(_STEPS / np.maximum(largest, 1)))), 1.0
            )
            steps = steps * factor.astype(np.int64)
            self._unit = self._unit / factor
        self._buf = steps.astype(np.int16)

    def _values(self, stored: np.ndarray) -> np.ndarray:
        """Centred float64 samples from stored rows (the last axis is the sensor)."""
        if self.storage == "int16":
            return stored * self._unit
        return stored.astype(np.float64)

    def refresh(self) -> None:
        """Re-centre on the current mean (for the window: ``G`` follows when read)."""
        self._since_refresh = 0
        if self.window is not None:
            rows, ok = self._window_rows()
            if ok.any():
                self._rebase(rows[ok, 0, :].mean(axis=0))
            self._G, self._stale = _NO_GRAM, True
            return
        G = self._gram()
        n = G[0, 0]
        if n <= 0:
            return
        # a' = a - delta a_0 moves the centre; G' = G - delta g0' - g0 delta' + G00 delta delta'.
        mean = G[0, 1 : 1 + self.d] / n
        delta = np.concatenate([[0.0], np.tile(mean, self.lag + 1)])
        g0 = G[:, 0].copy()
        G = G - np.outer(delta, g0) - np.outer(g0, delta) + n * np.outer(delta, delta)
        self._Gt = G[_triangle(self.k)]
        self._rebase(mean)

    def _rebase(self, delta: np.ndarray) -> None:
        """Move the centre by ``delta``: the shift gains it, the stored samples lose it."""
        if self.storage == "int16":
            self._rebase_steps(delta)
            return
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
        return self._values(self._buf[idx]), self._ok[idx].all(axis=1)

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
        lags = self._last_lags()
        if lags is None:
            return None
        out = np.empty(1 + self.d * self.lag)
        out[0] = 1.0
        np.add(lags, self._shift, out=out[1:].reshape(self.lag, self.d))
        return out

    def last_deviations(self, centre: np.ndarray) -> np.ndarray | None:
        """``[y_t, ..., y_{t-p+1}] - centre`` (each lag minus the length-``d``
        ``centre``): the regressors of a model centred there, without rounding the
        deviations through raw values."""
        lags = self._last_lags()
        if lags is None:
            return None
        return (lags + (self._shift - centre)).ravel()

    def _last_lags(self) -> np.ndarray | None:
        """Centred float64 ``[y_t, ..., y_{t-p+1}]``, shape ``(p, d)`` (``None`` if one is
        missing or not finite)."""
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
        return self._values(x)

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
            "storage": self.storage,
        }

    def get_state(self) -> dict[str, Any]:
        """JSON-safe state (arrays packed)."""
        return {
            "buf": pack(self._buf),
            "unit": pack(self._unit) if self.storage == "int16" else None,
            "centred": True,  # samples minus the shift (before 2026-12-02: raw samples)
            "ok": pack(self._ok),
            # the window's G is a function of the buffer: rebuilt on restore, not stored
            "G": None if self.window is not None else pack(self._Gt),  # upper triangle
            "shift": pack(self._shift),
            "t": self._t,
            "has_shift": self._has_shift,
            "since_refresh": self._since_refresh,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`get_state`; checks shapes."""
        buf, shift = unpack(state["buf"]), unpack(state["shift"])
        # A window's G is rebuilt from the buffer (snapshots before 2026-12-01 stored it)
        G = self._Gt if self.window is not None else unpack(state.get("G"))
        if G is not None and G.ndim == 2 and G.shape == (self.k, self.k):
            G = G[_triangle(self.k)]  # snapshots before 2026-12-01: the full matrix
        ok = unpack(state["ok"])
        if ok is None or ok.shape != self._ok.shape:
            raise ValueError("validity flags have the wrong shape")
        if buf is None or buf.shape != self._buf.shape:
            raise ValueError("ring buffer has the wrong shape")
        unit = unpack(state.get("unit"))
        if buf.dtype == np.int16 and (unit is None or unit.shape != (self.d,)):
            raise ValueError("int16 ring buffer without its units")
        if unit is not None and not np.all(np.isfinite(unit) & (unit >= 0)):
            raise ValueError("ring buffer units must be finite and >= 0")
        if G is None or G.shape != self._Gt.shape or shift is None or shift.shape != (self.d,):
            raise ValueError("statistics have the wrong shape")
        self._ok = ok
        if buf.dtype == np.int16 and unit is not None and self.storage == "int16":
            self._buf, self._unit = buf, unit.astype(np.float64)  # bit-identical
        else:
            if buf.dtype == np.int16 and unit is not None:
                buf = buf * unit
            if not state.get("centred", False):  # an older snapshot: raw samples
                buf = np.where(ok[:, None], buf - shift, 0.0)
            self._store_ring(np.asarray(buf, dtype=np.float64))
        self._Gt, self._shift = G, shift
        self._G, self._stale = _NO_GRAM, self.window is not None
        self._t = int(state["t"])
        self._has_shift = bool(state["has_shift"])
        self._since_refresh = int(state["since_refresh"])

    def _store_ring(self, deviations: np.ndarray) -> None:
        """Replace the ring with these centred samples, in this window's storage."""
        if self.storage != "int16":
            self._buf = deviations.astype(self._buf.dtype)
            return
        largest = np.abs(deviations).max(axis=0)
        self._unit = np.where(largest > 0, _pow2_at_least(largest / _STEPS), 0.0)
        self._buf = _in_steps(deviations, self._unit).astype(np.int16)

    @classmethod
    def from_snapshot(cls, snap: dict[str, Any]) -> OnlineVAR:
        """Rebuild from ``{"params": ..., "state": ...}``."""
        params = dict(snap["params"])
        if "compact" in params:  # before 2026-12-01: compact meant float32
            params["storage"] = "float32" if params.pop("compact") else "float64"
        var = cls(**params)
        var.set_state(snap["state"])
        return var

    def snapshot(self) -> dict[str, Any]:
        """``{"params": ..., "state": ...}``, JSON-safe."""
        return {"params": self.params(), "state": self.get_state()}

    def state_size(self) -> int:
        """Bytes of numeric state (with the window's ``G`` if it is cached now)."""
        arrays = (self._buf, self._ok, self._G, self._Gt, self._shift, self._unit)
        return int(sum(a.nbytes for a in arrays) + 16)


def _last_samples(windows: list[OnlineVAR], back: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The stored samples ``back`` steps before each window's newest (float64, shape
    ``(n, len(back), d)``), and whether all of them are present, gathered at once."""
    t = np.array([v._t for v in windows])
    ring = stack_alike([v._buf for v in windows])
    ok = stack_alike([v._ok for v in windows])
    idx = (t[:, None] - 1 - back) % ring.shape[1]
    at = np.arange(len(windows))[:, None]
    return ring[at, idx].astype(np.float64), (t >= len(back)) & ok[at, idx].all(axis=1)


class WindowStack:
    """The int16 sliding windows of many monitors, moved on by one sample each at once.

    For the stacked Granger checks (:mod:`detectors.causality.stacked`): a sample's
    rounding to steps is one numpy call for every window; each window then only
    stores its row of steps. A window that needs more (its first sample, a unit to set
    or to coarsen, a refresh) takes :meth:`OnlineVAR.update` and is read again. The
    last ``p`` samples of every window are kept stacked, in steps, so the lagged
    deviations of all windows are one product too. Windows must share ``d`` and
    ``lag``; each is left as its own updates would leave it.
    """

    def __init__(self, windows: list[OnlineVAR]) -> None:
        first = windows[0]
        if any(
            v.window is None or v.storage != "int16" or (v.d, v.lag) != (first.d, first.lag)
            for v in windows
        ):
            raise ValueError("a WindowStack holds int16 sliding windows of one shape")
        self.windows = windows
        self._back = np.arange(first.lag)
        self.shift = stack_alike([v._shift for v in windows])
        self.unit = stack_alike([v._unit for v in windows])
        # steps of y_{t-1}, ..., y_{t-p} (newest first); whether they are all present;
        # and whether the shift and units are set too (the fast path of push)
        self.last, self.lagged = _last_samples(windows, self._back)
        has_shift = np.array([v._has_shift for v in windows])
        self.fast = self.lagged & has_shift & self.unit.all(axis=1)

    def _read(self, k: int) -> None:
        v = self.windows[k]
        self.shift[k], self.unit[k] = v._shift, v._unit
        idx = (v._t - 1 - self._back) % v._L
        self.last[k] = v._buf[idx]
        self.lagged[k] = v._t >= v.lag and bool(v._ok[idx].all())
        self.fast[k] = self.lagged[k] and v._has_shift and bool(v._unit.all())

    def deviations(self, n: int, centre: np.ndarray) -> np.ndarray:
        """:meth:`OnlineVAR.last_deviations` of the first ``n`` windows, ``(n, p d)``
        (rows of windows without all their lags are not meaningful: see ``lagged``)."""
        lags = self.last[:n] * self.unit[:n, None, :]
        return (lags + (self.shift[:n] - centre)[:, None, :]).reshape(n, -1)

    def push(self, y: np.ndarray) -> None:
        """Add the finite sample ``y[k]`` to window ``k`` for the first ``len(y)``."""
        n = len(y)
        with np.errstate(divide="ignore", invalid="ignore"):
            steps = np.rint((y - self.shift[:n]) / self.unit[:n])
        fast = self.fast[:n] & (np.abs(steps).max(axis=1) <= _INT16_MAX)
        self.last[:n, 1:] = self.last[:n, :-1]
        self.last[:n, 0] = steps
        for k in range(n):
            v = self.windows[k]
            if not fast[k]:
                v.update(y[k])
                self._read(k)
                continue
            v._append(steps[k])
            v._G, v._stale = _NO_GRAM, True
            if v._since_refresh >= v.refresh_every:
                v.refresh()
                self._read(k)


class GrowingStack:
    """The growing windows (``forgetting = 1``) of many monitors' warm-ups, moved on by
    one sample each at once: the new augmented rows and their cross-products for every
    window in one numpy call each. Each window's packed ``G`` is a view into one stacked
    array while the stack lives (:meth:`close` gives each its own back). A window
    without its lags, or due for a refresh, takes :meth:`OnlineVAR.update`.
    """

    def __init__(self, windows: list[OnlineVAR]) -> None:
        first = windows[0]
        if any(
            v.forgetting != 1.0 or v.storage != "float64" or (v.d, v.lag) != (first.d, first.lag)
            for v in windows
        ):
            raise ValueError("a GrowingStack holds growing float64 windows of one shape")
        self.windows = windows
        self.rows, self.cols = _triangle(first.k)
        self.gram = stack_alike([v._Gt for v in windows])
        for k, v in enumerate(windows):
            v._Gt = self.gram[k]
        self.shift = stack_alike([v._shift for v in windows])
        self._back = np.arange(first.lag + 1)
        self.last, lagged = _last_samples(windows, self._back)  # centred y_{t-1}, ...
        # the next row exists without a gap, and a refresh is not due at it
        ready = np.array([v._has_shift and v._since_refresh + 1 < v.refresh_every for v in windows])
        self.fast = lagged & ready

    def _read(self, k: int) -> None:
        v = self.windows[k]
        if v._Gt.base is not self.gram:  # a refresh replaced it
            self.gram[k] = v._Gt
            v._Gt = self.gram[k]
        self.shift[k] = v._shift
        idx = (v._t - 1 - self._back) % v._L
        self.last[k] = v._buf[idx]
        # the next row exists without a gap; a refresh is not due at it
        self.fast[k] = v._has_shift and v._t >= v.lag and bool(v._ok.all())
        self.fast[k] &= v._since_refresh + 1 < v.refresh_every

    def push(self, y: np.ndarray) -> None:
        """Add the finite sample ``y[k]`` to window ``k`` for the first ``len(y)``."""
        n = len(y)
        deviation = y - self.shift[:n]
        fast = self.fast[:n].copy()
        self.last[:n, 1:] = self.last[:n, :-1]
        self.last[:n, 0] = deviation
        new = np.empty((n, self.windows[0].k))
        new[:, 0] = 1.0
        new[:, 1:] = self.last[:n].reshape(n, -1)
        cross = new[:, self.rows] * new[:, self.cols]
        cross[~fast] = 0.0
        self.gram[:n] += cross
        for k in range(n):
            v = self.windows[k]
            if not fast[k]:
                v.update(y[k])
                self._read(k)
                continue
            v._append(deviation[k])
            self.fast[k] = v._since_refresh + 1 < v.refresh_every

    def close(self) -> None:
        """Every window gets its own packed ``G`` back (a view would keep the stack)."""
        for v in self.windows:
            v._Gt = v._Gt.copy()

"""SPOT and DSPOT: streaming thresholds from extreme value theory.

By the Pickands-Balkema-de Haan theorem, the excesses of (almost) any distribution over
a high threshold ``t`` follow a generalised Pareto distribution GPD(``gamma``,
``sigma``). SPOT calibrates ``t`` as a high empirical quantile of ``n_init`` values, fits
the GPD to the ``N_t`` peaks above it, and extrapolates the level exceeded with
probability ``q``::

    z_q = t + sigma / gamma * ((q n / N_t)^(-gamma) - 1)      (gamma != 0)
    z_q = t - sigma * log(q n / N_t)                          (gamma == 0)

where ``n`` counts the values learned. On the stream, a value above ``z_q`` is an
alarm; a value in ``(t, z_q]`` is a new peak, and the fit and ``z_q`` are refreshed;
anything else only increments ``n``.

One deviation from the paper (``guard``): the paper never learns alarms, so the peaks
it fits are the GPD *truncated* at ``z_q``. The fit then sees a lighter tail than there
is, lowers ``z_q``, truncates more, and so on: on i.i.d. exponential data at
``q = 1e-3`` we measured 3.7x the target alarm rate. Here an alarm is still learned as
a peak when it lies below the level of probability ``q / guard`` (same fit), so the
truncation moves ``guard`` times further into the tail, where its bias is negligible,
while gross outliers stay out of the fit. ``guard = 1`` is the paper's rule.

Bounded cost (our choice, not the paper's): the GPD is fitted to a moving window of
the last ``max_peaks`` peaks, while the peak *rate* ``N_t / n`` uses all peaks ever seen;
a refit costs O(``max_peaks``) and happens every ``refit_every`` peaks (``z_q`` is
recomputed at every peak). Between peaks nothing but a counter changes, which lets
:meth:`SPOT.step_many` skip the values below ``t`` in bulk with identical results.

Compact peaks (also ours): the kept peaks are stored in half precision, in units of the
mean excess at calibration (so any score scale fits float16's range and keeps ~3.3
significant digits, a relative error below 5e-4, far inside the sampling error of a
tail fitted to a few hundred peaks). A peak beyond 65,504 units is kept at that
bound; the guard keeps such outliers out of the fit anyway. This is a quarter of
float64's memory, and the peaks are most of a key's threshold state.

DSPOT runs SPOT on ``x_i - mean(last `depth` non-alarm values)``, for streams whose
level drifts.

Reference: A. Siffer, P.-A. Fouque, A. Termier, C. Largouët, "Anomaly Detection in
Streams with Extreme Value Theory", KDD 2017 (algorithms 1 and 2).
"""

from __future__ import annotations

import heapq
import math
from typing import Any

import numpy as np

from detectors._arrays import pack, unpack
from detectors.thresholds.base import Threshold, register_threshold
from detectors.thresholds.gpd import fit_gpd

#: The largest finite float16: a kept peak (in units of the mean excess) is capped here.
_F16_MAX = float(np.finfo(np.float16).max)


def _unit_of(excess: np.ndarray) -> float:
    """The unit the peaks are kept in: their mean excess (1 if there is none)."""
    mean = float(np.mean(excess, dtype=np.float64)) if len(excess) else 0.0
    return mean if math.isfinite(mean) and mean > 0 else 1.0


@register_threshold("spot")
class SPOT(Threshold):
    """Streaming Peaks-Over-Threshold: alarm when a value exceeds its ``1 - q`` quantile.

    Parameters
    ----------
    q
        Target alarm probability per value (must be below ``1 - init_quantile``).
    n_init
        Values used to calibrate ``t`` and the first fit (no alarms meanwhile).
    init_quantile
        Empirical quantile of the calibration values that becomes ``t``.
    max_peaks
        Peaks kept for the fit (a moving window of the most recent ones).
    refit_every
        Refit the GPD every this many new peaks (``z_q`` follows every peak).
    guard
        Alarms below the level of probability ``q / guard`` are still learned as peaks
        (see the module docstring; 1 reproduces the paper).
    empirical_peaks
        A level with at least this many of the kept peaks above it is read off those
        peaks (their empirical quantile) instead of the GPD: the model is needed only
        beyond the data, and a GPD fits bounded or lumpy tails (uniform noise, a square
        wave's repeated edges) poorly inside it. 0 (the paper) always uses the GPD.
    min_gamma
        Floor of the fitted shape (``None``: the paper, no floor). On surprises
        ``-log10 p`` of a calibrated detector the tail is exactly exponential
        (``gamma = 0``); a negative fit from a few hundred peaks is mostly noise, and
        it lowers the extrapolated level: on exponential data at ``q = 1e-4`` we
        measured 2.5x the target rate without a floor, 0.9x with ``min_gamma = 0``.

    Notes
    -----
    Cost per value: O(1) below ``t``; a peak costs O(``max_peaks``) when it refits.
    State: ``max_peaks`` half-precision peaks and 9 numbers (plus, during calibration,
    the largest ``(1 - init_quantile) n_init + 1`` values, not all ``n_init``).
    One-sided (upper). Use it on the surprise ``-log10(1 - score)`` of detector scores,
    or on any stream whose upper tail is stationary. Do not use it where the tail
    changes faster than ``max_peaks / (1 - init_quantile)`` values, or with ``q``
    below about ``1 / (number of values that will ever be seen)``: the extrapolation is
    then untestable. Calibrated alarm rates are in ``tests/detectors/test_spot_calibration.py``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(8)
    >>> spot = SPOT(q=1e-3, n_init=2000)
    >>> spot.fit(rng.exponential(1.0, 2000))
    >>> 6.0 < spot.threshold < 8.0  # the exponential's 1 - 1e-3 quantile is log(1000) = 6.9
    True
    >>> alarms = spot.step_many(rng.exponential(1.0, 100_000))
    >>> 50 < int(alarms.sum()) < 200
    True
    >>> spot.step(30.0)
    True
    """

    def __init__(
        self,
        q: float = 1e-4,
        n_init: int = 1000,
        init_quantile: float = 0.98,
        max_peaks: int = 1000,
        refit_every: int = 10,
        guard: float = 100.0,
        empirical_peaks: int = 0,
        min_gamma: float | None = None,
    ) -> None:
        if guard < 1.0:
            raise ValueError("guard must be at least 1")
        if not 0.0 < init_quantile < 1.0:
            raise ValueError("init_quantile must be in (0, 1)")
        if not 0.0 < q < 1.0 - init_quantile:
            raise ValueError("q must be in (0, 1 - init_quantile)")
        if empirical_peaks < 0:
            raise ValueError("empirical_peaks must be >= 0")
        if n_init < 10 or max_peaks < 10 or refit_every < 1:
            raise ValueError("need n_init >= 10, max_peaks >= 10, refit_every >= 1")
        self.q = float(q)
        self.n_init = int(n_init)
        self.init_quantile = float(init_quantile)
        self.max_peaks = int(max_peaks)
        self.refit_every = int(refit_every)
        self.guard = float(guard)
        self.empirical_peaks = int(empirical_peaks)
        self.min_gamma = None if min_gamma is None else float(min_gamma)
        # Calibration keeps only what the fit needs: the largest values (a min-heap of
        # _top_k()) and how many were seen; n_init floats per key would dwarf the rest.
        self._init: list[float] = []  # min-heap of the largest calibration values
        self._keep = self._top_k()  # its size
        self._n_calib = 0  # calibration values seen
        self._calib_max = -math.inf  # the largest of them
        # ring buffer of excesses over t in units of _unit, in half precision (see the
        # module docstring): the largest part of a key's state
        self._peaks = np.zeros(self.max_peaks, dtype=np.float16)
        self._unit = 1.0  # the mean excess at calibration
        self._head = 0  # next ring slot
        self._kept = 0  # peaks in the ring
        self._n = 0  # non-alarm values seen (the paper's n)
        self._n_peaks = 0  # all peaks ever (the paper's N_t)
        self._n_level = 0  # n when the levels were last updated (at the last peak)
        self._since_fit = 0
        self._t = math.nan
        self._gamma = 0.0
        self._sigma = 0.0
        self._zq = math.nan
        self._zguard = math.nan  # level of probability q / guard
        self._alarms = 0

    def params(self) -> dict[str, Any]:
        return {
            "q": self.q,
            "n_init": self.n_init,
            "init_quantile": self.init_quantile,
            "max_peaks": self.max_peaks,
            "refit_every": self.refit_every,
            "guard": self.guard,
            "empirical_peaks": self.empirical_peaks,
            "min_gamma": self.min_gamma,
        }

    # -- calibration -----------------------------------------------------------------------
    @property
    def calibrated(self) -> bool:
        """Whether the initial fit has been made."""
        return not math.isnan(self._t)

    def fit(self, init_values: Any) -> None:
        """Calibrate on ``init_values`` (any length >= 10), replacing any previous state."""
        v = np.asarray(init_values, dtype=np.float64).ravel()
        v = v[np.isfinite(v)]
        if len(v) < 10:
            raise ValueError("need at least 10 finite calibration values")
        t = float(np.quantile(v, self.init_quantile))
        self._start(t, v[v > t] - t, len(v))

    def calibration_max(self) -> float:
        """The largest value seen while calibrating (``-inf`` before any, ``nan`` after)."""
        return self._calib_max if math.isnan(self._t) else math.nan

    def calibration_left(self) -> int:
        """Values still to come before the fit (the one that makes it included); 0 after."""
        return 0 if self.calibrated else self.n_init - self._n_calib

    def _top_k(self) -> int:
        """Largest values that determine ``np.quantile(v, init_quantile)`` and the peaks
        of ``n_init`` values: those from sorted position ``floor((n - 1) q0)`` up."""
        return self.n_init - math.floor((self.n_init - 1) * self.init_quantile)

    def _fit_top(self) -> None:
        """:meth:`fit` from the kept largest values: the same ``t`` (linear
        interpolation between the two lowest of them) and the same peaks."""
        top = np.sort(np.asarray(self._init, dtype=np.float64))
        n = self._n_calib
        pos = (n - 1) * self.init_quantile
        frac = pos - math.floor(pos)
        t = float(top[0] + frac * (top[1] - top[0])) if len(top) > 1 else float(top[0])
        self._start(t, top[top > t] - t, n)

    def _start(self, t: float, excess: np.ndarray, n: int) -> None:
        self._init = []
        self._n_calib = 0
        self._t = t
        self._n = n
        self._n_peaks = len(excess)
        self._head = self._kept = 0
        self._unit = _unit_of(excess)
        for y in excess[-self.max_peaks :]:
            self._push(float(y))
        self._refit()

    def _push(self, y: float) -> None:
        self._peaks[self._head] = min(y / self._unit, _F16_MAX)
        self._head = (self._head + 1) % self.max_peaks
        self._kept = min(self._kept + 1, self.max_peaks)

    def _kept_peaks(self) -> np.ndarray:
        """The kept peaks (excesses over ``t``) in the scores' own units, float64."""
        return self._peaks[: self._kept].astype(np.float64) * self._unit

    def _refit(self) -> None:
        peaks = self._kept_peaks()
        self._gamma, self._sigma = fit_gpd(peaks)
        if self.min_gamma is not None and self._gamma < self.min_gamma and self._kept:
            # A shape below the floor: keep the floor, and match the mean excess,
            # E[y] = sigma / (1 - gamma) (at 0: the exponential's MLE, sigma = mean).
            self._gamma = self.min_gamma
            self._sigma = float(np.mean(peaks)) * (1.0 - self.min_gamma)
        self._since_fit = 0
        self._update_zq()

    def level(self, q: float) -> float:
        """The fitted level exceeded with probability ``q`` (``threshold`` is ``level(q)``)."""
        return self._level(q)

    def _level(self, q: float) -> float:
        """The fitted level exceeded with probability ``q``."""
        if self._n_peaks == 0 or self._sigma <= 0:
            # No excess seen yet: nothing to extrapolate, anything above t is extreme.
            return self._t
        r = q * self._n_level / self._n_peaks
        if r >= 1.0:
            # q is at least the peak rate: the level lies below t, where nothing was
            # kept; t itself is exceeded less often than asked (the safe side).
            return self._t
        if self.empirical_peaks and r < 1.0 and r * self._kept >= self.empirical_peaks:
            # Enough kept peaks lie above this level to read it off them: no model.
            kept = self._kept_peaks()
            return self._t + float(np.quantile(kept, 1.0 - r))
        g = self._gamma
        if abs(g) < 1e-12:
            return self._t - self._sigma * math.log(r)
        return self._t + self._sigma / g * (r ** (-g) - 1.0)

    def _update_zq(self) -> None:
        # Levels use n as of this peak (the paper recomputes z_q only at peaks), so any
        # level is a function of the stored state, whenever it is asked for.
        self._n_level = self._n
        self._zq = self._level(self.q)
        self._zguard = self._level(self.q / self.guard)

    # -- streaming -------------------------------------------------------------------------
    @property
    def threshold(self) -> float:
        return self._zq

    @property
    def peaks_seen(self) -> int:
        """Peaks (values over ``t``) seen since calibration: the levels move only with it."""
        return self._n_peaks

    @property
    def alarms(self) -> int:
        """Alarms raised so far."""
        return self._alarms

    def step(self, value: float) -> bool:
        v = float(value)
        if not math.isfinite(v):
            return False
        if math.isnan(self._t):  # calibrating (not self.calibrated, without the call)
            if len(self._init) < self._keep:
                heapq.heappush(self._init, v)
            else:
                heapq.heappushpop(self._init, v)
            self._n_calib += 1
            self._calib_max = max(self._calib_max, v)
            if self._n_calib >= self.n_init:
                self._fit_top()
            return False
        alarm = v > self._zq
        self._alarms += alarm
        if alarm and not v <= self._zguard:
            return True  # too extreme to be the tail of normal data: keep it out
        self._n += 1
        if v > self._t:
            self._n_peaks += 1
            self._since_fit += 1
            self._push(v - self._t)
            if self._since_fit >= self.refit_every:
                self._refit()
            else:
                self._update_zq()
        return alarm

    def quiet_level(self) -> float:
        """The level a value must stay under for :meth:`step` only to count it.

        Under both ``t`` (no peak) and the threshold (no alarm), a step adds one to the
        values seen and changes nothing else: callers that judge many values can test
        this bound and call :meth:`step_quiet` instead. ``-inf`` until calibrated.
        """
        if not self.calibrated:
            return -math.inf
        return min(self._t, self._zq)

    def step_quiet(self, n: int = 1) -> None:
        """:meth:`step` of ``n`` finite values under :meth:`quiet_level` (each returns
        ``False``)."""
        self._n += n

    def step_many(self, values: Any) -> np.ndarray:
        """Alarms of ``values`` in order: exactly ``[step(v) for v in values]``, faster."""
        v = np.asarray(values, dtype=np.float64).ravel()
        out = np.zeros(len(v), dtype=bool)
        i = 0
        while i < len(v) and not self.calibrated:
            out[i] = self.step(v[i])
            i += 1
        if i == len(v):
            return out
        finite = np.isfinite(v)
        seen = np.concatenate([[0], np.cumsum(finite)])  # finite values before index j
        candidates = np.flatnonzero(finite & (v > self._t))
        candidates = candidates[candidates >= i]
        for j in (int(c) for c in candidates):
            if self._zq < self._t:
                break  # z_q fell below t (peak rate under q): no bulk skipping then
            self._n += int(seen[j] - seen[i])  # the normal values in between
            out[j] = self.step(v[j])
            i = j + 1
        for j in range(i, len(v)):
            out[j] = self.step(v[j])
        return out

    # -- state -----------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        return {
            "init": pack(np.asarray(self._init, dtype=np.float64)),
            # until the ring wraps, only its filled prefix
            "peaks": pack(
                self._peaks[: self._kept] if self._kept < self.max_peaks else self._peaks
            ),
            "ints": [self._head, self._kept, self._n, self._n_peaks, self._since_fit, self._alarms],
            "calib": self._n_calib,
            "n_level": self._n_level,
            # Floats go through pack so nan and the exact bits survive JSON.
            "floats": pack(np.array([self._t, self._gamma, self._sigma, self._zq, self._zguard])),
            "unit": self._unit,
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        init = unpack(state["init"])
        peaks = unpack(state["peaks"])
        floats = unpack(state["floats"])
        assert init is not None and peaks is not None and floats is not None
        if peaks.ndim != 1 or len(peaks) > self.max_peaks or floats.shape != (5,):
            raise ValueError("state arrays do not match the parameters")
        stored = len(peaks)
        if "unit" in state:
            unit = float(state["unit"])
        else:
            # Snapshots before 2026-12-01 hold raw float32 excesses: rescale them.
            unit = _unit_of(peaks)
            peaks = np.minimum(peaks.astype(np.float64) / unit, _F16_MAX)
        if not (math.isfinite(unit) and unit > 0):
            raise ValueError("peak unit must be a positive number")
        ring = np.zeros(self.max_peaks, dtype=np.float16)
        ring[:stored] = peaks
        peaks = ring
        self._unit = unit
        # Snapshots from before the heap hold every calibration value: keep their top.
        self._n_calib = int(state.get("calib", len(init)))
        values = sorted(float(x) for x in init)
        self._init = values[-self._top_k() :] if len(values) > self._top_k() else values
        heapq.heapify(self._init)
        self._calib_max = max(self._init) if self._init else -math.inf
        self._peaks = peaks
        ints = [int(x) for x in state["ints"]]
        self._head, self._kept, self._n, self._n_peaks, self._since_fit, self._alarms = ints
        if self._kept > stored or not 0 <= self._head < self.max_peaks:
            raise ValueError("peak counters do not match the stored peaks")
        self._n_level = int(state.get("n_level", self._n))
        self._t, self._gamma, self._sigma, self._zq, self._zguard = (float(x) for x in floats)

    def state_size(self) -> int:
        return self._peaks.nbytes + 8 * len(self._init) + 11 * 8


@register_threshold("dspot")
class DSPOT(Threshold):
    """SPOT on the deviation from a moving average of the last ``depth`` normal values.

    Parameters
    ----------
    depth
        Values in the moving average (the paper's ``d``).
    q, n_init, init_quantile, max_peaks, refit_every, guard
        Those of the inner :class:`SPOT` (``n_init`` counts deviations, which start
        once ``depth`` values have filled the window).

    Notes
    -----
    Cost per value: O(``depth``) plus SPOT's. State: ``depth + 2`` floats plus SPOT's.
    Use it for a stream whose level drifts but whose excursions around the level have a
    stable tail. Do not use it when a level shift should become the new normal: alarms
    are not added to the window, so after a real shift DSPOT keeps alarming until
    :meth:`fit` recalibrates it (or run it on the scores of an adaptive detector).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(9)
    >>> x = np.linspace(0.0, 50.0, 20_000) + rng.normal(0.0, 1.0, 20_000)  # drifting
    >>> ds = DSPOT(depth=20, q=1e-3, n_init=2000)
    >>> alarms = ds.step_many(x)
    >>> int(alarms.sum()) < 60  # about 18 expected; a static SPOT would alarm on the drift
    True
    """

    def __init__(
        self,
        depth: int = 10,
        q: float = 1e-4,
        n_init: int = 1000,
        init_quantile: float = 0.98,
        max_peaks: int = 1000,
        refit_every: int = 10,
        guard: float = 100.0,
        empirical_peaks: int = 0,
        min_gamma: float | None = None,
    ) -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self.depth = int(depth)
        self.spot = SPOT(
            q=q,
            n_init=n_init,
            init_quantile=init_quantile,
            max_peaks=max_peaks,
            refit_every=refit_every,
            guard=guard,
        )
        self._window = np.zeros(self.depth)  # ring buffer of recent normal values
        self._head = 0
        self._filled = 0

    def params(self) -> dict[str, Any]:
        return {"depth": self.depth, **self.spot.params()}

    @property
    def threshold(self) -> float:
        """Alarm level on the *deviation* from the moving average."""
        return self.spot.threshold

    @property
    def level(self) -> float:
        """The moving average: alarms are values above ``level + threshold``."""
        return float(np.mean(self._window[: self._filled])) if self._filled else math.nan

    def fit(self, init_values: Any) -> None:
        """Calibrate on ``init_values`` (the first ``depth`` fill the window)."""
        v = np.asarray(init_values, dtype=np.float64).ravel()
        v = v[np.isfinite(v)]
        if len(v) < self.depth + 10:
            raise ValueError("need at least depth + 10 finite calibration values")
        self._window[:] = 0.0
        self._head = self._filled = 0
        dev = []
        for x in v:
            if self._filled == self.depth:
                dev.append(x - self.level)
            self._push(float(x))
        self.spot.fit(dev)

    def _push(self, x: float) -> None:
        self._window[self._head] = x
        self._head = (self._head + 1) % self.depth
        self._filled = min(self._filled + 1, self.depth)

    def step(self, value: float) -> bool:
        v = float(value)
        if not math.isfinite(v):
            return False
        if self._filled < self.depth:
            self._push(v)
            return False
        alarm = self.spot.step(v - self.level)
        if not alarm:  # the paper's rule: alarms never move the level
            self._push(v)
        return alarm

    def step_many(self, values: Any) -> np.ndarray:
        """Alarms of ``values`` in order (a plain loop: the level moves every value)."""
        return np.array([self.step(x) for x in np.asarray(values, dtype=np.float64).ravel()])

    def _get_state(self) -> dict[str, Any]:
        return {
            "window": pack(self._window),
            "head": self._head,
            "filled": self._filled,
            "spot": self.spot._get_state(),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        window = unpack(state["window"])
        if window is None or window.shape != (self.depth,):
            raise ValueError("window does not match depth")
        self._window = window
        self._head = int(state["head"])
        self._filled = int(state["filled"])
        self.spot._set_state(state["spot"])

    def state_size(self) -> int:
        return self._window.nbytes + 16 + self.spot.state_size()

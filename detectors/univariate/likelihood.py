"""Anomaly likelihood: how unusual a member's recent anomaly scores are, per channel.

A forecaster's raw score says how surprising one value is; on noisy real series some
keys are surprising all the time and others never are. The *anomaly likelihood*
(S. Ahmad, A. Lavin, S. Purdy and Z. Agha, "Unsupervised real-time anomaly detection
for streaming data", Neurocomputing 262, 2017, section 4.2) asks instead whether the
*recent* raw scores are unusual for this key: it averages the last ``window`` raw
scores and compares that average with a Gaussian fitted to the averages of the key's
long history,

``L_t = 1 - Q((mean_window(raw) - mu) / sigma)``,

so a burst of moderately surprising values stands out on a calm key and routine
surprises on a noisy key do not. Two rules of the paper's reference detector (NAB's
``numenta_detector.py``) come with it: a likelihood extreme twice in a row is reported
at a lower level the second time (one alarm per burst), and a value outside the range
seen so far by more than ``range_tolerance`` of that range is anomalous outright (a
"spatial" anomaly: a level never seen before needs no statistics).

Two rules of ours make it fit plant sensors as well as NAB's web metrics:

- the range rule needs the member to be surprised too (``range_surprise``): a level
  reached by a jump is anomalous, a level reached by a drift or a daily cycle that the
  member predicted is not (a plant's first half-day does not show its whole range);
- a *record surprise* (``record_margin`` times the largest surprise this key has
  shown, and at least ``record_floor``) is reported with its own tail: averaging over
  ``window`` values dilutes a single spike or step, which on a calm key is the fault
  itself. A record raises the bar only to the level it crossed, so one huge spike
  does not hide the next smaller one.

Here the raw score is the member's surprise ``-log10 p`` divided by ``surprise_cap``
(capped at 1), and the Gaussian of the averages is an exponentially weighted mean and
variance with memory ``history`` (the paper re-fits a window of 8,640 averages every
100 samples; this keeps O(1) state per channel). Lower bounds on its mean and variance
are the reference code's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import detectors
from detectors._arrays import normal_two_sided_tail, pack, unpack
from detectors.base import UnivariateDetector, as_univariate
from detectors.registry import register

#: Lower bounds of the fitted mean and variance of averaged raw scores (the reference
#: implementation's): a key that was never surprising is not alarmed by a whisper.
_MIN_MEAN = 0.03
_MIN_VAR = 0.0003
#: Tail reported for a value outside the range seen so far (a score of 1 - 1e-16).
_RANGE_TAIL = 1e-16


@register("likelihood")
class AnomalyLikelihood(UnivariateDetector):
    """Anomaly likelihood of a member's surprises, with the range rule, per channel.

    Parameters
    ----------
    member
        Spec ``{"name": ..., "params": {...}}`` of the univariate detector whose
        surprises are judged (default: the default ``max_of`` forecast + flatline).
    window
        Raw scores averaged (the paper's 10).
    history
        Memory, in samples, of the mean and variance of the averages (the paper's
        8,640).
    learning
        Samples whose averages are not used for the fit (the member warms up).
    estimation
        Further samples fitted before likelihoods are given (scores are 0 until
        ``learning + estimation`` samples have been learned, but for the range rule).
    surprise_cap
        Surprise (``-log10 p``) that maps to a raw score of 1.
    range_tolerance
        A value beyond the range seen so far by more than this share of the range
        scores 1 (from the first samples, warm-up or not); ``None`` turns the rule off.
    range_surprise
        The range rule needs at least this member surprise (``-log10 p``); 0 is the
        reference detector's rule.
    record_margin
        A member surprise above this multiple of the largest learned so far (and at
        least ``record_floor``) is reported with its own tail; ``None`` turns the rule
        off.
    record_floor
        Smallest surprise the record rule reports.
    record_from
        Learned samples before surprises count towards the record (the member's own
        warm-up is wild).
    red, yellow
        Tails: a tail at or below ``red`` right after another is reported as ``yellow``.

    Notes
    -----
    Cost per update: the member's, plus O(window) per channel. State: the member's,
    plus ``window + 8`` floats per channel.

    Use it on real, noisy series where how surprising a key usually is differs from
    key to key and over time (NAB's web, cloud and traffic metrics). Do not use it
    where a single extreme value must alarm at once whatever the key's history (use
    the member alone), or on series that trend for good (every new level is "outside
    the range": turn the range rule off).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> det = AnomalyLikelihood(learning=100, estimation=100)
    >>> det.learn_many(rng.normal(0.0, 1.0, 600))
    >>> det.score_one(0.3) < 0.99
    True
    >>> det.score_one(25.0) > 0.9999   # beyond the range seen so far
    True
    """

    def __init__(
        self,
        member: dict[str, Any] | None = None,
        window: int = 10,
        history: int = 8640,
        learning: int = 375,
        estimation: int = 375,
        surprise_cap: float = 16.0,
        range_tolerance: float | None = 0.05,
        range_surprise: float = 2.0,
        record_margin: float | None = 1.5,
        record_floor: float = 6.0,
        record_from: int = 100,
        red: float = 1e-5,
        yellow: float = 1e-3,
    ) -> None:
        if window < 1 or history < 1 or learning < 0 or estimation < 1:
            raise ValueError("window, history and estimation must be >= 1, learning >= 0")
        if not surprise_cap > 0.0:
            raise ValueError("surprise_cap must be positive")
        if range_tolerance is not None and range_tolerance < 0.0:
            raise ValueError("range_tolerance must be >= 0 (or None)")
        if range_surprise < 0.0 or record_floor < 0.0 or record_from < 0:
            raise ValueError("range_surprise, record_floor and record_from must be >= 0")
        if record_margin is not None and record_margin < 1.0:
            raise ValueError("record_margin must be >= 1 (or None)")
        if not 0.0 < red <= yellow < 1.0:
            raise ValueError("need 0 < red <= yellow < 1")
        spec = member or {
            "name": "max_of",
            "params": {
                "members": [{"name": "forecast", "params": {"order": 2}}, {"name": "flatline"}]
            },
        }
        self.member_spec: dict[str, Any] = {
            "name": str(spec["name"]),
            "params": dict(spec.get("params", {})),
        }
        self.member = as_univariate(
            detectors.create(self.member_spec["name"], **self.member_spec["params"]), "likelihood"
        )
        self.window = int(window)
        self.history = int(history)
        self.learning = int(learning)
        self.estimation = int(estimation)
        self.surprise_cap = float(surprise_cap)
        self.range_tolerance = None if range_tolerance is None else float(range_tolerance)
        self.range_surprise = float(range_surprise)
        self.record_margin = None if record_margin is None else float(record_margin)
        self.record_floor = float(record_floor)
        self.record_from = int(record_from)
        self.red = float(red)
        self.yellow = float(yellow)
        self._ring = np.zeros((self.window, 0))  # last raw scores, slot = count % window
        self._count = np.zeros(0, dtype=np.int64)  # raw scores learned per channel
        self._fit = np.zeros((3, 0))  # averages fitted, their mean, their variance
        self._prev_tail = np.ones(0)  # the last learned sample's unfiltered tail
        self._lo = np.zeros(0)
        self._hi = np.zeros(0)
        self._record = np.zeros(0)  # largest learned surprise (raised at most to the bar)
        # Raw score and surprise of the last judged x (scored, then learned).
        self._cache: tuple[bytes, np.ndarray, np.ndarray] | None = None

    def params(self) -> dict[str, Any]:
        return {
            "member": self.member_spec,
            "window": self.window,
            "history": self.history,
            "learning": self.learning,
            "estimation": self.estimation,
            "surprise_cap": self.surprise_cap,
            "range_tolerance": self.range_tolerance,
            "range_surprise": self.range_surprise,
            "record_margin": self.record_margin,
            "record_floor": self.record_floor,
            "record_from": self.record_from,
            "red": self.red,
            "yellow": self.yellow,
        }

    @classmethod
    def conformance_params(cls) -> dict[str, Any]:
        """Small, fast parameters for the shared conformance tests."""
        return {"learning": 20, "estimation": 30, "history": 500}

    @property
    def n_channels(self) -> int:
        return int(self._count.size)

    def grow(self, d: int) -> None:
        self.member.grow(d)
        self._ensure(d)

    def _ensure(self, d: int) -> None:
        """Own per-channel arrays up to ``d`` channels (the member sizes itself)."""
        extra = d - self.n_channels
        if extra <= 0:
            return
        self._ring = np.hstack([self._ring, np.zeros((self.window, extra))])
        self._count = np.concatenate([self._count, np.zeros(extra, dtype=np.int64)])
        self._fit = np.hstack([self._fit, np.zeros((3, extra))])
        self._prev_tail = np.concatenate([self._prev_tail, np.ones(extra)])
        self._lo = np.concatenate([self._lo, np.zeros(extra)])
        self._hi = np.concatenate([self._hi, np.zeros(extra)])
        self._record = np.concatenate([self._record, np.zeros(extra)])

    def expected(self) -> tuple[np.ndarray, np.ndarray]:
        fn = getattr(self.member, "expected", None)
        if fn is None:
            return np.empty(0), np.empty(0)
        loc, scale = fn()
        return np.asarray(loc), np.asarray(scale)

    # -- the likelihood -------------------------------------------------------------
    def _raw(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw scores and surprises of ``x`` from the member (before it learns ``x``)."""
        key = x.tobytes()
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1], self._cache[2]
        surprise = np.nan_to_num(self.member._surprise_vector(x), nan=0.0, posinf=1e300)
        raw = np.minimum(surprise / self.surprise_cap, 1.0)
        self._cache = (key, raw, surprise)
        return raw, surprise

    def _record_bar(self) -> np.ndarray:
        """Surprise above which a value is a record (record rule on)."""
        return np.maximum(self._record * (self.record_margin or 1.0), self.record_floor)

    def _average(self, raw: np.ndarray) -> np.ndarray:
        """Mean of the last ``window - 1`` learned raw scores and ``raw``."""
        n = np.minimum(self._count, self.window - 1)
        total = self._ring.sum(axis=0) if self.window > 1 else np.zeros_like(raw)
        if self.window > 1:
            # The slot about to be overwritten holds the oldest score once the ring is full.
            oldest = self._ring[self._count % self.window, np.arange(raw.size)]
            total = total - np.where(self._count >= self.window, oldest, 0.0)
        return (total + raw) / (n + 1)

    def _tail(self, avg: np.ndarray) -> np.ndarray:
        """Upper Gaussian tail of ``avg`` under the fitted distribution of averages."""
        mean = np.maximum(self._fit[1], _MIN_MEAN)
        sd = np.sqrt(np.maximum(self._fit[2], _MIN_VAR))
        z = (avg - mean) / sd
        half = 0.5 * normal_two_sided_tail(z)
        return np.asarray(np.where(z >= 0.0, half, 1.0 - half), dtype=np.float64)

    def _judge(self, x: np.ndarray) -> np.ndarray:
        """Reported tail probability of ``x`` per channel (1 where no evidence)."""
        self._ensure(len(x))
        raw, surprise = self._raw(x)
        warm = self.learning + self.estimation
        ready = np.isfinite(x) & (self._count >= warm) & (self._fit[0] > 0)
        tail = np.ones(len(x))
        if ready.any():
            t = self._tail(self._average(raw))
            # One alarm per burst: an extreme right after an extreme is reported lower.
            t = np.where((t <= self.red) & (self._prev_tail <= self.red), self.yellow, t)
            tail = np.where(ready, t, 1.0)
        if self.record_margin is not None:
            record = ready & (surprise > self._record_bar())
            tail = np.where(record, np.minimum(tail, 10.0 ** -np.minimum(surprise, 16.0)), tail)
        if self.range_tolerance is not None:
            # From the first samples on, as in the reference detector: a new level needs
            # no fitted distribution (the decision layer's warm-up mutes the first ones).
            span = self._hi - self._lo
            margin = self.range_tolerance * span
            outside = (span > 0) & ((x > self._hi + margin) | (x < self._lo - margin))
            # Reached by a jump the member did not predict (a drift or cycle it did is not).
            outside &= surprise >= self.range_surprise
            tail = np.where(outside & np.isfinite(x), _RANGE_TAIL, tail)
        return tail

    def _score_vector(self, x: np.ndarray) -> np.ndarray:
        return 1.0 - self._judge(x)

    def _surprise_vector(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(-np.log10(self._judge(x)), dtype=np.float64)

    def _learn_vector(self, x: np.ndarray) -> None:
        self._ensure(len(x))
        raw, surprise = self._raw(x)
        self._cache = None
        self.member._learn_vector(x)
        ok = np.isfinite(x)
        if not ok.any():
            return
        if self.record_margin is not None:
            # A record raises the bar only to the level it crossed (one huge spike must
            # not hide the next smaller one).
            counted = ok & (self._count >= self.record_from)
            seen = np.minimum(surprise, self._record_bar())
            self._record = np.where(counted, np.maximum(self._record, seen), self._record)
        avg = self._average(raw)
        fitted = self._fit[0] > 0
        tail = np.where(fitted, self._tail(avg), 1.0)
        cols = np.arange(len(x))
        slot = self._count % self.window
        self._ring[slot[ok], cols[ok]] = raw[ok]
        first = ok & (self._count == 0)
        self._lo = np.where(first, x, np.where(ok, np.minimum(self._lo, x), self._lo))
        self._hi = np.where(first, x, np.where(ok, np.maximum(self._hi, x), self._hi))
        self._count = np.where(ok, self._count + 1, self._count)
        self._prev_tail = np.where(ok, tail, self._prev_tail)
        fit = ok & (self._count > self.learning)
        if fit.any():
            n, mean, var = self._fit
            n_new = np.where(fit, n + 1.0, n)
            a = 1.0 / np.minimum(np.maximum(n_new, 1.0), self.history)
            delta = avg - mean
            self._fit = np.vstack(
                [
                    n_new,
                    np.where(fit, mean + a * delta, mean),
                    np.where(fit, (1.0 - a) * (var + a * delta * delta), var),
                ]
            )

    # -- state --------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        return {
            "member": self.member.snapshot(),
            "ring": pack(self._ring),
            "count": pack(self._count),
            "fit": pack(self._fit),
            "prev_tail": pack(self._prev_tail),
            "lo": pack(self._lo),
            "hi": pack(self._hi),
            "record": pack(self._record),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        member = as_univariate(detectors.restore(state["member"]), "likelihood")
        if member.name != self.member_spec["name"]:
            raise ValueError("likelihood snapshot member does not match its parameters")
        names = ("ring", "count", "fit", "prev_tail", "lo", "hi")
        arrays = {k: unpack(state[k]) for k in names}
        d = 0 if arrays["count"] is None else int(arrays["count"].size)
        # Snapshots from before the record rule have no record: it starts from zero.
        arrays["record"] = unpack(state["record"]) if "record" in state else np.zeros(d)
        shapes = {
            "ring": (self.window, d),
            "count": (d,),
            "fit": (3, d),
            "prev_tail": (d,),
            "lo": (d,),
            "hi": (d,),
            "record": (d,),
        }
        for key, shape in shapes.items():
            arr = arrays[key]
            if arr is None or arr.shape != shape:
                raise ValueError(f"state {key!r} has the wrong shape")
        ok = {k: v for k, v in arrays.items() if v is not None}
        self.member = member
        self._ring, self._count, self._fit = ok["ring"], ok["count"], ok["fit"]
        self._prev_tail, self._lo, self._hi = ok["prev_tail"], ok["lo"], ok["hi"]
        self._record = ok["record"]
        self._cache = None

    def state_size(self) -> int:
        own = (
            self._ring,
            self._count,
            self._fit,
            self._prev_tail,
            self._lo,
            self._hi,
            self._record,
        )
        return self.member.state_size() + sum(int(a.nbytes) for a in own)

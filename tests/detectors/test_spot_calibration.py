"""SPOT's observed alarm rate against its target ``q`` on anomaly-free streams.

Streams: the surprise ``-log10(1 - score)`` of a robust z-score on i.i.d. normal data
(what the pipeline feeds SPOT), and raw exponential and Student-t(5) values. The
normal stream is scored as 100 independent channels in one vectorised detector, then
concatenated channel by channel (the scores of i.i.d. data are i.i.d. after warm-up).
"""

from __future__ import annotations

import json

import numpy as np

from detectors._arrays import score_to_surprise
from detectors.thresholds import DSPOT, SPOT, restore_threshold
from detectors.univariate import RobustZScore

N_INIT = 2000


def stream(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "normal->zscore":
        channels = 100
        rows = n // channels + 200
        scores = RobustZScore(alpha=0.01).score_learn_many(rng.normal(0.0, 1.0, (rows, channels)))
        return score_to_surprise(scores[200:].T.ravel())[:n]
    if kind == "exponential":
        return rng.exponential(1.0, n)
    return rng.standard_t(5, n)


def alarm_rate(kind: str, q: float, n: int, seed: int) -> float:
    x = stream(kind, n + N_INIT, seed)
    spot = SPOT(q=q, n_init=N_INIT)
    alarms = spot.step_many(x)
    return float(alarms[N_INIT:].mean())


def table(rows: list[tuple[str, float, int, float]]) -> str:
    lines = [f"{'stream':<16} {'q':>7} {'values':>9} {'alarm rate':>11} {'ratio':>6}"]
    for kind, q, n, rate in rows:
        lines.append(f"{kind:<16} {q:>7.0e} {n:>9d} {rate:>11.2e} {rate / q:>6.2f}")
    return "\n".join(lines)


KINDS = ("normal->zscore", "exponential", "student-t(5)")


def test_alarm_rate_matches_q_for_1e2_and_1e3() -> None:
    rows = []
    for kind in KINDS:
        for q in (1e-2, 1e-3):
            rows.append((kind, q, 200_000, alarm_rate(kind, q, 200_000, seed=1)))
    print("\n" + table(rows))
    for kind, q, _, rate in rows:
        assert 0.5 * q <= rate <= 2.0 * q, (kind, q, rate)


def test_alarm_rate_matches_q_for_1e4() -> None:
    rows = [(kind, 1e-4, 1_000_000, alarm_rate(kind, 1e-4, 1_000_000, seed=2)) for kind in KINDS]
    print("\n" + table(rows))
    for kind, q, _, rate in rows:
        # ~100 expected alarms: Poisson noise alone is +-20%, plus the extrapolation.
        assert 0.4 * q <= rate <= 2.5 * q, (kind, q, rate)


def test_paper_rule_without_guard_inflates_the_rate() -> None:
    # The documented reason for ``guard``: never learning alarms biases the fit.
    x = stream("exponential", 200_000 + N_INIT, seed=3)
    paper = SPOT(q=1e-3, n_init=N_INIT, guard=1.0).step_many(x)[N_INIT:].mean()
    ours = SPOT(q=1e-3, n_init=N_INIT).step_many(x)[N_INIT:].mean()
    print(f"\npaper rule: {paper:.2e}, guard=100: {ours:.2e} (q = 1e-3)")
    assert paper > ours


def test_step_many_equals_step_and_snapshot_round_trip() -> None:
    x = stream("student-t(5)", 30_000, seed=4)
    x[5000] = np.nan
    a, b = SPOT(q=1e-3), SPOT(q=1e-3)
    got = a.step_many(x[:20_000])
    want = np.array([b.step(v) for v in x[:20_000]])
    np.testing.assert_array_equal(got, want)
    assert a.threshold == b.threshold
    twin = restore_threshold(json.loads(json.dumps(a.snapshot())))
    np.testing.assert_array_equal(twin.step_many(x[20_000:]), a.step_many(x[20_000:]))
    assert a.state_size() == twin.state_size() < 20_000


def test_threshold_nan_until_calibrated() -> None:
    spot = SPOT(n_init=100)
    assert np.isnan(spot.threshold)
    assert not any(spot.step(v) for v in np.arange(100.0))
    assert np.isfinite(spot.threshold)


def test_dspot_follows_drift_and_restores() -> None:
    rng = np.random.default_rng(5)
    x = np.linspace(0.0, 100.0, 50_000) + rng.normal(0.0, 1.0, 50_000)
    ds = DSPOT(depth=20, q=1e-3, n_init=N_INIT)
    alarms = ds.step_many(x[:40_000])
    rate = alarms[N_INIT:].mean()
    assert rate < 3e-3
    static = SPOT(q=1e-3, n_init=N_INIT).step_many(x[:40_000])[N_INIT:].mean()
    assert static > 3 * rate  # a static threshold alarms on the drift
    twin = restore_threshold(json.loads(json.dumps(ds.snapshot())))
    np.testing.assert_array_equal(twin.step_many(x[40_000:]), ds.step_many(x[40_000:]))


class _ExactSPOT(SPOT):
    """SPOT with its peaks in float64, unscaled: the reference for the compact one."""

    def _start(self, t: float, excess: np.ndarray, n: int) -> None:
        self._peaks = np.zeros(self.max_peaks, dtype=np.float64)
        super()._start(t, excess, n)
        self._unit = 1.0
        self._peaks[:] = 0.0
        self._head = self._kept = 0
        for y in excess[-self.max_peaks :]:
            self._push(float(y))
        self._refit()


def test_half_precision_peaks_fit_any_score_scale() -> None:
    # Peaks are kept as float16 in units of the calibration's mean excess: levels must
    # scale with the data whatever its magnitude (raw float16 would overflow at 1e6 and
    # lose every digit at 1e-6) and match float64 peaks to far below a tail fit's
    # sampling error (several %).
    x = np.abs(stream("student-t(5)", 60_000, seed=6))
    qs = (1e-3, 1e-4, 1e-5)
    exact = _ExactSPOT(q=1e-4, n_init=N_INIT, max_peaks=250)
    exact.step_many(x)
    assert exact._peaks.dtype == np.float64
    want = [exact.level(q) for q in qs]
    for scale in (1e-6, 1.0, 1e6):
        spot = SPOT(q=1e-4, n_init=N_INIT, max_peaks=250)
        spot.step_many(x * scale)
        assert spot._peaks.dtype == np.float16 and spot._kept == 250
        got = [spot.level(q) / scale for q in qs]
        np.testing.assert_allclose(got, want, rtol=2e-3)


def test_snapshots_with_float32_peaks_still_restore() -> None:
    # Snapshots before 2026-12-01 kept raw float32 excesses and no unit.
    x = stream("exponential", 20_000, seed=7)
    spot = SPOT(q=1e-3, n_init=N_INIT, max_peaks=250)
    spot.step_many(x[:15_000])
    state = spot._get_state()
    old = dict(state)
    old.pop("unit")
    raw = spot._peaks[: spot._kept].astype(np.float64) * spot._unit
    from detectors._arrays import pack

    old["peaks"] = pack(raw.astype(np.float32))
    twin = SPOT(**spot.params())
    twin._set_state(json.loads(json.dumps(old)))
    assert twin._peaks.dtype == np.float16 and twin.threshold == spot.threshold
    np.testing.assert_allclose(twin._kept_peaks(), spot._kept_peaks(), rtol=1e-3)
    np.testing.assert_array_equal(twin.step_many(x[15_000:]), spot.step_many(x[15_000:]))

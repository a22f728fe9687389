"""Each univariate detector detects what it is for (and stays quiet on what it is not)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from detectors import registry
from detectors.normalise import Normalised, OnlineScaler
from detectors.univariate import (
    CUSUM,
    ARForecast,
    EWMAChart,
    PageHinkley,
    RobustZScore,
    SeasonalBaseline,
)


def first_alarm(scores: np.ndarray, level: float = 0.99) -> int:
    hits = np.flatnonzero(np.asarray(scores) > level)
    return int(hits[0]) if len(hits) else -1


def test_cusum_detects_one_sigma_shift_quickly() -> None:
    delays = []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        det = CUSUM()
        det.learn_many(rng.normal(5.0, 2.0, 1000))
        delays.append(first_alarm(det.score_learn_many(rng.normal(7.0, 2.0, 200))))
    assert min(delays) >= 0 and np.median(delays) <= 15, delays  # Siegmund ARL1 ~ 10


def test_page_hinkley_detects_one_sigma_drop_quickly() -> None:
    delays = []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        det = PageHinkley()
        det.learn_many(rng.normal(5.0, 2.0, 1000))
        delays.append(first_alarm(det.score_learn_many(rng.normal(3.0, 2.0, 200)), 0.98))
    assert min(delays) >= 0 and np.median(delays) <= 25, delays


def test_ewma_catches_half_sigma_shift_a_zscore_misses() -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0.0, 1.0, 2000), rng.normal(0.75, 1.0, 300)])
    ewma = EWMAChart(lam=0.05).score_learn_many(x)
    z = RobustZScore().score_learn_many(x)
    assert ewma[2000:2300].max() > 0.9999
    assert (ewma[2000:2300] > 0.999).mean() > 5 * (z[2000:2300] > 0.999).mean()


def test_in_control_scores_are_roughly_calibrated() -> None:
    X = np.random.default_rng(2).normal(0.0, 1.0, (20_000, 4))
    for det in (EWMAChart(), CUSUM(), PageHinkley(), ARForecast()):
        s = det.score_learn_many(X)[500:]
        # At 0.95: CUSUM / Page-Hinkley restart at h, which caps their scores near
        # 1 - 2 exp(-2k (h + 0.583)) (0.9925 and 0.99 by default), so 0.99 is too high.
        rate = (s > 0.95).mean()
        assert 0.02 < rate < 0.1, (det, rate)


def daily(days: int, seed: int) -> np.ndarray:
    """Minute samples of a day: flat, with a 6-sigma two-hour noon peak."""
    rng = np.random.default_rng(seed)
    t = np.arange(days * 1440) % 1440
    return 20.0 + 6.0 * ((t >= 660) & (t < 780)) + rng.normal(0.0, 1.0, days * 1440)


def test_seasonal_expects_the_daily_peak_a_zscore_flags() -> None:
    x = daily(8, 3)
    seasonal = SeasonalBaseline().score_learn_many(x)
    zscore = RobustZScore().score_learn_many(x)
    noon = slice(7 * 1440 + 660, 7 * 1440 + 680)  # the start of day 8's peak
    assert zscore[noon].max() > 0.9999
    assert (seasonal[noon] > 0.999).sum() == 0


def test_seasonal_flags_a_missing_peak() -> None:
    x = daily(8, 4)
    x[7 * 1440 + 660 : 7 * 1440 + 780] -= 6.0  # the peak does not come
    s = SeasonalBaseline().score_learn_many(x)
    # Flagged at once; the slot then adapts (memory ~1/alpha of its own samples).
    assert s[7 * 1440 + 660 : 7 * 1440 + 670].min() > 0.99


def test_seasonal_timestamp_clock_matches_sample_clock() -> None:
    x = daily(4, 5)
    by_count = SeasonalBaseline(period=1440, slots=24)
    by_time = SeasonalBaseline(slots=24)
    t0 = 1_700_006_400.0  # a UTC midnight
    got_count, got_time = [], []
    for i, v in enumerate(x):
        got_count.append(by_count.score_learn_one(v))
        got_time.append(by_time.score_one_at(v, t0 + 60.0 * i))
        by_time.learn_one_at(v, t0 + 60.0 * i)
    np.testing.assert_allclose(got_count, got_time)
    ts = t0 + 3 * 86400 + 3600
    week_hour = int(ts % (7 * 86400)) // 3600  # weeks are counted from the epoch (Thursday)
    assert SeasonalBaseline(slots=168, weekly=True).slot_of(ts) == week_hour


def test_forecast_flags_change_in_ar_dynamics() -> None:
    rng = np.random.default_rng(6)
    n = 4000
    e = rng.normal(0.0, 1.0, n)
    x = np.zeros(n)
    for i in range(2, n):  # AR(2) phi = (1.5, -0.8), then the sign of phi1 flips
        phi1 = 1.5 if i < 3000 else -1.5
        x[i] = phi1 * x[i - 1] - 0.8 * x[i - 2] + e[i]
    det = ARForecast(order=2)
    s = det.score_learn_many(x)
    zs = RobustZScore().score_learn_many(x)
    # The level of x stays comparable, but its dynamics are no longer predictable.
    assert (s[3000:3050] > 0.999).mean() > 0.3
    assert (s[1000:3000] > 0.999).mean() < 0.01
    assert (s[3000:3050] > 0.999).mean() > 3 * (zs[3000:3050] > 0.999).mean()


def test_expected_bands() -> None:
    X = np.random.default_rng(7).normal([1.0, 100.0], [0.1, 10.0], (2000, 2))
    for det in (EWMAChart(), CUSUM(), PageHinkley(), SeasonalBaseline(), ARForecast()):
        det.learn_many(X)
        loc, scale = det.expected()
        np.testing.assert_allclose(loc, [1.0, 100.0], rtol=0.05)
        np.testing.assert_allclose(scale, [0.1, 10.0], rtol=0.2)


def test_online_scaler_snapshot_and_drift() -> None:
    rng = np.random.default_rng(8)
    sc = OnlineScaler(alpha=0.02)
    drift = np.linspace(0.0, 100.0, 3000)
    for v in drift + rng.normal(0.0, 1.0, 3000):
        sc.learn_one(np.array([v]))
    loc, _ = sc.expected()
    assert abs(loc[0] - 100.0) < 5.0  # followed the drift
    twin = OnlineScaler.restore(json.loads(json.dumps(sc.snapshot())))
    np.testing.assert_array_equal(
        twin.transform_one(np.array([99.0])), sc.transform_one(np.array([99.0]))
    )


def test_normalised_wraps_any_detector_and_restores() -> None:
    X = np.random.default_rng(9).normal(0.0, 1.0, (600, 3)) * [1.0, 1e3, 1e-3]
    det = Normalised(inner={"name": "cusum", "params": {"h": 4.0}})
    det.learn_many(X[:400])
    twin = registry.restore(json.loads(json.dumps(det.snapshot())))
    assert isinstance(twin, Normalised) and twin.inner.params()["h"] == 4.0
    np.testing.assert_array_equal(det.score_learn_many(X[400:]), twin.score_learn_many(X[400:]))


# -- anomaly likelihood ------------------------------------------------------------------
def test_likelihood_judges_recent_surprises_against_the_keys_own_history() -> None:
    from detectors.univariate.likelihood import AnomalyLikelihood

    rng = np.random.default_rng(7)
    n = 3000
    calm = rng.normal(0.0, 1.0, n)
    # Same scale, but one value in 20 is a 4-6 sigma outlier: routine for this key.
    noisy = rng.normal(0.0, 1.0, n)
    hits = rng.random(n) < 0.05
    noisy[hits] += rng.choice([-1.0, 1.0], hits.sum()) * rng.uniform(4.0, 6.0, hits.sum())
    det = AnomalyLikelihood(member={"name": "robust_zscore"}, range_tolerance=None)
    det.learn_many(np.column_stack([calm, noisy]))
    burst = np.array([[4.5, 4.5], [-4.0, -4.0], [4.2, 4.2]])
    scores = det.score_learn_many(burst)
    assert scores[:, 0].max() > 0.9999  # three 4-sigma values in a row: unheard of here
    assert scores[:, 1].max() < 0.999  # routine here
    # The member alone cannot tell the two keys apart.
    assert det.member.score_one(np.array([4.5, 4.5]))[1] > 0.99


def test_likelihood_range_rule_and_one_alarm_per_burst() -> None:
    from detectors.univariate.likelihood import AnomalyLikelihood

    rng = np.random.default_rng(8)
    det = AnomalyLikelihood(member={"name": "robust_zscore"}, learning=200, estimation=200)
    det.learn_many(rng.normal(10.0, 1.0, 1000))
    lo, hi = float(det._lo[0]), float(det._hi[0])
    margin = 0.05 * (hi - lo)
    assert det.score_one(hi + 2 * margin) == pytest.approx(1.0, abs=1e-15)
    assert det.score_one(lo - 2 * margin) == pytest.approx(1.0, abs=1e-15)
    assert det.score_one(hi + 0.5 * margin) < 1.0 - 1e-15  # within the tolerance
    # A long burst inside the range: extremes in a row are reported at the yellow level.
    burst = [det.score_learn_one(hi - 0.01) for _ in range(8)]
    assert max(burst) > 1.0 - 1e-5
    reds = [s > 1.0 - det.red for s in burst]
    assert not any(a and b for a, b in itertools.pairwise(reds))
    assert any(s == pytest.approx(1.0 - det.yellow) for s in burst)


def test_likelihood_range_rule_ignores_a_level_the_member_predicted() -> None:
    from detectors.univariate.likelihood import AnomalyLikelihood

    member = {"name": "forecast", "params": {"order": 2}}

    def range_alarms(x: np.ndarray, **params: float) -> int:
        det = AnomalyLikelihood(
            member=member, learning=300, estimation=300, record_margin=None, **params
        )
        det.learn_many(x[:600])
        return int((det.score_learn_many(x[600:]) > 1.0 - 1e-12).sum())

    reference = ours = 0
    for seed in (9, 10, 11, 12):
        # A persistent process wandering to levels its warm-up never showed (a plant's
        # load), measured with little noise: the forecaster predicts each new level.
        rng = np.random.default_rng(seed)
        steps = rng.normal(0.0, 0.1, 4000)
        level = np.zeros(4000)
        for i in range(1, 4000):
            level[i] = 0.995 * level[i - 1] + steps[i]
        x = level + rng.normal(0.0, 0.05, 4000)
        reference += range_alarms(x, range_surprise=0.0)  # the reference rule
        ours += range_alarms(x)
    assert reference >= 10 and 2 * ours < reference
    # A jump to a new level still counts.
    det = AnomalyLikelihood(member=member, learning=300, estimation=300)
    det.learn_many(x[:600])
    assert det.score_one(float(x[599]) + 8.0) > 1.0 - 1e-12


def test_likelihood_record_surprise_alarms_alone_and_one_spike_does_not_blind_it() -> None:
    from detectors.univariate.likelihood import AnomalyLikelihood

    rng = np.random.default_rng(10)
    calm = rng.normal(0.0, 1.0, 2000)
    member = {"name": "robust_zscore"}
    averaged = AnomalyLikelihood(member=member, range_tolerance=None, record_margin=None)
    det = AnomalyLikelihood(member=member, range_tolerance=None)
    averaged.learn_many(calm)
    det.learn_many(calm)
    # One 6-sigma value is diluted by the window's average...
    assert averaged.score_one(6.0) < 1.0 - 1e-5
    # ...but it is a record for this calm key.
    assert det.score_learn_one(6.0) > 1.0 - 1e-5
    det.learn_many(rng.normal(0.0, 1.0, 200))
    assert det.score_learn_one(10.0) > 1.0 - 1e-5
    det.learn_many(rng.normal(0.0, 1.0, 200))
    # The 10-sigma spike raised the bar only to where it crossed it: 8 sigma still counts.
    assert det.score_one(8.0) > 1.0 - 1e-5
    assert det.score_one(3.0) < 0.999


def test_likelihood_restores_a_snapshot_from_before_the_record_rule() -> None:
    from detectors.univariate.likelihood import AnomalyLikelihood

    rng = np.random.default_rng(11)
    det = AnomalyLikelihood(member={"name": "robust_zscore"}, learning=50, estimation=50)
    det.learn_many(rng.normal(0.0, 1.0, (300, 2)))
    old = json.loads(json.dumps(det.snapshot()))
    del old["state"]["record"]  # the format before session 9
    twin = registry.restore(old)
    assert isinstance(twin, AnomalyLikelihood)
    np.testing.assert_array_equal(twin._record, np.zeros(2))
    x = rng.normal(0.0, 1.0, (50, 2))
    assert np.isfinite(twin.score_learn_many(x)).all()

"""Surprises: scores on an unbounded scale, and what per-key thresholds do with them."""

from __future__ import annotations

import numpy as np

import detectors
from detectors._arrays import (
    normal_two_sided_surprise,
    normal_two_sided_tail,
    score_to_surprise,
    surprise_to_score,
    surprise_to_score_one,
)
from detectors.thresholds import SPOT
from detectors.univariate.flatline import Flatline


def test_normal_surprise_matches_the_tail_and_keeps_order_beyond_it() -> None:
    z = np.array([0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 20.0])
    exact = -np.log10(normal_two_sided_tail(z))
    assert np.allclose(normal_two_sided_surprise(z), np.maximum(exact, 0.0), atol=1e-6)
    far = normal_two_sided_surprise(np.array([40.0, 100.0, 1e4, 1e8, np.inf]))
    assert np.all(np.isfinite(far)) and np.all(np.diff(far) > 0)  # where the tail is 0
    assert normal_two_sided_surprise(np.array([np.nan]))[0] == 0.0


def test_one_surprise_maps_to_the_score_of_the_vectorised_mapping() -> None:
    rng = np.random.default_rng(4)
    s = np.concatenate(
        [rng.exponential(3.0, 20_000), -rng.exponential(1.0, 100), [0.0, 16.0, 400.0, np.inf]]
    )
    one = np.array([surprise_to_score_one(float(v)) for v in s])
    assert np.all(np.abs(one - surprise_to_score(s)) <= np.spacing(1.0))  # one ulp below 1
    assert np.all(one[s <= 0] == 0.0) and one[-1] == 1.0
    assert np.isnan(surprise_to_score_one(float("nan")))


def test_surprise_learn_many_agrees_with_scores_and_ranks_the_saturated() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(1500, 2))
    X[1000, 0] += 40.0
    X[1200, 0] += 400.0
    for name in ("forecast", "flatline", "max_of", "robust_zscore"):
        a, b = detectors.create(name), detectors.create(name)
        scores = a.score_learn_many(X)
        surprises = b.surprise_learn_many(X)
        assert surprises.shape == scores.shape
        below = score_to_surprise(scores) < 12  # where scores still resolve the tail
        assert np.allclose(surprises[below], score_to_surprise(scores)[below], atol=1e-6), name
    fc = detectors.create("forecast").surprise_learn_many(X)
    assert fc[1200, 0] > fc[1000, 0] > 16  # both score 1.0; their surprises differ


def test_flatline_does_not_learn_the_run_it_is_scoring() -> None:
    rng = np.random.default_rng(0)
    det = Flatline(warmup=50)
    det.learn_many(rng.normal(0, 1, 2000))
    for _ in range(30):  # stuck: the 31st identical value must stay very surprising
        det.learn_one(0.25)
    assert det.surprise_one(0.25) > 30


def test_flatline_quantised_runs_are_learned_as_normal() -> None:
    # a slow sensor read at a coarse resolution: long runs are its normal behaviour
    rng = np.random.default_rng(1)
    x = np.round(np.cumsum(rng.normal(0, 0.02, 20_000)), 1)
    two_state = Flatline().surprise_learn_many(x)[2000:]
    assert np.mean(two_state > 3) < 3e-3  # at most 3x a 1e-3 target


def test_spot_reads_levels_inside_the_data_off_the_peaks() -> None:
    rng = np.random.default_rng(2)
    bounded = rng.uniform(0.0, 1.0, 60_000)  # a GPD fits a bounded tail poorly
    rates = {}
    for k in (0, 10):
        spot = SPOT(q=1e-2, n_init=5000, init_quantile=0.9, empirical_peaks=k)
        rates[k] = spot.step_many(bounded)[5000:].mean()
    assert 0.5e-2 < rates[10] < 2e-2
    assert abs(np.log(rates[10] / 1e-2)) <= abs(np.log(max(rates[0], 1e-6) / 1e-2)) + 0.05


def test_spot_streaming_calibration_keeps_only_the_top_and_fits_the_same() -> None:
    rng = np.random.default_rng(5)
    for q0, n_init in ((0.9, 1000), (0.98, 777), (0.95, 50)):
        v = rng.exponential(1.0, n_init + 3000)
        by_fit = SPOT(q=1e-3, n_init=n_init, init_quantile=q0)
        by_fit.fit(v[:n_init])
        alarms_fit = by_fit.step_many(v[n_init:])
        streamed = SPOT(q=1e-3, n_init=n_init, init_quantile=q0)
        half = streamed.step_many(v[: n_init // 2])  # a snapshot mid-calibration
        assert len(streamed._init) <= n_init * (1 - q0) + 2
        streamed = SPOT.restore(streamed.snapshot())
        alarms_stream = np.concatenate([half, streamed.step_many(v[n_init // 2 :])])[n_init:]
        assert np.array_equal(alarms_fit, alarms_stream)
        assert abs(by_fit.threshold - streamed.threshold) < 1e-9


def test_spot_shape_floor_holds_the_far_tail_on_exponential_surprises() -> None:
    # surprises of a calibrated detector are exponential; a negative shape fitted from
    # a few hundred peaks lowers the 1e-4 level and inflates the alert rate
    rng = np.random.default_rng(1)
    rates = {}
    for floor in (None, 0.0):
        alarms = n = 0
        for _ in range(120):
            v = rng.exponential(1 / np.log(10), 5000)
            spot = SPOT(q=1e-4, n_init=1000, init_quantile=0.9, max_peaks=250, min_gamma=floor)
            alarms += int(spot.step_many(v)[1000:].sum())
            n += 4000
        rates[floor] = alarms / n / 1e-4
    assert rates[0.0] < 1.6 < rates[None], rates


def test_spot_level_above_the_peak_rate_is_t() -> None:
    rng = np.random.default_rng(6)
    spot = SPOT(q=1e-2, n_init=1000, init_quantile=0.9)
    spot.step_many(rng.pareto(0.5, 3000))  # very heavy tail: a large fitted shape
    assert spot.level(0.5) == spot._t  # 0.5 > the peak rate ~0.1
    assert np.isfinite(spot.level(0.2)) and spot.level(0.2) >= 0
    from detectors._arrays import surprise_to_score

    assert surprise_to_score(-1e6) == 0.0

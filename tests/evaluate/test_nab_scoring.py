"""NAB scoring on small hand-computed cases (Lavin & Ahmad 2015; NAB's sweeper.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream.evaluate import nab_scoring as ns

STD = ns.CostProfile("standard", tp=1.0, fp=0.11, fn=1.0)
# No probationary period, so every point of a short series is scored.
NO_PROBATION = 0.0


def sig(y: float) -> float:
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def one_file(flags: list[int], windows: list[tuple[int, int]]) -> list[ns.FileSweep]:
    return [ns.sweep_file(np.array(flags, float), windows, STD, NO_PROBATION)]


def test_scaled_sigmoid_fixed_points() -> None:
    assert ns.scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert ns.scaled_sigmoid(0.0) == pytest.approx(0.0)
    assert ns.scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert ns.scaled_sigmoid(3.0) == -1.0


def test_detection_at_window_start_earns_full_tp() -> None:
    # 20 points, window 5..9 (width 5); detection at its first point: y = -(9-5+1)/5 = -1.
    flags = [0] * 20
    flags[5] = 1
    got = ns.score_at(one_file(flags, [(5, 9)]), 0.5, STD.fn)
    assert got.score == pytest.approx(1.0)
    assert got.detected_windows == 1 and got.false_positives == 0


def test_detection_at_centre_and_end() -> None:
    flags = [0] * 20
    flags[7] = 1  # y = -(9 - 7 + 1) / 5 = -0.6
    got = ns.score_at(one_file(flags, [(5, 9)]), 0.5, STD.fn)
    assert got.score == pytest.approx(sig(-0.6) / sig(-1.0))
    flags = [0] * 20
    flags[9] = 1  # last point: y = -1/5
    got = ns.score_at(one_file(flags, [(5, 9)]), 0.5, STD.fn)
    assert got.score == pytest.approx(sig(-0.2) / sig(-1.0))


def test_only_first_detection_in_window_counts() -> None:
    flags = [0] * 20
    flags[6] = flags[8] = flags[9] = 1
    got = ns.score_at(one_file(flags, [(5, 9)]), 0.5, STD.fn)
    assert got.score == pytest.approx(sig(-0.8) / sig(-1.0))


def test_missed_window_costs_fn() -> None:
    got = ns.score_at(one_file([0] * 20, [(5, 9)]), 0.5, STD.fn)
    assert got.score == pytest.approx(-1.0)
    assert got.detected_windows == 0


def test_fp_before_any_window_costs_full_weight() -> None:
    flags = [0] * 20
    flags[2] = 1
    got = ns.score_at(one_file(flags, [(5, 9)]), 0.5, STD.fn)
    assert got.score == pytest.approx(-1.0 - 0.11)


def test_fp_after_window_weighted_by_distance() -> None:
    # Past the window: y = |9 - i| / (width - 1) = |9 - i| / 4.
    for i, y in ((11, 0.5), (13, 1.0), (19, 2.5)):
        flags = [0] * 20
        flags[5] = flags[i] = 1
        got = ns.score_at(one_file(flags, [(5, 9)]), 0.5, STD.fn)
        assert got.score == pytest.approx(1.0 + 0.11 * sig(y))
    # A near FP costs less than a far one.
    near = [0] * 20
    near[10] = 1
    far = [0] * 20
    far[19] = 1
    s_near = ns.score_at(one_file(near, [(5, 9)]), 0.5, STD.fn).score
    s_far = ns.score_at(one_file(far, [(5, 9)]), 0.5, STD.fn).score
    assert s_near > s_far


def test_probationary_points_are_not_scored() -> None:
    scores = np.zeros(100)
    scores[3] = 1.0  # inside the first 15 points
    sweep = ns.sweep_file(scores, [(50, 59)], STD)
    assert len(sweep.scores) == 85
    assert ns.score_at([sweep], 0.5, STD.fn).false_positives == 0


def test_sweep_matches_direct_scoring_and_optimiser_picks_best() -> None:
    rng = np.random.default_rng(3)
    scores = rng.uniform(0.0, 0.9, size=200)
    scores[60] = 0.999  # early in the window
    sweeps = [ns.sweep_file(scores, [(60, 79)], STD)]
    table = ns.scores_by_threshold(sweeps, STD.fn)
    for row in table[:: max(len(table) // 20, 1)]:
        assert row.score == pytest.approx(ns.score_at(sweeps, row.threshold, STD.fn).score)
    best = ns.optimise(sweeps, STD.fn)
    assert best.threshold == pytest.approx(0.999)
    assert best.score == pytest.approx(1.0)


def test_normalisation_null_zero_perfect_hundred() -> None:
    # Long enough that flagging every point (0.11 per FP) is worse than flagging none.
    sweeps = one_file([0] * 200, [(5, 9)])
    null = ns.null_score(sweeps, STD.fn)
    assert null == pytest.approx(-1.0)
    # On a short file the constant detector does better by flagging everything, as
    # NAB's optimiser would find for its null detector.
    short = one_file([0] * 20, [(5, 9)])
    all_flagged = ns.score_at(short, 0.0, STD.fn).score
    assert all_flagged > -1.0
    assert ns.null_score(short, STD.fn) == pytest.approx(all_flagged)
    assert ns.normalise(null, null, 1, STD.tp) == pytest.approx(0.0)
    assert ns.normalise(1.0, null, 1, STD.tp) == pytest.approx(100.0)
    assert ns.normalise(0.0, null, 1, STD.tp) == pytest.approx(50.0)


def test_suppress_is_causal_refractory() -> None:
    s = np.array([0, 1, 1, 1, 0, 1, 0, 0, 1], float)
    assert ns.suppress(s, 0.5, 3).tolist() == [0, 1, 0, 0, 0, 1, 0, 0, 0]
    assert ns.suppress(s, 0.5, 0).tolist() == s.tolist()

"""Tests of the multivariate detectors: PCA, Mahalanobis, Half-Space Trees, LODA."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.special
import scipy.stats

from detectors import create, restore
from detectors.multivariate._calibrate import RankCalibrator
from detectors.multivariate._special import chi2_sf, chi2_sf_many, gammaincc
from detectors.multivariate.hst import HalfSpaceTrees
from detectors.multivariate.loda import Loda
from detectors.multivariate.mahalanobis import RobustMahalanobis
from detectors.multivariate.pca import OnlinePCA

MULTI = ["pca", "mahalanobis", "hst", "loda", "var_residual"]


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, mid-ranks for ties)."""
    ranks = scipy.stats.rankdata(scores)
    pos = labels.astype(bool)
    n1, n0 = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def spike_data(n: int = 3000, d: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian channels with 1 % spikes of 4-6 sigma on one random channel after t=500."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.zeros(n, dtype=int)
    idx = rng.choice(np.arange(500, n), size=n // 100, replace=False)
    y[idx] = 1
    ch = rng.integers(0, d, len(idx))
    X[idx, ch] += rng.choice([-1.0, 1.0], len(idx)) * rng.uniform(4.0, 6.0, len(idx))
    return X, y


def factor_data(n: int, d: int, seed: int) -> np.ndarray:
    """One latent factor driving all channels, plus small independent noise."""
    rng = np.random.default_rng(seed)
    load = np.linspace(0.8, 1.2, d)
    return rng.normal(size=(n, 1)) * load + 0.2 * rng.normal(size=(n, d))


# -- special functions -------------------------------------------------------------------
def test_chi2_sf_matches_scipy_within_1e9_relative() -> None:
    worst = 0.0
    for k in (0.5, 1, 2, 3, 4, 5, 7, 8, 10, 16, 25, 50, 100, 300):
        for x in np.concatenate([np.linspace(0.0, 5.0, 41), np.geomspace(1e-3, 1500.0, 120)]):
            ref = scipy.stats.chi2.sf(x, k)
            if ref < 1e-290:
                continue
            worst = max(worst, abs(chi2_sf(x, k) - ref) / ref)
    assert worst < 1e-9


def test_gammaincc_matches_scipy_and_edges() -> None:
    for a in (0.1, 0.5, 1.0, 3.3, 20.0, 150.0):
        for x in (1e-6, 0.1, 1.0, a, a + 1.0, 3 * a + 5, 10 * a + 20):
            ref = scipy.special.gammaincc(a, x)
            assert gammaincc(a, x) == pytest.approx(ref, rel=1e-9)
    assert gammaincc(2.0, 0.0) == 1.0
    assert gammaincc(2.0, float("nan")) == 1.0
    assert gammaincc(2.0, float("inf")) == 0.0
    with pytest.raises(ValueError):
        gammaincc(0.0, 1.0)
    np.testing.assert_allclose(
        chi2_sf_many(np.array([[1.0, 2.0]]), 3), scipy.stats.chi2.sf([[1.0, 2.0]], 3)
    )


def test_rank_calibrator_is_uniform_and_extrapolates_the_tail() -> None:
    rng = np.random.default_rng(0)
    cal = RankCalibrator(size=500, min_count=50)
    scores = np.array([cal.score_update(v) for v in rng.normal(size=20_000)])[500:]
    assert abs(np.mean(scores > 0.9) - 0.1) < 0.02
    assert abs(np.mean(scores > 0.99) - 0.01) < 0.005
    assert cal.score(10.0) > cal.score(5.0) > 0.999  # beyond the window, still ordered
    twin = RankCalibrator(size=500, min_count=50)
    twin.set_state(json.loads(json.dumps(cal.get_state())))
    assert twin.score(1.5) == cal.score(1.5)
    assert RankCalibrator(min_count=5).score(1.0) == 0.0  # warming up: no evidence


# -- PCA -----------------------------------------------------------------------------------
def test_pca_flags_broken_correlation_that_zscores_miss() -> None:
    rng = np.random.default_rng(1)
    n, start = 4000, 3000
    a = rng.normal(size=n)
    b = 0.98 * a + np.sqrt(1 - 0.98**2) * rng.normal(size=n)
    b[start:] = rng.normal(size=n - start)  # same variance, correlation gone
    X = np.column_stack([a, b, rng.normal(size=n)])
    y = (np.arange(n) >= start).astype(int)
    window = slice(2000, 3100)  # the model re-learns the new correlation within ~300 samples
    pca = create("pca").score_learn_many(X)
    z = create("robust_zscore").score_learn_many(X).max(axis=1)
    auc_pca, auc_z = auc(pca[window], y[window]), auc(z[window], y[window])
    assert auc_pca > 0.8
    assert auc_z < 0.65
    assert auc_pca - auc_z > 0.2


@pytest.mark.parametrize("name", ["pca", "mahalanobis"])
def test_attribution_names_the_faulty_channel(name: str) -> None:
    X = factor_data(3000, 5, seed=2)
    det = create(name)
    det.learn_many(X[:2000])
    hits = 0
    for row in X[2000:2100]:
        faulty = row.copy()
        faulty[3] += 1.5  # a sensor offset: small per channel, breaks the factor model
        shares = det.explain_one(faulty)  # type: ignore[attr-defined]
        assert shares.min() >= 0.0
        assert shares.sum() == pytest.approx(1.0)
        hits += int(np.argmax(shares) == 3)
        assert det.score_one(faulty) > 0.99
    assert hits >= 95


def test_pca_and_mahalanobis_calibration_on_normal_data() -> None:
    X = factor_data(12_000, 6, seed=3)
    for det in (OnlinePCA(), RobustMahalanobis()):
        s = det.score_learn_many(X)[2000:]
        assert 0.003 < np.mean(s > 0.99) < 0.03, type(det).__name__
        assert 0.05 < np.mean(s > 0.9) < 0.2, type(det).__name__


def test_pca_chooses_components_by_explained_variance() -> None:
    rng = np.random.default_rng(4)
    f = rng.normal(size=(2000, 2))
    X = np.hstack([f, f, f]) + 0.05 * rng.normal(size=(2000, 6))
    det = OnlinePCA()
    det.learn_many(X)
    assert det._k == 2
    fixed = OnlinePCA(n_components=4)
    fixed.learn_many(X)
    assert fixed._k == 4


def test_mahalanobis_spikes_do_not_inflate_the_covariance() -> None:
    X = factor_data(2000, 4, seed=5)
    det = RobustMahalanobis()
    det.learn_many(X)
    assert det._cov is not None
    trace = float(np.trace(det._cov))
    det.learn_many(np.full((20, 4), 50.0))  # a burst of huge spikes
    assert float(np.trace(det._cov)) < 1.5 * trace
    assert det.score_one(np.full(4, 50.0)) > 0.999  # the next spike is still flagged


# -- Half-Space Trees ----------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_hst_matches_river_auc_on_spikes(seed: int) -> None:
    river_anomaly = pytest.importorskip("river.anomaly")
    X, y = spike_data(seed=seed)
    scaled = (X - X.min(axis=0)) / (X.max(axis=0) - X.min(axis=0))  # River needs [0, 1]
    river = river_anomaly.HalfSpaceTrees(n_trees=25, height=15, window_size=250, seed=seed)
    ref = []
    for row in scaled:
        x = dict(enumerate(row))
        ref.append(river.score_one(x))
        river.learn_one(x)
    ours = HalfSpaceTrees(n_trees=25, window_size=250, seed=seed).score_learn_many(X)
    m = slice(500, None)
    auc_river, auc_ours = auc(np.asarray(ref)[m], y[m]), auc(ours[m], y[m])
    assert auc_ours >= auc_river - 0.02, (auc_ours, auc_river)
    assert auc_ours > 0.95


@pytest.mark.parametrize("name", ["hst", "loda"])
def test_windowed_detectors_batch_equals_one_at_a_time_exactly(name: str) -> None:
    X, _ = spike_data(n=900, d=3, seed=6)
    X[450, 1] = np.nan
    params = {"window_size": 100, "seed": 3}
    batch = create(name, **params)
    chunks = [batch.score_learn_many(X[i : i + 137]) for i in range(0, len(X), 137)]
    single = create(name, **params)
    one = np.array([single.score_learn_one(row) for row in X])
    np.testing.assert_array_equal(np.concatenate(chunks), one)
    assert one[450] == 0.0


@pytest.mark.parametrize("name", MULTI)
def test_snapshot_mid_stream_continues_identically(name: str) -> None:
    X, _ = spike_data(n=700, d=3, seed=7)
    det = create(name, **type(create(name)).conformance_params())  # type: ignore[attr-defined]
    det.score_learn_many(X[:333])
    twin = restore(json.loads(json.dumps(det.snapshot())))
    np.testing.assert_array_equal(det.score_learn_many(X[333:]), twin.score_learn_many(X[333:]))


@pytest.mark.parametrize("name", ["hst", "loda"])
def test_seeded_detectors_are_deterministic(name: str) -> None:
    X, _ = spike_data(n=600, d=3, seed=8)
    a = create(name, window_size=100, seed=5).score_learn_many(X)
    b = create(name, window_size=100, seed=5).score_learn_many(X)
    c = create(name, window_size=100, seed=6).score_learn_many(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("name", ["hst", "loda"])
def test_tree_and_projection_attribution_points_at_the_spike(name: str) -> None:
    X, _ = spike_data(n=1500, d=4, seed=9)
    det = create(name, seed=0)
    det.learn_many(X)
    hits = 0
    for ch in range(4):
        for mag in (6.0, -6.0):
            x = np.zeros(4)
            x[ch] = mag
            shares = det.explain_one(x)  # type: ignore[attr-defined]
            assert shares.sum() == pytest.approx(1.0) and shares.min() >= 0.0
            hits += int(np.argmax(shares) == ch)
    assert hits >= 7


def test_loda_auc_on_spikes() -> None:
    for seed in (0, 1):
        X, y = spike_data(seed=seed)
        s = Loda(seed=seed).score_learn_many(X)
        assert auc(s[500:], y[500:]) > 0.97


# -- shared contract ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", MULTI)
def test_non_finite_rows_are_not_learned_and_score_zero(name: str) -> None:
    X = factor_data(400, 3, seed=10)
    det = create(name, **type(create(name)).conformance_params())  # type: ignore[attr-defined]
    det.learn_many(X)

    def learned() -> str:
        snap = det.snapshot()
        if name == "var_residual":  # a hole empties the lag history; nothing is learned
            snap["state"].pop("hist")
        return json.dumps(snap, sort_keys=True)

    before = learned()
    for bad in ([np.nan, 0.0, 0.0], [0.0, np.inf, 0.0]):
        assert det.score_learn_one(np.array(bad)) == 0.0
        det.learn_one(np.array(bad))
    assert learned() == before
    shares = det.explain_one(np.array([np.nan, 0.0, 0.0]))  # type: ignore[attr-defined]
    assert shares.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("name", MULTI)
def test_wrong_width_and_corrupt_snapshots_fail_loudly(name: str) -> None:
    det = create(name, **type(create(name)).conformance_params())  # type: ignore[attr-defined]
    det.learn_many(factor_data(300, 3, seed=11))
    with pytest.raises(ValueError):
        det.score_one(np.zeros(4))
    snap = json.loads(json.dumps(det.snapshot()))
    field = {"hst": "count", "loda": "count", "var_residual": "sff"}.get(name, "mean")
    snap["state"][field] = "nonsense"
    with pytest.raises(ValueError):  # SnapshotError is a ValueError
        restore(snap)


def _var1(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = np.zeros((n, 3))
    A = np.array([[0.9, 0.0, 0.0], [0.5, 0.4, 0.0], [0.0, 0.3, 0.6]])  # x0 -> x1 -> x2
    for t in range(1, n):
        X[t] = A @ X[t - 1] + rng.normal(size=3)
    return X


def test_var_residual_freezes_after_warmup_and_sums_evidence_over_its_window() -> None:
    X = _var1(1400, seed=12)
    det = create("var_residual", order=1, warmup=400, window=3)
    det.learn_many(X[:500])
    coef = det.snapshot()["state"]["coef"]
    quiet = det.score_learn_many(X[500:1200])
    assert det.snapshot()["state"]["coef"] == coef  # frozen (alpha = 0)
    assert np.mean(quiet > 0.999) < 0.01  # calibrated on normal rows
    # x1 degrades (4x its innovation noise), each value often within its normal range
    broken = X[1200:1260].copy()
    broken[:, 1] += np.random.default_rng(1).normal(0.0, 4.0, size=len(broken))
    alone = create("var_residual", order=1, warmup=400, window=1)
    alone.learn_many(X[:1200])
    single = alone.score_learn_many(broken)
    pooled = det.score_learn_many(broken)
    assert np.mean(pooled > 0.999) > 0.5
    assert np.mean(pooled > 0.999) > np.mean(single > 0.999)  # the window adds evidence up
    blame = create("var_residual", order=1, warmup=400, window=3)
    blame.learn_many(X[:1200])
    shares = np.zeros(3)
    for row in broken:
        shares += blame.explain_one(row)
        blame.learn_one(row)
    assert int(np.argmax(shares)) == 1


def test_var_residual_hold_moves_the_lags_on_but_learns_nothing() -> None:
    X = _var1(700, seed=13)
    det = create("var_residual", order=1, warmup=400, window=2, alpha=1e-3)
    det.learn_many(X[:600])
    before = det.snapshot()["state"]
    det.hold_one(X[600] + 20.0)  # an anomalous row held back by the pipeline
    after = det.snapshot()["state"]
    assert after["sff"] == before["sff"] and after["coef"] == before["coef"]
    assert after["hist"] != before["hist"] and after["d2s"] != before["d2s"]
    twin = create("var_residual", order=1, warmup=400, window=2, alpha=1e-3)
    twin.learn_many(X[:600])
    twin.learn_one(X[600] + 20.0)
    assert twin.snapshot()["state"]["sff"] != before["sff"]  # learning it would move the fit

"""Online Granger tests: exact match with statsmodels, F tail, VAR statistics, monitor."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from scipy import stats
from statsmodels.tsa.stattools import grangercausalitytests

from detectors import registry
from detectors.base import SnapshotError
from detectors.causality import (
    GrangerMonitor,
    OnlineVAR,
    all_pairs,
    conditional_granger,
    f_isf,
    f_sf,
    pairwise_granger,
)
from detectors.causality._fdist import betai


def coupled(seed: int, T: int, d: int, offset: bool = True) -> np.ndarray:
    """A stable VAR(2) with a chain of couplings and non-zero means."""
    rng = np.random.default_rng(seed)
    y = np.zeros((T + 50, d))
    gains = rng.uniform(0.3, 0.9, d)
    for t in range(2, T + 50):
        y[t] = 0.4 * y[t - 1] + 0.1 * y[t - 2] + rng.normal(size=d)
        y[t, 1:] += gains[1:] * y[t - 1, :-1] * (rng.random() < 2.0)
    y = y[50:]
    if offset:
        y = y * rng.uniform(0.5, 20.0, d) + rng.uniform(-100, 1000, d)
    return y


def statsmodels_ftest(data: np.ndarray, cause: int, effect: int, p: int) -> tuple:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = grangercausalitytests(data[:, [effect, cause]], maxlag=[p])
    return res[p][0]["ssr_ftest"]


def fed(data: np.ndarray, p: int, window: int) -> OnlineVAR:
    var = OnlineVAR(data.shape[1], p, window=window)
    for row in data:
        var.update(row)
    return var


@pytest.mark.parametrize(
    ("d", "p", "seed", "T"),
    [(2, 1, 0, 300), (3, 2, 1, 400), (4, 3, 2, 500), (5, 4, 3, 350), (3, 6, 4, 800)],
)
def test_pairwise_matches_statsmodels_exactly(d: int, p: int, seed: int, T: int) -> None:
    data = coupled(seed, T, d)
    var = fed(data, p, window=T - p)  # statsmodels drops the first p rows: n = T - p
    res = pairwise_granger(var)
    pv = res.pvalues()
    assert var.n_obs == T - p
    for k, (i, j) in enumerate(zip(res.cause, res.effect, strict=True)):
        f_ref, p_ref, df2_ref, df1_ref = statsmodels_ftest(data, int(i), int(j), p)
        assert res.df1 == df1_ref and res.df2 == df2_ref
        assert res.f[k] == pytest.approx(f_ref, rel=1e-6)
        if p_ref > 1e-290:
            assert pv[k] == pytest.approx(p_ref, rel=1e-6)
        else:
            assert pv[k] < 1e-280


def test_exact_match_on_a_sliding_window_after_many_updates() -> None:
    """Add/subtract round-off and refreshes do not move the window off the batch fit."""
    d, p, W = 3, 3, 400
    data = coupled(7, 3137, d)
    var = fed(data, p, window=W)
    last = data[-(W + p) :]
    res = pairwise_granger(var)
    for k, (i, j) in enumerate(zip(res.cause, res.effect, strict=True)):
        f_ref, p_ref, *_ = statsmodels_ftest(last, int(i), int(j), p)
        assert res.f[k] == pytest.approx(f_ref, rel=1e-6)
        assert res.pvalues()[k] == pytest.approx(p_ref, rel=1e-6)


def _float64_and(storage: str, data: np.ndarray, p: int, W: int) -> tuple[OnlineVAR, OnlineVAR]:
    """Two windows fed the same rows: float64 storage and ``storage``."""
    exact = OnlineVAR(data.shape[1], p, window=W)
    narrow = OnlineVAR(data.shape[1], p, window=W, storage=storage)
    for row in data:
        exact.update(row)
        narrow.update(row)
    return exact, narrow


def test_a_compact_window_keeps_the_precision_of_float64_on_large_offsets() -> None:
    """float32 storage of *centred* samples: a level of 1e6 with unit-scale noise keeps
    its F statistics (raw float32 values would round to 0.06 there, 6 % of the noise)."""
    data = coupled(11, 2000, 3, offset=False) + 1e6
    exact, compact = _float64_and("float32", data, p=3, W=300)
    assert compact.state_size() < 0.6 * exact.state_size()
    a, b = pairwise_granger(exact), pairwise_granger(compact)
    np.testing.assert_allclose(b.f, a.f, rtol=1e-5)
    np.testing.assert_allclose(compact.fit(), exact.fit(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(compact.last_regressors(), exact.last_regressors(), rtol=1e-12)


def _int16_error(var: OnlineVAR, exact: OnlineVAR) -> float:
    """Largest error of the int16 window's samples in units of each sensor's step."""
    a, ok = var._window_rows()
    b, _ = exact._window_rows()
    a, b = a[ok] + var.shift, b[ok] + exact.shift
    return float((np.abs(a - b) / var._unit).max())


def test_an_int16_window_stays_within_half_a_step_on_large_offsets() -> None:
    """int16 storage of centred samples in power-of-two steps: a level of 1e6 with
    unit-scale noise keeps its F statistics to ~1e-4 and every sample within half a
    step of its value (a step ~3e-5 of the window's largest deviation)."""
    d, p, W = 3, 3, 300
    data = coupled(11, 2000, d, offset=False) + 1e6
    exact, narrow = _float64_and("int16", data, p, W)
    assert narrow.state_size() < 0.3 * exact.state_size()
    assert _int16_error(narrow, exact) <= 0.5 + 1e-9
    rows, _ = exact._window_rows()
    assert np.all(narrow._unit < 1e-4 * np.abs(rows).max(axis=(0, 1)))
    a, b = pairwise_granger(exact), pairwise_granger(narrow)
    np.testing.assert_allclose(b.f, a.f, rtol=1e-3)
    np.testing.assert_allclose(narrow.fit(), exact.fit(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(narrow.last_regressors(), exact.last_regressors(), rtol=1e-9)
    # a snapshot restores bit-identically
    back = OnlineVAR(d, p, window=W, storage="int16")
    back.set_state(json.loads(json.dumps(narrow.get_state())))
    np.testing.assert_array_equal(back._buf, narrow._buf)
    np.testing.assert_array_equal(pairwise_granger(back).f, b.f)


def test_an_int16_window_follows_a_sensor_whose_scale_changes() -> None:
    # Quiet, then 1e4 times louder (the unit doubles as it goes), then quiet again:
    # once the loud stretch has left the ring, refreshes give the quiet one fine steps.
    d, p, W = 2, 2, 200
    data = coupled(13, 1400, d, offset=False)
    data[400:700] *= 1e4
    data[:, 1] += 50.0  # and a sensor that starts at a constant level
    data[:50, 1] = 50.0
    exact = OnlineVAR(d, p, window=W)
    narrow = OnlineVAR(d, p, window=W, storage="int16")
    for t, row in enumerate(data):
        exact.update(row)
        narrow.update(row)
        if t in (450, 650):  # loud: coarse steps, re-rounded as they doubled
            assert _int16_error(narrow, exact) <= 1.0
    assert _int16_error(narrow, exact) <= 0.5 + 1e-9
    rows, _ = exact._window_rows()
    assert np.all(narrow._unit < 1e-4 * np.abs(rows).max(axis=(0, 1)))
    np.testing.assert_allclose(pairwise_granger(narrow).f, pairwise_granger(exact).f, rtol=1e-3)


def test_an_onlinevar_snapshot_with_the_compact_flag_restores() -> None:
    # Before 2026-12-01 the parameters said compact=True for a float32 ring.
    var = OnlineVAR(3, 2, window=100, storage="float32")
    for row in coupled(14, 300, 3):
        var.update(row)
    snap = json.loads(json.dumps(var.snapshot()))
    snap["params"].pop("storage")
    snap["params"]["compact"] = True
    back = OnlineVAR.from_snapshot(snap)
    assert back.storage == "float32"
    np.testing.assert_array_equal(pairwise_granger(back).f, pairwise_granger(var).f)
    with pytest.raises(ValueError, match="storage"):
        OnlineVAR(3, 2, window=100, storage="float16")
    with pytest.raises(ValueError, match="sliding window"):
        OnlineVAR(3, 2, forgetting=0.99, storage="int16")


def test_a_snapshot_with_raw_samples_restores() -> None:
    # Snapshots before 2026-12-02 stored raw samples; they restore to the same window.
    d, p, W = 3, 2, 200
    data = coupled(12, 900, d)
    var = fed(data, p, window=W)
    state = var.get_state()
    from detectors._arrays import pack, unpack

    buf, ok, shift = unpack(state["buf"]), unpack(state["ok"]), unpack(state["shift"])
    old = {k: v for k, v in state.items() if k != "centred"}
    old["buf"] = pack(np.where(ok[:, None], buf + shift, 0.0))
    for storage, rtol in (("float64", 1e-12), ("float32", 1e-6), ("int16", 1e-3)):
        back = OnlineVAR(d, p, window=W, storage=storage)
        back.set_state(json.loads(json.dumps(old)))
        np.testing.assert_allclose(pairwise_granger(back).f, pairwise_granger(var).f, rtol=rtol)


def test_conditional_matches_batch_ols() -> None:
    d, p, T = 4, 2, 600
    data = coupled(5, T, d)
    var = fed(data, p, window=T - p)
    res = conditional_granger(var)
    X = np.hstack([np.ones((T - p, 1))] + [data[p - lag : T - lag] for lag in range(1, p + 1)])
    Y = data[p:]

    def rss(cols: list[int], j: int) -> float:
        b, *_ = np.linalg.lstsq(X[:, cols], Y[:, j], rcond=None)
        r = Y[:, j] - X[:, cols] @ b
        return float(r @ r)

    full = list(range(X.shape[1]))
    for k, (i, j) in enumerate(zip(res.cause, res.effect, strict=True)):
        drop = [1 + lag * d + int(i) for lag in range(p)]
        kept = [c for c in full if c not in drop]
        r_u, r_r = rss(full, int(j)), rss(kept, int(j))
        f_ref = ((r_r - r_u) / p) / (r_u / (T - p - d * p - 1))
        assert res.f[k] == pytest.approx(f_ref, rel=1e-6)


def test_f_tail_matches_scipy_over_a_grid() -> None:
    fs = np.concatenate([np.logspace(-5, 3.5, 80), [1e4, 1e5]])
    for df1 in (1, 2, 3, 5, 8, 13):
        for df2 in (1, 4, 20, 100, 193, 1000, 10_000, 100_000):
            ref = stats.f.sf(fs, df1, df2)
            ours = f_sf(fs, df1, df2)
            ok = ref > 1e-290
            np.testing.assert_allclose(ours[ok], ref[ok], rtol=1e-8)
    for alpha in (0.05, 1e-3, 1e-8):
        assert f_isf(alpha, 3, 193) == pytest.approx(stats.f.isf(alpha, 3, 193), rel=1e-9)
    assert float(betai(2.5, 3.5, 0.4)) == pytest.approx(stats.beta.cdf(0.4, 2.5, 3.5), rel=1e-12)


@pytest.mark.parametrize(("lam", "T"), [(0.99, 700), (1.0, 2500)])
def test_forgetting_equals_weighted_batch(lam: float, T: int) -> None:
    # lam = 1 is the growing window of the warm-up; 2,500 rows cross two re-centrings.
    d, p = 2, 2
    data = coupled(3, T, d)
    var = OnlineVAR(d, p, forgetting=lam)
    for row in data:
        var.update(row)
    assert var.state_size() < 1_000  # (p + 1) raw samples, never the rows seen
    rows = np.array(
        [np.concatenate([[1.0], data[t - np.arange(p + 1)].ravel()]) for t in range(p, T)]
    )
    w = lam ** np.arange(len(rows) - 1, -1, -1)
    G = (rows * w[:, None]).T @ rows
    # Compare in raw coordinates: un-centre the online statistics.
    s = np.concatenate([[0.0], np.tile(var.shift, p + 1)])
    Gc = var.gram()
    g0 = Gc[:, 0]
    raw = Gc + np.outer(s, g0) + np.outer(g0, s) + Gc[0, 0] * np.outer(s, s)
    np.testing.assert_allclose(raw, G, rtol=1e-8)
    assert var.n_obs == pytest.approx(w.sum())


def test_non_finite_samples_void_their_rows_only() -> None:
    d, p, W = 3, 2, 200
    data = coupled(9, 600, d)
    data[450, 1] = np.nan
    var = fed(data, p, window=W)
    assert var.n_obs == W - (p + 1)
    Z, _ = var.design()
    assert Z.shape == (W - p - 1, d * p + 1) and np.isfinite(Z).all()


def test_fit_predicts_in_raw_units() -> None:
    d, p = 3, 2
    data = coupled(11, 900, d)
    var = fed(data, p, window=800)
    B = var.fit()
    Z, Y = var.design()
    ref, *_ = np.linalg.lstsq(Z, Y, rcond=None)
    np.testing.assert_allclose(Z @ B, Z @ ref, rtol=1e-7)


def test_all_pairs_and_validation() -> None:
    c, e = all_pairs(4)
    assert len(c) == 12 and not np.any(c == e)
    with pytest.raises(ValueError):
        OnlineVAR(2, 1)
    with pytest.raises(ValueError):
        GrangerMonitor(["a", "a"])
    with pytest.raises(ValueError):
        GrangerMonitor(["a", "b"], window=200, warmup=100)


# -- monitor -------------------------------------------------------------------------------
SENSORS = ["current", "flow", "pressure"]


def chain(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = np.zeros((n, 3))
    for t in range(2, n):
        y[t, 0] = 0.7 * y[t - 1, 0] + rng.normal()
        y[t, 1] = 0.3 * y[t - 1, 1] + 0.9 * y[t - 1, 0] + rng.normal()
        y[t, 2] = 0.3 * y[t - 1, 2] + 0.8 * y[t - 2, 1] + rng.normal()
    return y + np.array([30.0, 120.0, 6.0])


def test_monitor_snapshot_round_trip_is_exact() -> None:
    y = chain(0, 3000)
    a = GrangerMonitor(SENSORS, lag=2, window=150, warmup=1200)
    for row in y[:1000]:  # mid warm-up: the long window is in the snapshot
        a.update(row)
    b = registry.restore(json.loads(json.dumps(a.snapshot())))
    assert isinstance(b, GrangerMonitor)
    for row in y[1000:2000]:
        assert a.update(row) == b.update(row)
    snap = json.loads(json.dumps(b.snapshot()))
    assert snap["type"] == "granger_monitor" and snap["version"] == GrangerMonitor.version
    c = GrangerMonitor.restore(snap)
    y2 = y[2000:].copy()
    y2[500:, 1] = np.random.default_rng(1).normal(120.0, y[:2000, 1].std(), len(y2) - 500)
    fa = [f for row in y2 for f in a.update(row)]
    fc = [f for row in y2 for f in c.update(row)]
    assert fa == fc and any(f.kind == "decoupling" for f in fa)
    assert 0 < c.state_size() < 50_000
    with pytest.raises(SnapshotError):
        GrangerMonitor.restore({**snap, "version": GrangerMonitor.version + 1})


def test_the_packed_baseline_is_reused_only_while_it_is_the_baseline() -> None:
    from detectors._arrays import pack

    y = chain(3, 1600)
    m = GrangerMonitor(SENSORS, lag=2, window=150, warmup=1200)
    for row in y[:1300]:
        m.update(row)
    first = m.snapshot()["state"]["base"]
    for row in y[1300:]:
        m.update(row)
    assert m._base is not None
    assert m.snapshot()["state"]["base"] == {k: pack(v) for k, v in m._base.items()}
    # a new baseline (here: restored into the same monitor) is packed afresh
    other = GrangerMonitor(SENSORS, lag=2, window=150, warmup=1200)
    for row in chain(4, 1300):
        other.update(row)
    m._set_state(other.snapshot()["state"])
    assert m.snapshot()["state"]["base"] == other.snapshot()["state"]["base"] != first


def test_monitor_state_is_small_during_and_after_the_warm_up() -> None:
    rng = np.random.default_rng(3)
    sensors = [f"s{i}" for i in range(8)]
    mon = GrangerMonitor(sensors)  # the stream's defaults: lag 3, window 200, warm-up 2000
    base = np.cumsum(rng.normal(size=2600))
    y = base[:, None] * rng.uniform(0.5, 1.5, 8) + rng.normal(size=(2600, 8))
    for row in y[:1000]:
        mon.update(row)
    # The warm-up keeps statistics, not its 2,000 raw rows (which alone were 128 KB).
    assert mon.state_size() < 20_000
    for row in y[1000:]:
        mon.update(row)
    # Nor does the short window keep its cross-products between samples (8.7 KB), and
    # its ring is float32 (6.5 KB of 13).
    assert mon.warmed_up and mon.state_size() < 22_000


def test_a_monitor_snapshot_from_before_the_compact_state_restores() -> None:
    # Before 2026-12-02: the baseline had F and int64 indices, the counters were int64.
    from detectors._arrays import pack, unpack

    y = chain(2, 2600)
    a = GrangerMonitor(SENSORS, lag=2, window=150, warmup=1200)
    for row in y[:2000]:
        a.update(row)
    snap = json.loads(json.dumps(a.snapshot()))
    state = snap["state"]
    state["base"]["f"] = pack(np.ones((3, 3)))
    for key in ("seq_cause", "seq_effect", "nonedge"):
        state["base"][key] = pack(unpack(state["base"][key]).astype(np.int64))
    for key in ("r2", "mean_s", "sd_s"):
        state["base"][key] = pack(unpack(state["base"][key]).astype(np.float64))
    for key in ("dec_count", "new_count"):
        state[key] = pack(unpack(state[key]).astype(np.int64))
    b = GrangerMonitor.restore(snap)
    assert b.state_size() == a.state_size()
    for row in y[2000:]:
        assert a.update(row) == b.update(row)


def _common_factor(seed: int, n: int, d: int = 8) -> np.ndarray:
    """Sensors that all follow one random walk (plus noise): every pair is an edge."""
    rng = np.random.default_rng(seed)
    base = np.cumsum(rng.normal(size=n))
    return base[:, None] * rng.uniform(0.5, 1.5, d) + rng.normal(size=(n, d))


def test_edges_into_one_effect_share_its_restricted_model() -> None:
    # Pairwise, the restricted model of i -> j is j on its own lags whatever i: one per
    # sensor, not one per edge. The edges are stored once (their cause and effect are
    # views into one array), and a snapshot round trip keeps all of it.
    y = _common_factor(5, 2800)
    sensors = [f"s{i}" for i in range(8)]
    a = GrangerMonitor(sensors)
    for row in y[:2300]:
        a.update(row)
    assert a._base is not None
    cause, effect = a._base["seq_cause"], a._base["seq_effect"]
    assert a._base["seq_br"].shape == (8, 3) and a._base["seq_s2r"].shape == (8,)
    assert effect.size > 8 and a._seq.shape == (5, effect.size)
    assert cause.base is effect.base is not None  # one edge array
    b = GrangerMonitor.restore(json.loads(json.dumps(a.snapshot())))
    assert b._base is not None and b._base["seq_cause"].base is b._base["seq_effect"].base
    assert b.state_size() == a.state_size()
    for row in y[2300:]:
        assert a.update(row) == b.update(row)


def test_centred_models_keep_float64_predictions_on_a_large_level() -> None:
    # Intercepts and slopes are stored in float32, relative to the centres of the
    # target and the regressors; applied to raw values of a level of 1e9, float32
    # slopes would be off by tens of units.
    from detectors.causality.checks import _centred

    rng = np.random.default_rng(8)
    level = np.array([0.0, 1e9, -3e8, 1e9])  # each regressor's centre (0: the intercept)
    target = np.array([1e9, -3e8, 1e9, 5e8, 2e9])  # each model's target's centre
    coef = np.column_stack([np.zeros(5), rng.normal(0.0, 0.5, (5, 3))])
    coef[:, 0] = target + rng.normal(size=5) - coef[:, 1:] @ level[1:]
    cols = np.tile(np.arange(4), (5, 1))
    z = level + np.concatenate([[1.0], rng.normal(size=3)])  # [1, y lags]
    exact = coef @ z
    model = _centred(coef, cols, level, target)
    assert model["b"].dtype == np.float32 and model["c"].dtype == np.float32
    got = target + model["c"] + model["b"] @ (z[1:] - level[1:])
    np.testing.assert_allclose(got, exact, rtol=0, atol=1e-5)
    raw32 = coef[:, 0] + coef[:, 1:].astype(np.float32) @ z[1:]
    assert np.abs(raw32 - exact).max() > 1.0


@pytest.mark.parametrize("commit", ["5d7e17a", "21c4527"])
def test_a_snapshot_of_an_older_commit_restores_and_finds_the_same(commit: str) -> None:
    # Real snapshots written by the code of older commits, mid-stream on a sensor with a
    # level of 1e5, and the findings that code made on the rest of the stream (a
    # decoupling of flow). 5d7e17a: raw float64 models, one restricted model per edge,
    # a float32 ring, the CUSUM and its reverse in two rows, the warm-up's full G;
    # 21c4527: one restricted model per distinct effect (2 of the 3 sensors). The
    # current code restores them into its own layout and must make the same findings.
    from pathlib import Path

    fixture = json.loads(
        (Path(__file__).parent / "data" / f"granger_snapshot_{commit}.json").read_text()
    )
    assert fixture["commit"] == commit
    y = chain(11, 3400) + np.array([0.0, 1e5, 0.0])
    rng = np.random.default_rng(12)
    y[2800:, 1] = rng.normal(1e5 + 120.0, y[:2800, 1].std(), 600)
    key = ("kind", "cause", "effect", "ts_index")
    # after the warm-up, and in the middle of it (the growing window's full G stored)
    for suffix, start in (("", 2000), ("_warmup", 1000)):
        mon = GrangerMonitor.restore(fixture["snapshot" + suffix])
        found = [f.to_dict() for row in y[start:] for f in mon.update(row)]
        assert mon._base is not None and mon._base["coef"].dtype == np.float32
        want = fixture["findings" + suffix]
        assert [tuple(f[k] for k in key) for f in found] == [tuple(f[k] for k in key) for f in want]
        assert any(f["kind"] == "decoupling" and f["effect"] == "flow" for f in found)
        for got, old in zip(found, want, strict=True):
            for k in ("strength_before", "strength_now", "score"):
                # the window's ring is int16 now (var.py): statistics to ~1e-4
                assert got[k] == pytest.approx(old[k], rel=1e-3, abs=1e-5), (k, got, old)


def test_monitor_flags_a_new_link() -> None:
    rng = np.random.default_rng(4)
    n, t0 = 3500, 2500
    y = np.zeros((n, 3))
    for t in range(1, n):
        y[t] = 0.5 * y[t - 1] + rng.normal(size=3)
        if t >= t0:  # pressure starts to follow current (e.g. a valve stuck open)
            y[t, 2] += 1.0 * y[t - 1, 0]
    mon = GrangerMonitor(SENSORS, lag=2, window=200, warmup=2000)
    found = [f for row in y for f in mon.update(row)]
    new = [f for f in found if f.kind == "new_link"]
    assert [(f.cause, f.effect) for f in new] == [("current", "pressure")]
    assert t0 < new[0].ts_index < t0 + 300 and new[0].score > 0.999


def test_monitor_flags_the_lying_sensor_not_its_effects() -> None:
    y = chain(2, 3000)
    y[2600, 1] += 8.0 * y[:2000, 1].std()  # flow reads a spike that did not happen
    mon = GrangerMonitor(SENSORS, lag=2, window=150, warmup=2000)
    found = [f for row in y[:-1] for f in mon.update(row)]
    res = [f for f in found if f.kind == "residual"]
    assert [(f.effect, f.ts_index) for f in res] == [("flow", 2600)]
    assert res[0].cause == "current" and res[0].score > 1 - 1e-6
    assert mon.score_one(y[-1]) < 0.999  # score_one: the residual score, no learning
    spiked = y[-1] + np.array([0.0, 0.0, 10.0 * y[:2000, 2].std()])
    assert mon.score_one(spiked) > 0.999999 and mon.explain_one(spiked).argmax() == 2
    assert res[0].to_dict()["p_before"] is None


def test_monitor_is_quiet_during_warmup_and_tolerates_nan() -> None:
    y = chain(3, 2600)
    y[2300, 0] = np.nan
    mon = registry.create("granger_monitor", sensors=SENSORS, lag=2, window=150, warmup=2000)
    assert isinstance(mon, GrangerMonitor)
    found = [f for row in y for f in mon.update(row)]
    assert all(f.ts_index >= 2000 for f in found)
    assert not [f for f in found if f.kind != "residual"]
    assert mon.warmed_up and mon.watched_pairs() >= 2


def test_conditional_monitor_drops_indirect_edges() -> None:
    y = chain(5, 2100)
    mon = GrangerMonitor(SENSORS, lag=2, window=200, warmup=2000, conditional=True)
    for row in y:
        mon.update(row)
    edges = {(e["cause"], e["effect"]) for e in mon.baseline_graph()}
    assert ("current", "flow") in edges and ("flow", "pressure") in edges
    assert ("current", "pressure") not in edges

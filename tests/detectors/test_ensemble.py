"""Tests of the ensemble combinator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.stats

from detectors import SnapshotError, create, restore
from detectors.ensemble import Ensemble

MEMBERS = [
    {"name": "mahalanobis", "params": {"alpha": 0.02, "warmup": 30}},
    {"name": "robust_zscore", "weight": 2.0},
]


def data(n: int = 600, d: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[400, 1] += 8.0
    return X


def member_scores(X: np.ndarray) -> np.ndarray:
    """Scores of fresh copies of the members, run on their own."""
    maha = create("mahalanobis", alpha=0.02, warmup=30).score_learn_many(X)
    z = create("robust_zscore").score_learn_many(X).max(axis=1)
    return np.column_stack([maha, z])


@pytest.mark.parametrize("combine", ["max", "mean", "fisher"])
def test_combining_matches_members_run_alone(combine: str) -> None:
    X = data()
    S = member_scores(X)
    got = Ensemble(members=MEMBERS, combine=combine).score_learn_many(X)
    if combine == "max":
        want = S.max(axis=1)
    elif combine == "mean":
        want = (S[:, 0] + 2.0 * S[:, 1]) / 3.0
    else:
        tails = np.clip(1.0 - S, 1e-16, 1.0)
        want = np.array([1.0 - scipy.stats.combine_pvalues(t, "fisher")[1] for t in tails])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert got[400] > 0.999


def test_bonferroni_reduction_of_univariate_members() -> None:
    X = data()
    z = create("robust_zscore").score_learn_many(X)
    got = Ensemble(members=[{"name": "robust_zscore"}], univariate_reduce="bonferroni")
    want = 1.0 - np.minimum(1.0, 3 * (1.0 - z).min(axis=1))
    np.testing.assert_allclose(got.score_learn_many(X), want)


def test_batch_equals_one_at_a_time_and_holes_score_zero() -> None:
    X = data()
    X[100, 2] = np.nan
    a = Ensemble(members=MEMBERS, combine="fisher")
    b = Ensemble(members=MEMBERS, combine="fisher")
    one = np.array([a.score_learn_one(row) for row in X])
    np.testing.assert_allclose(b.score_learn_many(X), one, rtol=0, atol=1e-15)
    assert one[100] == 0.0
    # the hole was given to no member: the same as never seeing the row
    c = Ensemble(members=MEMBERS, combine="fisher")
    c.learn_many(np.delete(X, 100, axis=0))
    assert json.dumps(c.snapshot(), sort_keys=True) == json.dumps(a.snapshot(), sort_keys=True)


def test_snapshot_nests_members_and_round_trips() -> None:
    X = data()
    ens = Ensemble(members=MEMBERS, combine="mean")
    ens.score_learn_many(X[:300])
    snap = json.loads(json.dumps(ens.snapshot()))
    assert [m["type"] for m in snap["state"]["members"]] == ["mahalanobis", "robust_zscore"]
    twin = restore(snap)
    np.testing.assert_array_equal(twin.score_learn_many(X[300:]), ens.score_learn_many(X[300:]))
    assert twin.state_size() == ens.state_size() > 0
    snap["state"]["members"] = snap["state"]["members"][::-1]
    with pytest.raises(SnapshotError):
        restore(snap)


def test_attribution_is_the_surprise_weighted_average_of_members() -> None:
    X = data()
    ens = Ensemble(members=[{"name": "mahalanobis"}, {"name": "robust_zscore"}, {"name": "hst"}])
    ens.learn_many(X[:400])
    x = np.array([0.0, 0.0, 7.0])
    shares = ens.explain_one(x)
    assert shares.sum() == pytest.approx(1.0) and shares.min() >= 0.0
    assert int(np.argmax(shares)) == 2
    assert shares[2] > 0.8
    assert ens.explain_one(np.array([np.nan, 0.0, 0.0])).tolist() == pytest.approx([1 / 3] * 3)


def test_default_members_and_bad_specs() -> None:
    ens = create("ensemble")
    assert [m["name"] for m in ens.params()["members"]] == ["mahalanobis", "loda", "robust_zscore"]
    for bad in ([], [{"params": {}}], [{"name": "ensemble"}], [{"name": "pca", "weight": 0}]):
        with pytest.raises(ValueError):
            Ensemble(members=bad)
    with pytest.raises(ValueError):
        Ensemble(combine="median")
    with pytest.raises(KeyError):
        Ensemble(members=[{"name": "no_such_detector"}])

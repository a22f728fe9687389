"""The contract of :mod:`detectors.base`, checked for every registered detector.

Parameters: a detector class may define ``conformance_params() -> dict`` (small, fast
parameters that work for d = 4); otherwise :data:`PARAMS` below, otherwise defaults.

Faults: the synthetic series is a d = 4 noisy sinusoid (noise sigma 1, amplitude
``season`` sigmas, period :data:`PERIOD`) with an 8-sigma spike on channel 1 and a
4-sigma level shift for 50 samples on channel 2. A detector that is not meant for one
of those declares what it *is* for, through ``conformance_faults() -> dict`` or
:data:`FAULTS` below, and is checked on that instead of being skipped.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

import detectors.normalise  # noqa: F401  registers "normalised" (detectors/__init__ may not yet)
from detectors import registry
from detectors._arrays import unpack
from detectors.base import Detector, MultivariateDetector, UnivariateDetector

D = 4
PERIOD = 100
N = 4000
SPIKES = ((1500, 1), (2500, 3), (3500, 0))  # (row, channel): +8 sigma
SHIFTS = ((2000, 2), (3000, 1))  # (first row, channel): +4 sigma for SHIFT_LEN rows
SHIFT_LEN = 50
WINDOW = 10  # rows per evaluation window
RECOVERY = 30  # rows after a fault that are neither fault nor normal

#: Parameters for detectors without a ``conformance_params`` hook.
PARAMS: dict[str, dict[str, Any]] = {
    # A seasonal model must be told the cycle: the synthetic one is PERIOD samples.
    "seasonal": {"period": PERIOD, "slots": 20},
}

#: Synthetic-fault choices for detectors without a ``conformance_faults`` hook.
#: Control charts assume a stable in-control mean: a sinusoid is a "shift" to them, and
#: their job is sustained shifts, not single spikes. They are tested on a level shift
#: in stationary noise, which is what they are for.
FAULTS: dict[str, dict[str, Any]] = {
    "ewma": {"season": 0.0, "faults": ("shift",)},
    "cusum": {"season": 0.0, "faults": ("shift",)},
    "page_hinkley": {"season": 0.0, "faults": ("shift",)},
}

#: Numeric detectors (log detectors take log records and have their own tests).
NAMES = sorted(
    name
    for name, cls in registry.available().items()
    if issubclass(cls, (UnivariateDetector, MultivariateDetector)) or name == "normalised"
)


def make(name: str) -> Detector:
    cls = registry.get(name)
    hook = getattr(cls, "conformance_params", None)
    params = hook() if callable(hook) else PARAMS.get(name, {})
    return cls(**params)


def fault_spec(name: str) -> dict[str, Any]:
    cls = registry.get(name)
    hook = getattr(cls, "conformance_faults", None)
    spec = {"season": 1.0, "faults": ("spike", "shift")}
    spec.update(hook() if callable(hook) else FAULTS.get(name, {}))
    return spec


def synthetic(
    seed: int, n: int = N, season: float = 1.0, faults: tuple[str, ...] = ("spike", "shift")
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(X, onset, excluded)``: d = 4 noisy sinusoids with the requested faults.

    ``onset`` marks the rows a detector should notice (the spike, the first ``WINDOW``
    rows of a shift); ``excluded`` marks the rest of a shift and a recovery stretch, on
    which detectors legitimately differ (adapt to the new level or keep alarming).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    phase = np.linspace(0.0, np.pi, D)[None, :]
    X = 10.0 + season * np.sin(2 * np.pi * t / PERIOD + phase) + rng.normal(0.0, 1.0, (n, D))
    onset = np.zeros(n, dtype=bool)
    excluded = np.zeros(n, dtype=bool)
    if "spike" in faults:
        for row, ch in SPIKES:
            if row < n:
                X[row, ch] += 8.0
                onset[row] = True
                excluded[row + 1 : row + 1 + RECOVERY] = True
    if "shift" in faults:
        for row, ch in SHIFTS:
            if row + SHIFT_LEN < n:
                X[row : row + SHIFT_LEN, ch] += 4.0
                onset[row : row + WINDOW] = True
                excluded[row + WINDOW : row + SHIFT_LEN + RECOVERY] = True
    if "stuck" in faults:
        # A frozen sensor: the value of the row before, repeated (placed like shifts).
        for row, ch in SHIFTS:
            if row + SHIFT_LEN < n:
                X[row : row + SHIFT_LEN, ch] = X[row - 1, ch]
                onset[row : row + WINDOW] = True
                excluded[row + WINDOW : row + SHIFT_LEN + RECOVERY] = True
    return X, onset, excluded & ~onset


def row_scores(scores: np.ndarray) -> np.ndarray:
    """One score per row: univariate detectors give the max over channels."""
    s = np.asarray(scores, dtype=np.float64)
    return s.max(axis=1) if s.ndim == 2 else s


def window_auc(scores: np.ndarray, onset: np.ndarray, excluded: np.ndarray, start: int) -> float:
    """AUC of windows of ``WINDOW`` rows scored by their max: fault onsets vs normal windows.

    Windows are the fair unit for every family: a change detector (CUSUM, Page-Hinkley)
    signals once and restarts, a z-score adapts; both should score the onset of a fault
    above a normal stretch of the same length.
    """
    m = (len(scores) - start) // WINDOW
    shape = (m, WINDOW)
    s = scores[start : start + m * WINDOW].reshape(shape).max(axis=1)
    pos = onset[start : start + m * WINDOW].reshape(shape).any(axis=1)
    skip = excluded[start : start + m * WINDOW].reshape(shape).any(axis=1) & ~pos
    return roc_auc(s[~skip], pos[~skip])


def channelwise(det: Detector) -> bool:
    return bool(np.ndim(det.score_one(np.zeros(D))) == 1)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney AUC with average ranks for ties (plain numpy)."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    _, inv = np.unique(scores, return_inverse=True)
    ranks = (np.bincount(inv, ranks) / np.bincount(inv))[inv]
    pos = int(labels.sum())
    neg = len(labels) - pos
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def packed_arrays(obj: Any) -> list[np.ndarray]:
    """Every packed array inside a snapshot, unpacked."""
    if isinstance(obj, dict):
        if set(obj) == {"dtype", "shape", "b64"}:
            arr = unpack(obj)
            return [] if arr is None else [arr]
        return [a for v in obj.values() for a in packed_arrays(v)]
    if isinstance(obj, list):
        return [a for v in obj for a in packed_arrays(v)]
    return []


def test_roc_auc_helper() -> None:
    assert roc_auc(np.array([0.1, 0.2, 0.9]), np.array([False, False, True])) == 1.0
    assert roc_auc(np.array([0.5, 0.5, 0.5, 0.5]), np.array([True, False, True, False])) == 0.5


@pytest.mark.parametrize("name", NAMES)
def test_snapshot_round_trip(name: str) -> None:
    X, _, _ = synthetic(1, n=900)
    det = make(name)
    det.learn_many(X[:500])
    twin = registry.restore(json.loads(json.dumps(det.snapshot())))
    assert type(twin) is type(det) and twin.params() == det.params()
    np.testing.assert_array_equal(det.score_learn_many(X[500:]), twin.score_learn_many(X[500:]))


@pytest.mark.parametrize("name", NAMES)
def test_nonfinite_never_enters_state(name: str) -> None:
    X, _, _ = synthetic(2, n=700, faults=())
    bad = X.copy()
    full_rows = [60, 200, 201, 350]
    bad[full_rows] = [[np.nan, np.inf, -np.inf, np.nan]] * len(full_rows)
    partial = {120: [0], 260: [1, 3], 400: [2]}  # row -> channels made non-finite
    for i, (row, cols) in enumerate(partial.items()):
        bad[row, cols] = [np.nan, np.inf, -np.inf][i % 3]
    det = make(name)
    head, tail = bad[:500], X[500:]
    det.score_learn_many(head)
    for arr in packed_arrays(det.snapshot()):
        assert np.all(np.isfinite(arr)), f"{name}: non-finite value in state"
    got = np.asarray(det.score_learn_many(tail))
    if channelwise(det):
        # Channel-wise skipping: each channel equals a detector fed only its finite values.
        for j in range(D):
            col = head[:, j]
            twin = make(name)
            twin.score_learn_many(col[np.isfinite(col)])
            want = twin.score_learn_many(tail[:, j])
            np.testing.assert_allclose(got[:, j], want, rtol=1e-12, atol=1e-15)
    else:
        # Row-wise skipping: a row with any non-finite value is skipped entirely.
        twin = make(name)
        twin.score_learn_many(head[np.isfinite(head).all(axis=1)])
        np.testing.assert_allclose(got, twin.score_learn_many(tail), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", NAMES)
def test_constant_input_gives_no_alarm(name: str) -> None:
    X = np.tile([3.7, -1.2, 0.0, 1e4], (1000, 1))
    scores = row_scores(make(name).score_learn_many(X))
    assert np.all(scores[300:] < 0.99), f"{name}: max {scores[300:].max()}"


@pytest.mark.parametrize("name", NAMES)
def test_state_size_bounded(name: str) -> None:
    rng = np.random.default_rng(3)
    det = make(name)
    det.learn_many(rng.normal(0.0, 1.0, (10_000, D)))
    small = det.state_size()
    det.learn_many(rng.normal(0.0, 1.0, (90_000, D)))
    large = det.state_size()
    assert small > 0
    assert abs(large - small) <= 0.1 * small, f"{name}: {small} -> {large} bytes"


@pytest.mark.parametrize("name", NAMES)
def test_detects_injected_faults(name: str) -> None:
    spec = fault_spec(name)
    aucs = []
    for seed in (10, 11):
        X, onset, excluded = synthetic(seed, season=spec["season"], faults=tuple(spec["faults"]))
        scores = row_scores(make(name).score_learn_many(X))
        aucs.append(window_auc(scores, onset, excluded, start=1000))
    print(f"{name}: faults={spec['faults']} season={spec['season']} AUC={aucs}")
    assert min(aucs) > 0.9, f"{name}: AUC {aucs}"


@pytest.mark.parametrize("name", NAMES)
def test_batch_equals_one_at_a_time(name: str) -> None:
    X, _, _ = synthetic(4, n=800)
    X[100, 2] = np.nan
    batch = make(name).score_learn_many(X)
    det = make(name)
    loop = np.asarray([det.score_learn_one(row) for row in X])
    np.testing.assert_allclose(batch, loop, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_scores_in_unit_interval(name: str) -> None:
    X, _, _ = synthetic(5, n=1500)
    X[700] = [np.nan, np.inf, -np.inf, 1e300]
    X[800, 0] = -1e300
    scores = np.asarray(make(name).score_learn_many(X))
    assert np.all(np.isfinite(scores))
    assert np.all((scores >= 0.0) & (scores <= 1.0))

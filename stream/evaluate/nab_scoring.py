"""The NAB score, implemented from the published method (Lavin & Ahmad, 2015).

Each labelled window earns ``A_TP * sigma(y) / sigma(-1)`` for its *first* detection
(``y`` in ``[-1, 0)`` is the detection's position relative to the window's right end,
in window widths, ``sigma(y) = 2 / (1 + e^{5y}) - 1``), or costs ``-A_FN`` if missed.
A detection outside every window costs ``A_FP * sigma(y)`` with ``y`` its distance past
the previous window's right end in window widths (``sigma <= 0`` there), and the full
``-A_FP`` before the first window or 3 widths or more after one. Points in the
probationary period (the first ``min(floor(0.15 n), 750)`` of a file) are not scored.

The detection threshold is chosen once per cost profile over the whole corpus, by
sweeping every distinct anomaly score (NAB's optimiser), and the raw score is
normalised: ``100 * (raw - null) / (perfect - null)``, with ``perfect = A_TP * number
of windows`` and ``null`` the best raw score of a detector that says the same thing
everywhere. The arithmetic follows NAB's ``sweeper.py`` line for line, including its
``+ 1`` in the in-window position and ``width - 1`` past a window.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROBATION_PERCENT = 0.15


@dataclass(frozen=True, slots=True)
class CostProfile:
    """NAB's application profile: the weights of a TP, an FP and an FN."""

    name: str
    tp: float
    fp: float
    fn: float


def load_profiles(path: Path) -> list[CostProfile]:
    """The cost profiles of NAB's ``profiles.json`` (``standard``, ``reward_low_*``)."""
    raw = json.loads(path.read_text())
    return [
        CostProfile(
            name,
            m["CostMatrix"]["tpWeight"],
            m["CostMatrix"]["fpWeight"],
            m["CostMatrix"]["fnWeight"],
        )
        for name, m in raw.items()
    ]


def scaled_sigmoid(y: float) -> float:
    """NAB's ``2 / (1 + e^{5y}) - 1``, and ``-1`` from three widths past a window."""
    if y >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def probationary_length(n: int, percent: float = PROBATION_PERCENT) -> float:
    """Points learned without being scored: 15% of the file, at most 750 (NAB)."""
    return min(math.floor(percent * n), percent * 5000)


@dataclass(slots=True)
class FileSweep:
    """One file's scorable points: what a detection there would be worth.

    Attributes
    ----------
    scores
        The detector's anomaly score per scorable point.
    worth
        Weighted sweep score of a detection at the point under the profile.
    window
        Index of the window the point is in (file-local), ``-1`` outside windows.
    n_windows
        Windows of the file that hold at least one scorable point.
    """

    scores: np.ndarray
    worth: np.ndarray
    window: np.ndarray
    n_windows: int


def sweep_file(
    scores: Sequence[float] | np.ndarray,
    windows: Sequence[tuple[int, int]],
    profile: CostProfile,
    probation_percent: float = PROBATION_PERCENT,
) -> FileSweep:
    """Weigh every point of one file as NAB's ``Sweeper.calcSweepScore`` does.

    Parameters
    ----------
    scores
        Anomaly score of every point of the file, in time order.
    windows
        ``(first, last)`` point indices of each labelled window, inclusive, sorted.
    profile
        The cost profile.
    probation_percent
        Share of the file that is learn-only.
    """
    n = len(scores)
    max_tp = scaled_sigmoid(-1.0)
    probation = probationary_length(n, probation_percent)
    worth = np.empty(n)
    window = np.full(n, -1, dtype=np.int64)
    pending = list(windows)
    cur: int | None = None  # index into ``windows`` of the window we are in
    right = width = 0.0
    prev_right: float | None = None
    prev_width = 0.0
    k = -1
    for i in range(n):
        if pending and i == pending[0][0]:
            first, last = pending.pop(0)
            k += 1
            cur, right, width = k, float(last), float(last - first + 1)
        if cur is not None:
            pos = -(right - i + 1) / width
            worth[i] = scaled_sigmoid(pos) * profile.tp / max_tp
            window[i] = cur
        else:
            # Before any window the position is "far past" (weight -1); NAB's code.
            past = 3.0 if prev_right is None else abs(prev_right - i) / (prev_width - 1.0)
            worth[i] = scaled_sigmoid(past) * profile.fp
        if cur is not None and i == right:
            prev_right, prev_width, cur = right, width, None
    keep = np.arange(n) >= probation
    scorable_windows = np.unique(window[keep & (window >= 0)])
    return FileSweep(
        scores=np.asarray(scores, dtype=np.float64)[keep],
        worth=worth[keep],
        window=window[keep],
        n_windows=len(scorable_windows),
    )


@dataclass(frozen=True, slots=True)
class ThresholdScore:
    """The corpus raw score at one threshold (detection = score >= threshold)."""

    threshold: float
    score: float
    detected_windows: int
    false_positives: int


def _concat(files: Sequence[FileSweep]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    scores, worth, window = [], [], []
    offset = 0
    for f in files:
        scores.append(f.scores)
        worth.append(f.worth)
        # Corpus-unique window ids, so windows of two files never merge.
        window.append(np.where(f.window >= 0, f.window + offset, -1))
        offset += int(f.window.max(initial=-1)) + 1
    return np.concatenate(scores), np.concatenate(worth), np.concatenate(window), offset


def scores_by_threshold(files: Sequence[FileSweep], fn_weight: float) -> list[ThresholdScore]:
    """Raw corpus score at every distinct anomaly score, highest threshold first.

    As in NAB's ``calcScoreByThreshold``: lowering the threshold past a point makes it
    a detection; a window's value is the best worth among its detections (the earliest,
    since worth falls through a window), starting from ``-A_FN``.
    """
    scores, worth, window, n_ids = _concat(files)
    order = np.argsort(-scores, kind="stable")
    best = np.full(n_ids, np.nan)  # NaN: window not detected yet
    present = np.zeros(n_ids, dtype=bool)
    present[window[window >= 0]] = True
    total = -fn_weight * int(present.sum())
    fp_sum = 0.0
    detected = fp = 0
    out: list[ThresholdScore] = []
    cur = 1.1  # above every score: nothing detected
    for j in order:
        s = scores[j]
        if s != cur:
            out.append(ThresholdScore(float(cur), total + fp_sum, detected, fp))
            cur = s
        w = window[j]
        if w < 0:
            fp_sum += worth[j]
            fp += 1
        elif np.isnan(best[w]):
            best[w] = worth[j]
            total += worth[j] + fn_weight
            detected += 1
        elif worth[j] > best[w]:
            total += worth[j] - best[w]
            best[w] = worth[j]
    out.append(ThresholdScore(float(cur), total + fp_sum, detected, fp))
    return out


def score_at(files: Sequence[FileSweep], threshold: float, fn_weight: float) -> ThresholdScore:
    """Raw corpus score when every point scoring ``>= threshold`` is a detection."""
    scores, worth, window, n_ids = _concat(files)
    hit = scores >= threshold
    fp_mask = hit & (window < 0)
    present = np.zeros(n_ids, dtype=bool)
    present[window[window >= 0]] = True
    best = np.full(n_ids, -np.inf)
    tp_mask = hit & (window >= 0)
    np.maximum.at(best, window[tp_mask], worth[tp_mask])  # first detection = best worth
    detected = present & np.isfinite(best)
    total = float(worth[fp_mask].sum()) + float(best[detected].sum())
    total -= fn_weight * int((present & ~detected).sum())
    return ThresholdScore(threshold, total, int(detected.sum()), int(fp_mask.sum()))


def optimise(files: Sequence[FileSweep], fn_weight: float) -> ThresholdScore:
    """The threshold of the best raw corpus score (NAB's optimiser; ties: the highest)."""
    return max(scores_by_threshold(files, fn_weight), key=lambda t: t.score)


def null_score(files: Sequence[FileSweep], fn_weight: float) -> float:
    """Best raw score of a constant detector: all or nothing detected."""
    const = [FileSweep(np.zeros_like(f.scores), f.worth, f.window, f.n_windows) for f in files]
    return optimise(const, fn_weight).score


def normalise(raw: float, null: float, n_windows: int, tp_weight: float) -> float:
    """``100 * (raw - null) / (perfect - null)`` with ``perfect = A_TP * windows``."""
    perfect = tp_weight * n_windows
    return 100.0 * (raw - null) / (perfect - null)


def suppress(scores: np.ndarray, threshold: float, hold: int) -> np.ndarray:
    """Binary detections with a refractory period: after an alarm, ``hold`` points mute.

    Causal (an alarm depends only on earlier points); ``hold = 0`` keeps every point at
    or over the threshold. This is the post-processing NAB's HTM detector applies.
    """
    hits = np.flatnonzero(scores >= threshold)
    out = np.zeros(len(scores))
    next_ok = -1
    for i in hits:
        if i >= next_ok:
            out[i] = 1.0
            next_ok = int(i) + hold + 1
    return out


#: Candidate thresholds of the swept optimiser with a refractory period: tails from
#: 1e-1 to 1e-16 on a log grid, and 1.0 itself (scores saturate there).
GRID = tuple(sorted({1.0 - 10.0 ** (-k) for k in np.linspace(1.0, 16.0, 76)} | {1.0}))


def optimise_with_hold(
    files: Sequence[FileSweep], full_scores: Sequence[np.ndarray], hold: int, fn_weight: float
) -> ThresholdScore:
    """Best raw corpus score over :data:`GRID` when alarms have a refractory period.

    ``full_scores`` are the files' scores from their first point: the refractory period
    runs through the probationary period too, as it would online.
    """
    best = ThresholdScore(1.1, -math.inf, 0, 0)
    for t in (*GRID, math.inf):
        flags = []
        for f, s in zip(files, full_scores, strict=True):
            d = suppress(np.asarray(s), t, hold)
            flags.append(FileSweep(d[len(d) - len(f.scores) :], f.worth, f.window, f.n_windows))
        got = score_at(flags, 0.5, fn_weight)
        if got.score > best.score:
            best = ThresholdScore(t, got.score, got.detected_windows, got.false_positives)
    return best

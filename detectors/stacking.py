"""Many keys' univariate detectors run as one: per-channel state stacked across keys.

A univariate detector treats each channel on its own, so the detectors of many keys
(devices) with the same parameters are, together, one detector whose channels are all
of theirs end to end. A batch that brings each device one reading costs one numpy call
per step for the whole batch instead of one per device: numpy's per-call overhead
(about a microsecond per operation, tens of operations per step) is paid once, not
once per key. This is the "structure of arrays" layout of vectorised stream
processing (e.g. the per-key operator state of columnar engines), applied here only
for the duration of a batch: each key keeps its own arrays (its snapshot, its
restore), and the stack is rebuilt per batch. :class:`detectors.stack_pool.StackPool`
keeps the stack between batches instead (the pipeline's path).

Keys bring different numbers of rows; row ``r`` of the stack holds every key's ``r``-th
row, and a key with fewer rows gets NaN, which univariate detectors neither learn nor
score (see :mod:`detectors.base`), so each key's result equals its own prequential run
to round-off.

Examples
--------
>>> import numpy as np
>>> from detectors.univariate.robust_zscore import RobustZScore
>>> rng = np.random.default_rng(0)
>>> keys = [RobustZScore(warmup=5), RobustZScore(warmup=5)]
>>> for det in keys:
...     det.learn_many(rng.normal(size=(20, 2)))
>>> rows = [rng.normal(size=(3, 2)), rng.normal(size=(1, 2))]
>>> apart = [k.score_learn_many(r) for k, r in zip(clone(keys), rows)]
>>> together = prequential_stacked(keys, rows)
>>> all(np.allclose(a, b) for a, b in zip(apart, together))
True
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np

from detectors.base import UnivariateDetector

#: Fewer keys than this are run one by one (stacking has a fixed cost per batch).
MIN_KEYS = 4


def clone(detectors: Sequence[UnivariateDetector]) -> list[UnivariateDetector]:
    """Independent copies (for comparing a stacked run with separate ones)."""
    return [copy.deepcopy(d) for d in detectors]


def can_stack(detector: UnivariateDetector, width: int) -> bool:
    """Whether ``detector`` can run stacked on rows of ``width`` channels now.

    It must declare its channel state, have started (seen its first sample) and hold
    exactly ``width`` channels.
    """
    return detector._stacked_channels() == width


def stackable(detector: UnivariateDetector) -> bool:
    """Whether ``detector`` can run stacked once it has started (seen its first sample)."""
    return detector._stackable()


def prequential_stacked(
    detectors: Sequence[UnivariateDetector],
    matrices: Sequence[np.ndarray],
    surprise: bool = False,
) -> list[np.ndarray]:
    """Each detector's prequential scores (or surprises) of its own rows, computed stacked.

    ``detectors`` share type and parameters; ``matrices[i]`` has shape ``(n_i, d_i)``
    with ``d_i`` the channels of ``detectors[i]``. Returns ``(n_i, d_i)`` arrays, the
    same as ``detectors[i].score_learn_many(matrices[i])`` (``surprise_learn_many``
    with ``surprise``), and leaves each detector in the state that would leave.
    Detectors that cannot be stacked (no declared channel state, not yet started, or
    channels that differ from their matrix's width) run on their own, as do all when
    fewer than :data:`MIN_KEYS` can.
    """
    if len(detectors) != len(matrices):
        raise ValueError("one matrix per detector")
    ready = [
        i
        for i, (d, m) in enumerate(zip(detectors, matrices, strict=True))
        if can_stack(d, m.shape[1])
    ]
    stacked = _stack([detectors[i] for i in ready]) if len(ready) >= MIN_KEYS else None
    results: dict[int, np.ndarray] = {}
    if stacked is not None:
        parts = [detectors[i] for i in ready]
        scored = _run_stacked(stacked, parts, [matrices[i] for i in ready], surprise)
        results.update(zip(ready, scored, strict=True))
    step = "surprise_learn_many" if surprise else "score_learn_many"
    for i, (d, m) in enumerate(zip(detectors, matrices, strict=True)):
        if i not in results:  # a fresh key, or too few alike: on its own
            results[i] = np.asarray(getattr(d, step)(m)).reshape(m.shape)
    return [results[i] for i in range(len(detectors))]


def _run_stacked(
    stacked: UnivariateDetector,
    parts: list[UnivariateDetector],
    matrices: list[np.ndarray],
    surprise: bool,
) -> list[np.ndarray]:
    bounds: list[tuple[int, int]] = []
    lo = 0
    for m in matrices:
        bounds.append((lo, lo + m.shape[1]))
        lo += m.shape[1]
    X = np.full((max(m.shape[0] for m in matrices), lo), np.nan)
    for m, (a, b) in zip(matrices, bounds, strict=True):
        X[: m.shape[0], a:b] = m
    judge = stacked._surprise_vector if surprise else stacked._score_vector
    out = stacked._prequential(X, judge)
    stacked._unstack_to(parts, bounds)
    return [out[: m.shape[0], a:b] for m, (a, b) in zip(matrices, bounds, strict=True)]


def _stack(parts: list[UnivariateDetector]) -> UnivariateDetector | None:
    first = parts[0]
    if any(type(p) is not type(first) for p in parts):
        raise ValueError("stacked detectors must share their type")
    twin = type(first)(**first.params())
    return twin if twin._stack_from(parts) else None

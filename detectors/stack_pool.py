"""Many keys' univariate detectors kept stacked between batches, not only during one.

:func:`detectors.stacking.prequential_stacked` gathers the keys' channel state into
one stack per batch and scatters it back: for each key and each state array, one
Python-level copy each way. With a thousand keys bringing one row each, that copying
costs several times the detection itself. A :class:`StackPool` keeps the state of
every key it has seen in one array per state attribute ("structure of arrays" held
for the keys' lifetime, as columnar stream engines hold keyed operator state), and
each key's detector holds *views* of its own rows. A batch then gathers its keys'
rows with one fancy index per state array and scatters them back with one
assignment: the cost per key is a flag and a weak reference (see below).

The key's detector stays a complete, ordinary detector: its snapshot, restore,
``grow`` and one-at-a-time calls read and write its views. When it replaces an array
(every one-at-a-time learning step does, as do ``restore`` and ``grow``), its rows in
the pool are stale: the detector marks the pool's entry stale as it replaces the array
(:meth:`UnivariateDetector.__setattr__ <detectors.base.UnivariateDetector>`), and the
pool takes the key in again with its current state at its next stacked batch. The
check per key and batch is then one flag and one weak reference. Rows of keys that
are gone (garbage-collected) or were taken in again are reclaimed when the pool
compacts, which it does when it must grow.

Examples
--------
>>> import numpy as np
>>> from detectors.stacking import clone
>>> from detectors.univariate.robust_zscore import RobustZScore
>>> rng = np.random.default_rng(0)
>>> keys = [RobustZScore(warmup=5) for _ in range(6)]
>>> for det in keys:
...     det.learn_many(rng.normal(size=(20, 2)))
>>> apart, pool = clone(keys), StackPool()
>>> for _ in range(3):  # three batches: the state stays in the pool between them
...     rows = [rng.normal(size=(2, 2)) for _ in keys]
...     expected = [k.score_learn_many(r) for k, r in zip(apart, rows)]
...     got = pool.prequential(keys, rows)
...     assert all(np.allclose(e, g) for e, g in zip(expected, got))
>>> len(pool), pool.slots_in_use
(6, 12)
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detectors.base import UnivariateDetector
from detectors.stacking import MIN_KEYS, can_stack

#: Room is added in this proportion of what is needed, so growing is amortised.
GROWTH = 1.5
#: The smallest pool (channels), so a few keys do not make it grow at every admission.
MIN_SLOTS = 64


@dataclass(eq=False, slots=True)
class _Entry:
    """Where one key's channels are in the pool; the key and its state's owners hold
    it as their ``_pool_mark``, and mark it stale when they replace a state array."""

    ref: weakref.ref[UnivariateDetector]  # weak: the pool must not keep a key alive
    lo: int
    width: int
    index: np.ndarray  # lo .. lo + width - 1, for gathering
    stale: bool = False


class StackPool:
    """The channel state of one kind of detector (type and parameters) for many keys.

    Use one pool per kind; :meth:`prequential` refuses a detector of another type.
    Single-threaded, like the detectors themselves.
    """

    def __init__(self) -> None:
        self._twin: UnivariateDetector | None = None  # runs the stack
        self._leaves: list[tuple[UnivariateDetector, str]] = []  # the twin's (owner, attr)
        self._arrays: list[np.ndarray] = []  # per leaf: (slots, ...)
        self._entries: dict[int, _Entry] = {}  # by id() of the key's detector
        self._used = 0  # slots handed out, live or not; the next free one

    def __len__(self) -> int:
        """Keys whose state is in the pool (some may be stale until checked)."""
        return len(self._entries)

    @property
    def slots_in_use(self) -> int:
        """Channels handed out since the last compaction (stale ones included)."""
        return self._used

    @property
    def capacity(self) -> int:
        """Channels the pool's arrays have room for."""
        return len(self._arrays[0]) if self._arrays else 0

    def prequential(
        self,
        detectors: Sequence[UnivariateDetector],
        matrices: Sequence[np.ndarray],
        surprise: bool = False,
    ) -> list[np.ndarray]:
        """Each detector's prequential scores (surprises) of its rows, run stacked.

        The same contract as :func:`detectors.stacking.prequential_stacked`, whose
        results it equals to round-off; the state of the stacked keys stays here
        between calls. A failure leaves every key's state as it was (the stack is a
        copy until it is written back).
        """
        if len(detectors) != len(matrices):
            raise ValueError("one matrix per detector")
        if self._twin is None:
            first = next(
                (d for d, m in zip(detectors, matrices, strict=True) if can_stack(d, m.shape[1])),
                None,
            )
            if first is not None:
                self._adopt_kind(first)
        pooled: list[int] = []  # their state is in the pool
        joining: list[int] = []  # to be taken in
        for i, (det, m) in enumerate(zip(detectors, matrices, strict=True)):
            entry = self._entries.get(id(det))
            if entry is not None and self._holds(entry, det):
                if entry.width == m.shape[1]:
                    pooled.append(i)
                # else: its width is off; on its own, where that is reported
            elif can_stack(det, m.shape[1]) and self._fits(det):
                joining.append(i)
        results: list[np.ndarray | None] = [None] * len(detectors)
        stacked = 0
        if len(pooled) + len(joining) >= MIN_KEYS:
            if joining:
                self._take_in([detectors[i] for i in joining])  # may move everyone's rows
                pooled += joining
            entries = [self._entries[id(detectors[i])] for i in pooled]
            scored = self._run(entries, [matrices[i] for i in pooled], surprise)
            for i, out in zip(pooled, scored, strict=True):
                results[i] = out
            stacked = len(pooled)
        if stacked < len(detectors):
            step = "surprise_learn_many" if surprise else "score_learn_many"
            for i, (det, m) in enumerate(zip(detectors, matrices, strict=True)):
                if results[i] is None:  # fresh, stale, a width that changed, or too few alike
                    results[i] = np.asarray(getattr(det, step)(m)).reshape(m.shape)
        return results  # type: ignore[return-value]  # all filled

    # -- the stacked run ---------------------------------------------------------------
    def _run(
        self, entries: list[_Entry], matrices: list[np.ndarray], surprise: bool
    ) -> list[np.ndarray]:
        assert self._twin is not None
        index = np.concatenate([e.index for e in entries])
        for (owner, attr), pool in zip(self._leaves, self._arrays, strict=True):
            setattr(owner, attr, pool[index])  # a copy: the pool is untouched until done
        shapes = {m.shape for m in matrices}
        if len(shapes) == 1:  # the common case: every key brings as many rows of one width
            ((r, w),) = shapes
            X = np.concatenate(matrices, axis=1)
        else:
            X = np.full((max(m.shape[0] for m in matrices), len(index)), np.nan)
            bounds: list[tuple[int, int]] = []
            lo = 0
            for m in matrices:
                X[: m.shape[0], lo : lo + m.shape[1]] = m
                bounds.append((lo, lo + m.shape[1]))
                lo += m.shape[1]
        judge = self._twin._surprise_vector if surprise else self._twin._score_vector
        out = self._twin._prequential(X, judge)
        for (owner, attr), pool in zip(self._leaves, self._arrays, strict=True):
            pool[index] = getattr(owner, attr)
        if len(shapes) == 1:  # each key's block, as views: one C loop
            return list(out.reshape(r, len(matrices), w).transpose(1, 0, 2))
        return [out[: m.shape[0], a:b] for m, (a, b) in zip(matrices, bounds, strict=True)]

    # -- membership --------------------------------------------------------------------
    @staticmethod
    def _holds(entry: _Entry, det: UnivariateDetector) -> bool:
        """Whether the pool's rows are still ``det``'s state: it replaced no state array
        since it was placed (it would have marked the entry), and it is the same
        detector, not a newer one at a reused ``id``."""
        return not entry.stale and entry.ref() is det

    def _fits(self, det: UnivariateDetector) -> bool:
        """Whether ``det``'s state has the shapes of this pool's kind; another type is
        a caller's error (one pool per kind)."""
        if type(det) is not type(self._twin):
            raise ValueError("a pool's detectors must share their type")
        leaves = _leaves(det)
        return len(leaves) == len(self._arrays) and all(
            getattr(o, a).shape[1:] == pool.shape[1:] and getattr(o, a).dtype == pool.dtype
            for (o, a), pool in zip(leaves, self._arrays, strict=True)
        )

    def _adopt_kind(self, first: UnivariateDetector) -> None:
        """Take the type, parameters and state shapes of ``first`` (started)."""
        twin = type(first)(**first.params())
        if not twin._stack_from([first]):  # gives the twin its state's shapes
            raise ValueError(f"{first.name} cannot run stacked")
        self._twin = twin
        self._leaves = _leaves(twin)
        self._arrays = [
            np.empty((0, *getattr(o, a).shape[1:]), getattr(o, a).dtype) for o, a in self._leaves
        ]

    def _take_in(self, dets: list[UnivariateDetector]) -> None:
        """Copy ``dets``' state into the pool and give them views of it."""
        need = sum(_width(d) for d in dets)
        if self._used + need > self.capacity:
            self._compact(need)
        for det in dets:
            entry = self._place(det, self._used)  # a stale entry's rows are reclaimed later
            self._used += entry.width
            self._entries[id(det)] = entry

    def _place(self, det: UnivariateDetector, lo: int) -> _Entry:
        """Write ``det``'s current state at ``lo`` and point its attributes at it."""
        width = _width(det)
        owners = det._state_owners()
        pools = iter(self._arrays)
        for owner in owners:
            attrs = type(owner).channel_state
            for attr, pool in zip(attrs, pools, strict=False):  # pools: all owners' arrays
                pool[lo : lo + width] = getattr(owner, attr)
                setattr(owner, attr, pool[lo : lo + width])  # marks an earlier entry stale
        key = id(det)
        entry = _Entry(
            weakref.ref(det, lambda ref: self._forget(key, ref)),
            lo,
            width,
            np.arange(lo, lo + width),
        )
        for part in det._parts():  # the owners, and any combination above them
            part._pool_mark = entry
        return entry

    def _forget(self, key: int, ref: weakref.ref[UnivariateDetector]) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry.ref is ref:  # not a newer detector at that id
            del self._entries[key]

    def _compact(self, need: int) -> None:
        """Move the live keys' rows to new arrays with room for ``need`` more channels."""
        live = [
            (det, e)
            for e in list(self._entries.values())  # a collection may drop keys meanwhile
            if (det := e.ref()) is not None and self._holds(e, det)
        ]
        rows = sum(e.width for _, e in live)
        room = max(int((rows + need) * GROWTH), MIN_SLOTS)
        old = self._arrays
        self._arrays = [np.empty((room, *a.shape[1:]), a.dtype) for a in old]
        self._entries = {}
        self._used = 0
        for det, _ in live:  # views of the old arrays keep them alive until replaced
            entry = self._place(det, self._used)
            self._used += entry.width
            self._entries[id(det)] = entry


def _leaves(det: UnivariateDetector) -> list[tuple[UnivariateDetector, str]]:
    return [(o, a) for o in det._state_owners() for a in type(o).channel_state]


def _width(det: UnivariateDetector) -> int:
    width = det._stacked_channels()
    assert width is not None  # only started detectors are taken in
    return width

"""The one small interface that every Vigil detector follows.

Observations are float vectors of a fixed width ``d``: the sensors of one device, or
one value (``d = 1``). Two families share the interface:

* :class:`UnivariateDetector` treats each of the ``d`` channels as its own series and
  returns one score per channel (a scalar in gives a scalar out).
* :class:`MultivariateDetector` looks at the channels jointly, returns one score per
  observation and can say which channels drove it (:meth:`MultivariateDetector.explain_one`).

Every detector is *prequential*: :meth:`Detector.score_one` never changes state and
:meth:`Detector.learn_one` does. ``score_learn_many(X)`` gives exactly the scores of
``for x in X: s = score_one(x); learn_one(x)``; subclasses override the batch methods
with vectorised code where the recurrence allows it.

Scores are in ``[0, 1]`` and mean one thing for every detector: an estimate of
``P(a normal observation scores lower)``, that is ``1 - tail probability``. On normal
data they are close to uniform once the detector has warmed up, so one threshold policy
(``score > 1 - q`` or the SPOT tail of :mod:`detectors.thresholds`) serves all of them,
and ensembles can combine them.

Non-finite inputs (NaN, inf) never enter state: ``learn_one`` skips those channels and
``score_one`` scores them ``0`` (no evidence). State snapshots are JSON-safe dicts with
the registry name, a format version, the parameters and the state; they never use
pickle, so a poisoned changelog cannot run code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Self

import numpy as np

from detectors._arrays import as_matrix, as_vector, score_to_surprise

#: Type of a snapshot: JSON-safe, versioned.
Snapshot = dict[str, Any]


class SnapshotError(ValueError):
    """A snapshot is malformed, of another detector, or of an unsupported version."""


class Detector(ABC):
    """Base class of all detectors; see the module docstring for the contract."""

    #: Registry name, set by :func:`detectors.registry.register`.
    name: ClassVar[str] = ""
    #: ``"univariate"`` or ``"multivariate"``.
    kind: ClassVar[str] = ""
    #: Snapshot format version; bump when the state layout changes.
    version: ClassVar[int] = 1

    # -- one observation -------------------------------------------------------------
    @abstractmethod
    def learn_one(self, x: Any) -> None:
        """Update the model with one observation."""

    @abstractmethod
    def score_one(self, x: Any) -> Any:
        """Score one observation in ``[0, 1]`` without learning it."""

    def hold_one(self, x: Any) -> None:
        """See ``x`` without learning from it (a value held back as anomalous).

        Detectors with temporal context (the lags of a predictive model, a window of
        recent scores) advance it, so what follows is judged against what really
        came before; the model itself does not move. The default does nothing.
        """
        return None

    def score_learn_one(self, x: Any) -> Any:
        """Score ``x``, then learn it (the streaming step)."""
        score = self.score_one(x)
        self.learn_one(x)
        return score

    # -- a batch of observations, rows in time order -----------------------------------
    def learn_many(self, X: np.ndarray) -> None:
        """Learn every row of ``X`` in order."""
        for row in as_matrix(X):
            self.learn_one(row)

    def score_learn_many(self, X: np.ndarray) -> np.ndarray:
        """Prequential scores of the rows of ``X``: each scored, then learned."""
        rows = as_matrix(X)
        return np.asarray([self.score_learn_one(row) for row in rows], dtype=np.float64)

    def surprise_learn_many(self, X: np.ndarray) -> np.ndarray:
        """Prequential *surprises* ``-log10(tail probability)``, shaped as the scores.

        The same evidence as :meth:`score_learn_many` on an unbounded scale: a score
        rounds to 1 once the tail is below about ``1e-16``, so scores cannot rank two
        extreme observations, and a threshold fitted to a key's own history (SPOT)
        cannot learn that "extreme" is routine there (a square wave's edges to a
        forecaster). Detectors that compute their tail in logs override
        :meth:`UnivariateDetector._surprise_vector`; the others are capped at 16.
        """
        return score_to_surprise(self.score_learn_many(X))

    # -- state ---------------------------------------------------------------------------
    @abstractmethod
    def params(self) -> dict[str, Any]:
        """Constructor parameters, JSON-safe, so ``type(self)(**params())`` is a fresh twin."""

    @abstractmethod
    def _get_state(self) -> dict[str, Any]:
        """The learned state, JSON-safe (arrays through :func:`detectors._arrays.pack`)."""

    @abstractmethod
    def _set_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`_get_state`."""

    def snapshot(self) -> Snapshot:
        """A compact, versioned, JSON-safe copy of the detector (parameters and state)."""
        return {
            "type": self.name,
            "version": self.version,
            "params": self.params(),
            "state": self._get_state(),
        }

    @classmethod
    def restore(cls, snapshot: Snapshot) -> Self:
        """Rebuild a detector from :meth:`snapshot`; raises :class:`SnapshotError`."""
        if not isinstance(snapshot, dict) or snapshot.get("type") != cls.name:
            raise SnapshotError(f"not a {cls.name!r} snapshot")
        if snapshot.get("version") != cls.version:
            raise SnapshotError(
                f"{cls.name!r} snapshot version {snapshot.get('version')!r} "
                f"is not the supported version {cls.version}"
            )
        try:
            detector = cls(**snapshot["params"])
            detector._set_state(snapshot["state"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"corrupt {cls.name!r} snapshot: {exc}") from exc
        return detector

    @abstractmethod
    def state_size(self) -> int:
        """Bytes of learned numeric state (what a table row costs, before encoding)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


class UnivariateDetector(Detector):
    """A detector of each channel on its own; scores have the shape of the input."""

    kind: ClassVar[str] = "univariate"
    #: Attributes holding the learned state, each an array whose axis 0 is the channel
    #: (``None`` before the first sample). A detector whose learned state is all listed
    #: here can run stacked with its twins of other keys (:mod:`detectors.stacking`).
    channel_state: ClassVar[tuple[str, ...]] = ()
    #: Other attributes whose replacement moves the learned state (a combination's
    #: members): for :class:`~detectors.stack_pool.StackPool`, like ``channel_state``.
    structure_state: ClassVar[tuple[str, ...]] = ()
    #: Set by a :class:`~detectors.stack_pool.StackPool` holding this detector's state
    #: (its state attributes are views of the pool's rows); see :meth:`__setattr__`.
    _pool_mark: Any = None

    def __setattr__(self, name: str, value: Any) -> None:
        # A pooled key that replaces a state array (a one-at-a-time step, restore,
        # grow) no longer keeps its state in the pool's rows: tell the pool, so its
        # check per key and batch is one flag, not a read of every state attribute.
        mark = self._pool_mark
        if (
            mark is not None
            and (name in self.channel_state or name in self.structure_state)
            and self.__dict__.get(name) is not value
        ):
            mark.stale = True
        object.__setattr__(self, name, value)

    def __getstate__(self) -> dict[str, Any]:
        # A copy (deepcopy, pickle) is not in the pool, whatever the original is.
        state = self.__dict__.copy()
        state.pop("_pool_mark", None)
        return state

    def _stackable(self) -> bool:
        """Whether this detector can run stacked once it has started."""
        return bool(self.channel_state)

    def _stacked_channels(self) -> int | None:
        """Channels of the declared state (``None``: not stackable or not started)."""
        if not self.channel_state:
            return None
        first = getattr(self, self.channel_state[0])
        return None if first is None else len(first)

    def _state_owners(self) -> tuple[UnivariateDetector, ...]:
        """The detectors whose :attr:`channel_state` holds this one's learned state
        (itself; a combination, its members')."""
        return (self,)

    def _parts(self) -> tuple[UnivariateDetector, ...]:
        """This detector and every detector inside it (a combination's members, theirs)."""
        return (self,)

    def _stack_from(self, parts: list[Self]) -> bool:
        """Hold the channels of ``parts`` end to end (``self`` is a fresh twin).

        False (and ``self`` unusable) when a part cannot be stacked: no channel state
        declared, or a part that has not seen its first sample.
        """
        if not self.channel_state:
            return False
        for attr in self.channel_state:
            arrays = [getattr(p, attr) for p in parts]
            if any(a is None for a in arrays):
                return False
            setattr(self, attr, np.concatenate(arrays))
        return True

    def _unstack_to(self, parts: list[Self], bounds: list[tuple[int, int]]) -> None:
        """Give each part back its channels ``bounds[i]`` (copies: no view keeps the stack)."""
        for attr in self.channel_state:
            stacked = getattr(self, attr)
            for part, (lo, hi) in zip(parts, bounds, strict=True):
                setattr(part, attr, stacked[lo:hi].copy())

    def score_one(self, x: Any) -> Any:
        vec, scalar = as_vector(x)
        scores = self._score_vector(vec)
        return float(scores[0]) if scalar else scores

    def learn_one(self, x: Any) -> None:
        vec, _ = as_vector(x)
        self._learn_vector(vec)

    def score_learn_many(self, X: np.ndarray) -> np.ndarray:
        """Prequential scores, shape ``(n, d)`` (or ``(n,)`` for a 1-D input)."""
        return self._prequential(X, self._score_vector)

    def surprise_one(self, x: Any) -> Any:
        """The surprise of ``x`` (see :meth:`Detector.surprise_learn_many`), no learning."""
        vec, scalar = as_vector(x)
        surprise = self._surprise_vector(vec)
        return float(surprise[0]) if scalar else surprise

    def surprise_learn_many(self, X: np.ndarray) -> np.ndarray:
        return self._prequential(X, self._surprise_vector)

    def _prequential(self, X: np.ndarray, judge: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """``judge`` each row, then learn it; shape ``(n, d)`` (``(n,)`` for 1-D input)."""
        arr = np.asarray(X, dtype=np.float64)
        one_channel = arr.ndim == 1
        rows = as_matrix(arr)
        out = np.empty(rows.shape, dtype=np.float64)
        for i, row in enumerate(rows):
            out[i] = judge(row)
            self._learn_vector(row)
        return out[:, 0] if one_channel else out

    def _surprise_vector(self, x: np.ndarray) -> np.ndarray:
        """``-log10`` of the tail probabilities of one observation; override to uncap."""
        return np.asarray(score_to_surprise(self._score_vector(x)), dtype=np.float64)

    @property
    def n_channels(self) -> int:
        """Channels this detector has state for (0 before it has seen data)."""
        return 0

    def grow(self, d: int) -> None:
        """Add channels up to ``d``, keeping the learned state of the existing ones.

        New channels start fresh (they warm up on their own). Detectors whose state is
        per channel implement this; the default refuses, and callers rebuild instead.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot add channels")

    @abstractmethod
    def _score_vector(self, x: np.ndarray) -> np.ndarray:
        """Scores of one observation vector (finite or not), shape ``(d,)``."""

    @abstractmethod
    def _learn_vector(self, x: np.ndarray) -> None:
        """Learn one observation vector, skipping non-finite channels."""


class MultivariateDetector(Detector):
    """A detector of all channels jointly: one score per observation, with attribution."""

    kind: ClassVar[str] = "multivariate"

    def explain_one(self, x: Any) -> np.ndarray:
        """Shares of each channel in the score of ``x``: non-negative, summing to 1.

        The default spreads the blame evenly; detectors with a real decomposition
        (PCA contributions, Mahalanobis terms) override it.
        """
        vec, _ = as_vector(x)
        return np.full(vec.shape, 1.0 / max(len(vec), 1))


def as_univariate(det: Detector, owner: str) -> UnivariateDetector:
    """``det`` if it is univariate; a wrapper (``owner``) of members needs them so."""
    if not isinstance(det, UnivariateDetector):
        raise ValueError(f"{owner} members must be univariate, not {det.name!r}")
    return det

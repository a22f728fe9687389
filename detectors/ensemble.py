"""Ensembles: several detectors on the same stream, their scores combined.

Because every detector's score means the same thing (``1 - tail probability``),
scores of different detectors can be combined directly:

* ``"max"``: the most alarmed member wins. With ``m`` members the false-alarm rate at a
  threshold ``1 - q`` is at most ``m·q`` (union bound).
* ``"mean"``: the average score; smooth, conservative, and slow to react to one member.
* ``"fisher"``: Fisher's method, ``X = -2 Σ log p_i`` referred to ``χ²`` with ``2m``
  degrees of freedom (Fisher, "Statistical Methods for Research Workers", 1925, §21.1).
  Fisher's method assumes *independent* p-values; members watching the same data are
  positively dependent, so the combined tail is too small (anti-conservative: more alarms
  than the nominal rate). Use it to rank, and set thresholds on its observed scores.

Univariate members score each channel; their channel scores are reduced to one per
observation by ``univariate_reduce``: ``"max"`` (anti-conservative by up to a factor
``d``) or ``"bonferroni"`` (``1 - min(1, d·min p)``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from detectors._arrays import as_matrix, as_vector
from detectors.base import Detector, MultivariateDetector, SnapshotError
from detectors.multivariate._special import chi2_sf
from detectors.registry import create, register, restore

_COMBINE = ("max", "mean", "fisher")
_REDUCE = ("max", "bonferroni")
_MIN_TAIL = 1e-16


def _default_members() -> list[dict[str, Any]]:
    return [{"name": "mahalanobis"}, {"name": "loda"}, {"name": "robust_zscore"}]


@register("ensemble")
class Ensemble(MultivariateDetector):
    """Feed several registered detectors the same rows and combine their scores.

    Parameters
    ----------
    members
        Specs ``{"name": ..., "params": {...}, "weight": 1.0}`` of registered
        detectors (``params`` and ``weight`` optional).
    combine
        ``"max"``, ``"mean"`` (weighted) or ``"fisher"``; see the module docstring.
    univariate_reduce
        How a univariate member's channel scores become one: ``"max"`` or
        ``"bonferroni"``.

    Notes
    -----
    Cost per update and state: the sum of the members'. A row with a non-finite value is
    given to no member and scores 0. Attribution is the average of the members'
    attributions weighted by ``weight × surprise`` (``-log(1 - score)`` of the member),
    so members that fired explain; a univariate member's attribution is its per-channel
    surprise, normalised.

    Use it to cover several kinds of anomaly at once (per-channel spikes with
    ``robust_zscore``, broken correlations with ``pca``, odd combinations with ``hst``).
    Do not use it to make one weak detector stronger (copies of one detector agree), nor
    read ``fisher`` scores as calibrated probabilities.

    Scores are combined member scores in ``[0, 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(5)
    >>> ens = Ensemble(
    ...     members=[{"name": "mahalanobis"}, {"name": "robust_zscore"}], combine="max"
    ... )
    >>> ens.learn_many(rng.normal(size=(500, 3)))
    >>> ens.score_one([0.1, -0.2, 0.3]) < 0.9
    True
    >>> ens.score_one([0.0, 9.0, 0.0]) > 0.999
    True
    >>> int(np.argmax(ens.explain_one([0.0, 9.0, 0.0])))
    1
    """

    version: ClassVar[int] = 1

    def __init__(
        self,
        members: list[dict[str, Any]] | None = None,
        combine: str = "max",
        univariate_reduce: str = "max",
    ) -> None:
        if combine not in _COMBINE:
            raise ValueError(f"combine must be one of {_COMBINE}")
        if univariate_reduce not in _REDUCE:
            raise ValueError(f"univariate_reduce must be one of {_REDUCE}")
        specs = _default_members() if members is None else members
        if not specs:
            raise ValueError("an ensemble needs at least one member")
        self.members: list[dict[str, Any]] = []
        for spec in specs:
            if not isinstance(spec, dict) or "name" not in spec:
                raise ValueError(f"member spec needs a 'name': {spec!r}")
            if spec["name"] == "ensemble":
                raise ValueError("ensembles do not nest")
            weight = float(spec.get("weight", 1.0))
            if not weight > 0.0:
                raise ValueError("member weights must be positive")
            params = dict(spec.get("params") or {})
            self.members.append({"name": str(spec["name"]), "params": params, "weight": weight})
        self.combine = combine
        self.univariate_reduce = univariate_reduce
        self._detectors: list[Detector] = [create(m["name"], **m["params"]) for m in self.members]
        self._weights = np.array([m["weight"] for m in self.members])

    def params(self) -> dict[str, Any]:
        return {
            "members": [dict(m, params=dict(m["params"])) for m in self.members],
            "combine": self.combine,
            "univariate_reduce": self.univariate_reduce,
        }

    @classmethod
    def conformance_params(cls) -> dict[str, Any]:
        """Small, fast parameters for the shared conformance tests."""
        return {
            "members": [
                {"name": "mahalanobis", "params": {"alpha": 0.02, "warmup": 30}},
                {"name": "robust_zscore"},
            ],
            "combine": "max",
        }

    # -- combining -------------------------------------------------------------------
    def _reduce(self, scores: np.ndarray) -> np.ndarray:
        """Channel scores ``(n, d)`` of a univariate member to ``(n,)``."""
        if self.univariate_reduce == "max":
            return scores.max(axis=1)
        tail = np.min(1.0 - scores, axis=1) * scores.shape[1]
        return 1.0 - np.minimum(tail, 1.0)

    def _combine(self, S: np.ndarray) -> np.ndarray:
        """Member scores ``(n, m)`` to ensemble scores ``(n,)``."""
        if self.combine == "max":
            out = S.max(axis=1)
        elif self.combine == "mean":
            out = S @ self._weights / self._weights.sum()
        else:
            tails = np.clip(1.0 - S, _MIN_TAIL, 1.0)
            stat = -2.0 * np.log(tails).sum(axis=1)
            dof = 2 * S.shape[1]
            out = 1.0 - np.fromiter((chi2_sf(v, dof) for v in stat), np.float64, len(stat))
        return np.clip(out, 0.0, 1.0)

    def _member_scores(self, rows: np.ndarray, learn: bool) -> np.ndarray:
        cols = []
        for det in self._detectors:
            if learn:
                s = np.asarray(det.score_learn_many(rows), dtype=np.float64)
            else:
                s = np.asarray([det.score_one(r) for r in rows], dtype=np.float64)
            cols.append(self._reduce(s) if s.ndim == 2 else s)
        return np.column_stack(cols)

    # -- streaming ---------------------------------------------------------------------
    def score_one(self, x: Any) -> float:
        vec, _ = as_vector(x)
        if not np.all(np.isfinite(vec)):
            return 0.0
        return float(self._combine(self._member_scores(vec[None, :], learn=False))[0])

    def learn_one(self, x: Any) -> None:
        self.learn_many(np.asarray(x, dtype=np.float64)[None, :])

    def learn_many(self, X: np.ndarray) -> None:
        rows = as_matrix(X)
        rows = rows[np.all(np.isfinite(rows), axis=1)]
        if len(rows):
            for det in self._detectors:
                det.learn_many(rows)

    def score_learn_one(self, x: Any) -> float:
        vec, _ = as_vector(x)
        return float(self.score_learn_many(vec[None, :])[0])

    def score_learn_many(self, X: np.ndarray) -> np.ndarray:
        rows = as_matrix(X)
        good = np.all(np.isfinite(rows), axis=1)
        out = np.zeros(len(rows))
        if good.any():
            out[good] = self._combine(self._member_scores(rows[good], learn=True))
        return out

    # -- attribution -------------------------------------------------------------------
    def explain_one(self, x: Any) -> np.ndarray:
        vec, _ = as_vector(x)
        d = len(vec)
        uniform = np.full(d, 1.0 / max(d, 1))
        if not np.all(np.isfinite(vec)):
            return uniform
        shares, surprise = [], []
        for det in self._detectors:
            if isinstance(det, MultivariateDetector):
                score = float(det.score_one(vec))
                share = np.asarray(det.explain_one(vec), dtype=np.float64)
            else:
                channel = np.asarray(det.score_one(vec), dtype=np.float64).reshape(d)
                score = float(self._reduce(channel[None, :])[0])
                bits = -np.log(np.clip(1.0 - channel, _MIN_TAIL, 1.0))
                total = float(bits.sum())
                share = bits / total if total > 0.0 else uniform
            shares.append(share)
            surprise.append(-math.log(max(1.0 - score, _MIN_TAIL)))
        w = self._weights * np.asarray(surprise)
        if not w.sum() > 0.0:
            w = self._weights
        out = np.asarray(shares).T @ w / w.sum()
        total = float(out.sum())
        return out / total if total > 0.0 else uniform

    # -- state -------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        return {"members": [det.snapshot() for det in self._detectors]}

    def _set_state(self, state: dict[str, Any]) -> None:
        snaps = state["members"]
        if not isinstance(snaps, list) or len(snaps) != len(self.members):
            raise ValueError("member snapshots do not match the member specs")
        detectors = []
        for spec, snap in zip(self.members, snaps, strict=True):
            if not isinstance(snap, dict) or snap.get("type") != spec["name"]:
                raise ValueError(f"member snapshot is not a {spec['name']!r}")
            try:
                detectors.append(restore(snap))
            except SnapshotError as exc:
                raise ValueError(str(exc)) from exc
        self._detectors = detectors

    def state_size(self) -> int:
        return sum(det.state_size() for det in self._detectors)

"""Online normalisation: put differently scaled, drifting channels on one scale.

A device may report temperature in degrees and pressure in pascals; a multivariate
detector (or one threshold over many channels) needs them comparable. An
:class:`OnlineScaler` keeps a Huber-robust exponentially weighted location and scale
per channel (the recursion of :mod:`detectors.univariate.robust_zscore`) and maps
``x`` to ``(x - location) / scale``; forgetting lets it follow drift.

:class:`Normalised` is a detector that puts a scaler in front of any registered
detector. While the scaler warms up it hands the inner detector NaN, which the inner
detector skips, so the inner model only ever learns normalised values.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from detectors._arrays import as_matrix, as_vector
from detectors.base import Detector, Snapshot, SnapshotError
from detectors.registry import create, register, restore
from detectors.univariate.robust_zscore import RobustZScore


class OnlineScaler:
    """Per-channel robust exponentially weighted standardisation.

    Parameters
    ----------
    alpha
        Forgetting factor (memory about ``1 / alpha`` samples).
    clip
        Huber constant of the robust update.
    warmup
        Samples per channel before :meth:`transform_one` gives numbers (NaN before).
    min_scale
        Floor of the scale (a constant channel maps to 0).

    Notes
    -----
    Cost per update: O(d). State: 2 floats and 1 counter per channel.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(6)
    >>> X = rng.normal(0.0, 1.0, (500, 2)) * [1.0, 1e4] + [5.0, 3e5]
    >>> sc = OnlineScaler(alpha=0.01)
    >>> for row in X:
    ...     sc.learn_one(row)
    >>> z = sc.transform_one(np.array([7.0, 3e5 + 2e4]))  # both 2 scales above
    >>> np.round(z, 0)
    array([2., 2.])
    """

    version: ClassVar[int] = 1

    def __init__(
        self,
        alpha: float = 0.01,
        clip: float = 3.0,
        warmup: int = 30,
        min_scale: float = 1e-9,
    ) -> None:
        self._est = RobustZScore(alpha=alpha, clip=clip, warmup=warmup, min_scale=min_scale)

    def params(self) -> dict[str, Any]:
        """Constructor parameters, JSON-safe."""
        return self._est.params()

    def transform_one(self, x: Any) -> Any:
        """``(x - location) / scale`` per channel; NaN for channels still warming up."""
        vec, scalar = as_vector(x)
        self._est._ensure(len(vec))
        assert self._est._n is not None
        loc, scale = self._est.expected()
        z = np.where(self._est._n >= self._est.warmup, (vec - loc) / scale, np.nan)
        return float(z[0]) if scalar else z

    def learn_one(self, x: Any) -> None:
        """Update location and scale (non-finite channels are skipped)."""
        vec, _ = as_vector(x)
        self._est._learn_vector(vec)

    def learn_transform_one(self, x: Any) -> Any:
        """Transform ``x`` with the current estimates, then learn it."""
        z = self.transform_one(x)
        self.learn_one(x)
        return z

    def expected(self) -> tuple[np.ndarray, np.ndarray]:
        """Current location and scale per channel."""
        return self._est.expected()

    def snapshot(self) -> Snapshot:
        """JSON-safe, versioned copy (same layout as detector snapshots)."""
        return {
            "type": "online_scaler",
            "version": self.version,
            "params": self.params(),
            "state": self._est._get_state(),
        }

    @classmethod
    def restore(cls, snapshot: Snapshot) -> OnlineScaler:
        """Inverse of :meth:`snapshot`; raises :class:`SnapshotError`."""
        if not isinstance(snapshot, dict) or snapshot.get("type") != "online_scaler":
            raise SnapshotError("not an 'online_scaler' snapshot")
        if snapshot.get("version") != cls.version:
            raise SnapshotError(f"unsupported online_scaler version {snapshot.get('version')!r}")
        try:
            scaler = cls(**snapshot["params"])
            scaler._est._set_state(snapshot["state"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"corrupt online_scaler snapshot: {exc}") from exc
        return scaler

    def state_size(self) -> int:
        """Bytes of learned numeric state."""
        return self._est.state_size()


@register("normalised")
class Normalised(Detector):
    """Any registered detector behind an :class:`OnlineScaler`.

    Parameters
    ----------
    inner
        ``{"name": registered name, "params": {...}}`` of the wrapped detector.
    alpha, clip, warmup, min_scale
        Parameters of the scaler.

    Notes
    -----
    Cost per update: the scaler's O(d) plus the inner detector's. State: the scaler's
    3 numbers per channel plus the inner state. Use it in front of multivariate
    detectors whose channels have different units, or of any detector whose
    parameters are in absolute units. Not needed in front of detectors that already
    standardise each channel (``robust_zscore``, ``cusum``...), where it only adds a
    second, faster-forgetting baseline. Scores keep the inner detector's shape and
    meaning (``kind`` says which family the wrapper behaves as).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(7)
    >>> det = Normalised(inner={"name": "robust_zscore", "params": {"warmup": 20}})
    >>> det.learn_many(rng.normal(0.0, 1.0, (400, 2)) * [1.0, 1e4])
    >>> det.score_one(np.array([4.0, 4e4])) > 0.999  # 4 sigma on both channels
    array([ True,  True])
    """

    def __init__(
        self,
        inner: dict[str, Any] | None = None,
        alpha: float = 0.01,
        clip: float = 3.0,
        warmup: int = 30,
        min_scale: float = 1e-9,
    ) -> None:
        spec: dict[str, Any] = inner if inner is not None else {"name": "robust_zscore"}
        if spec.get("name") == self.name:
            raise ValueError("a normalised detector cannot wrap another one")
        inner_name = str(spec["name"])
        inner_params: dict[str, Any] = dict(spec.get("params", {}))
        self._inner_spec: dict[str, Any] = {"name": inner_name, "params": inner_params}
        self.inner = create(inner_name, **inner_params)
        self.scaler = OnlineScaler(alpha=alpha, clip=clip, warmup=warmup, min_scale=min_scale)

    @property
    def kind(self) -> str:  # type: ignore[override]
        """The wrapped detector's family: scores have its shape."""
        return self.inner.kind

    def params(self) -> dict[str, Any]:
        return {"inner": self._inner_spec, **self.scaler.params()}

    def score_one(self, x: Any) -> Any:
        return self.inner.score_one(self.scaler.transform_one(x))

    def learn_one(self, x: Any) -> None:
        # The inner model learns x as scored: transformed before the scaler moves.
        self.inner.learn_one(self.scaler.transform_one(x))
        self.scaler.learn_one(x)

    def score_learn_many(self, X: np.ndarray) -> np.ndarray:
        arr = np.asarray(X, dtype=np.float64)
        scores = [self.score_learn_one(row) for row in as_matrix(arr)]
        out = np.asarray(scores, dtype=np.float64)
        # Keep the 1-D in, 1-D out convention of univariate detectors.
        return out[:, 0] if arr.ndim == 1 and out.ndim == 2 else out

    def explain_one(self, x: Any) -> np.ndarray:
        """The inner detector's attribution, if it has one (even split otherwise)."""
        explain = getattr(self.inner, "explain_one", None)
        z = self.scaler.transform_one(x)
        if explain is not None:
            return np.asarray(explain(z))
        vec, _ = as_vector(x)
        return np.full(vec.shape, 1.0 / max(len(vec), 1))

    def expected(self) -> tuple[np.ndarray, np.ndarray]:
        """Scaler location and scale per channel, in the input's units."""
        return self.scaler.expected()

    def _get_state(self) -> dict[str, Any]:
        return {"scaler": self.scaler.snapshot(), "inner": self.inner.snapshot()}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.scaler = OnlineScaler.restore(state["scaler"])
        inner = restore(state["inner"])
        if inner.name != self._inner_spec["name"]:
            raise ValueError("inner snapshot does not match the inner parameters")
        self.inner = inner

    def state_size(self) -> int:
        return self.scaler.state_size() + self.inner.state_size()

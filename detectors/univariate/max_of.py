"""Several univariate detectors on the same channels, alarming when any of them does.

Each member sees different evidence (a forecaster sees surprising values, a flatline
detector sees values that stop moving), so the combination keeps the most alarming
member per channel. Taking the maximum of ``k`` scores inflates the false-alarm rate
up to ``k`` times; the Šidák correction ``score = max_i(score_i) ** k`` (that is, tail
``1 - (1 - p_min) ** k``) restores it exactly when members are independent and
conservatively when they are not.

Reference: Z. Šidák, "Rectangular Confidence Regions for the Means of Multivariate
Normal Distributions", Journal of the American Statistical Association 62(318), 1967.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import detectors
from detectors.base import UnivariateDetector, as_univariate
from detectors.registry import register


@register("max_of")
class MaxOf(UnivariateDetector):
    """The Šidák-corrected maximum of member detectors' scores, per channel.

    Parameters
    ----------
    members
        Member specs ``[{"name": ..., "params": {...}}, ...]``, all univariate.

    Notes
    -----
    Cost per update and state: the sum of the members'. The expected value it reports
    is the first member's that can tell one.

    Examples
    --------
    >>> import numpy as np
    >>> det = MaxOf([{"name": "robust_zscore"}, {"name": "flatline", "params": {"warmup": 20}}])
    >>> rng = np.random.default_rng(1)
    >>> det.learn_many(rng.normal(0, 1, 300))
    >>> round(det.score_one(8.0), 6)   # the z-score member sees it
    1.0
    """

    structure_state = ("members",)

    def __init__(self, members: list[dict[str, Any]] | None = None) -> None:
        specs = members or [
            {"name": "forecast", "params": {"order": 2}},
            {"name": "flatline"},
        ]
        self.members_spec: list[dict[str, Any]] = [
            {"name": str(m["name"]), "params": dict(m.get("params", {}))} for m in specs
        ]
        # a tuple, replaced whole (``structure_state``): a pool must see a new member
        self.members: tuple[UnivariateDetector, ...] = tuple(
            as_univariate(detectors.create(m["name"], **m["params"]), "max_of")
            for m in self.members_spec
        )

    def params(self) -> dict[str, Any]:
        return {"members": self.members_spec}

    @property
    def n_channels(self) -> int:
        return max((getattr(m, "n_channels", 0) for m in self.members), default=0)

    def grow(self, d: int) -> None:
        for m in self.members:
            m.grow(d)

    def expected(self) -> tuple[np.ndarray, np.ndarray]:
        for m in self.members:
            fn = getattr(m, "expected", None)
            if fn is not None:
                loc, scale = fn()
                return np.asarray(loc), np.asarray(scale)
        return np.empty(0), np.empty(0)

    def _score_vector(self, x: np.ndarray) -> np.ndarray:
        scores = np.max([m._score_vector(x) for m in self.members], axis=0)
        return np.asarray(scores ** len(self.members), dtype=np.float64)

    def _surprise_vector(self, x: np.ndarray) -> np.ndarray:
        # The same Šidák correction in logs: tail = 1 - (1 - p) ** k = p * r, where r
        # falls from k (p -> 0) to 1 (p = 1); past p = 1e-8, r = k to 8 digits.
        top = np.max([m._surprise_vector(x) for m in self.members], axis=0)
        k = len(self.members)
        far = top > 8.0
        p = np.where(far, 0.5, np.power(10.0, -np.minimum(top, 8.0)))
        p = np.minimum(p, 1.0 - 1e-16)
        r = np.where(far, float(k), -np.expm1(k * np.log1p(-p)) / p)
        return np.asarray(np.maximum(top - np.log10(np.clip(r, 1.0, k)), 0.0), dtype=np.float64)

    def _learn_vector(self, x: np.ndarray) -> None:
        for m in self.members:
            m._learn_vector(x)

    def _stackable(self) -> bool:
        return all(m._stackable() for m in self.members)

    def _stacked_channels(self) -> int | None:
        counts = {m._stacked_channels() for m in self.members}
        return counts.pop() if len(counts) == 1 else None

    def _state_owners(self) -> tuple[UnivariateDetector, ...]:
        owners: tuple[UnivariateDetector, ...] = ()
        for m in self.members:
            owners += m._state_owners()
        return owners

    def _parts(self) -> tuple[UnivariateDetector, ...]:
        parts: tuple[UnivariateDetector, ...] = (self,)
        for m in self.members:
            parts += m._parts()
        return parts

    def _stack_from(self, parts: list[MaxOf]) -> bool:
        if any(len(p.members) != len(self.members) for p in parts):
            return False
        return all(m._stack_from([p.members[i] for p in parts]) for i, m in enumerate(self.members))

    def _unstack_to(self, parts: list[MaxOf], bounds: list[tuple[int, int]]) -> None:
        for i, m in enumerate(self.members):
            m._unstack_to([p.members[i] for p in parts], bounds)

    def _get_state(self) -> dict[str, Any]:
        return {"members": [m.snapshot() for m in self.members]}

    def _set_state(self, state: dict[str, Any]) -> None:
        restored = [as_univariate(detectors.restore(s), "max_of") for s in state["members"]]
        if [m.name for m in restored] != [m["name"] for m in self.members_spec]:
            raise ValueError("max_of snapshot members do not match its parameters")
        self.members = tuple(restored)

    def state_size(self) -> int:
        return sum(m.state_size() for m in self.members)

"""Rare or new log templates, per key (host, service, component).

Each key keeps exponentially decayed counts of the templates it has emitted. A
template's probability for that key is estimated with Laplace smoothing over the
templates seen so far plus one slot for "never seen", and the score is ``1 - p``: a
template the key emits all the time scores low, a template it has never emitted scores
``1 - alpha / (N + alpha (K + 1))``, close to 1 once the key has ``N`` effective
observations of ``K`` templates. Before ``warmup`` observations the key scores 0: every
template of a new service is new.

Decay (a half-life in observations of that key) lets a template that became common
stop alerting, and one that stopped for a long time alert again.

Reference: the "rare event" baseline of log anomaly detection, e.g. S. He, J. Zhu, P. He,
M. R. Lyu, "Experience Report: System Log Analysis for Anomaly Detection", ISSRE 2016;
Laplace's rule of succession for the smoothing.
"""

from __future__ import annotations

import math
from typing import Any

from detectors.logs.base import LogDetector
from detectors.registry import register

_RESCALE = 1e150  # fold the growing weight back into the counts before it overflows


@register("rare_template")
class RareTemplateDetector(LogDetector):
    """Score ``1 - P(template | key)`` with decayed, Laplace-smoothed counts.

    Records are ``(key, template_id)`` pairs of strings.

    Parameters
    ----------
    half_life
        Observations of a key after which an old count weighs half (``None``: no decay).
    alpha
        Laplace pseudo-count of each known template and of the "new template" slot.
    warmup
        Effective observations of a key before it gives non-zero scores.
    max_templates
        Templates kept per key; the lightest are forgotten beyond it (bounds memory).

    Notes
    -----
    Cost per update: O(1) (amortised; a rescale every ~300 half-lives is O(K)).
    State: one float per (key, template) plus 3 numbers per key. Use it on the output
    of :class:`detectors.logs.templates.TemplateMiner` for each host or service. Do not
    use it alone on keys with very few lines (nothing is rare there) or where rare
    templates are routine (debug logs); pair it with a sequence model for "known
    templates in the wrong order".

    Examples
    --------
    >>> det = RareTemplateDetector(warmup=20)
    >>> for _ in range(200):
    ...     det.learn_one(("web1", "t1"))
    >>> det.score_one(("web1", "t1")) < 0.05
    True
    >>> det.score_one(("web1", "t9")) > 0.99
    True
    >>> det.score_one(("db1", "t9"))  # unknown key: no evidence yet
    0.0
    """

    def __init__(
        self,
        half_life: float | None = 10_000.0,
        alpha: float = 1.0,
        warmup: int = 50,
        max_templates: int = 5_000,
    ) -> None:
        if half_life is not None and half_life <= 0:
            raise ValueError("half_life must be positive or None")
        if alpha <= 0:
            raise ValueError("alpha must be positive")
        if warmup < 0 or max_templates < 1:
            raise ValueError("warmup must be >= 0 and max_templates >= 1")
        self.half_life = None if half_life is None else float(half_life)
        self.alpha = float(alpha)
        self.warmup = int(warmup)
        self.max_templates = int(max_templates)
        self._growth = 1.0 if half_life is None else 2.0 ** (1.0 / float(half_life))
        # per key: [weight of the next observation, total weight, counts]; counts are
        # in units of the current weight, so decay costs nothing per update
        self._keys: dict[str, tuple[list[float], dict[str, float]]] = {}

    def params(self) -> dict[str, Any]:
        return {
            "half_life": self.half_life,
            "alpha": self.alpha,
            "warmup": self.warmup,
            "max_templates": self.max_templates,
        }

    def effective_count(self, key: str) -> float:
        """Decayed number of observations of ``key``."""
        entry = self._keys.get(key)
        return 0.0 if entry is None else entry[0][1] / entry[0][0]

    def probability(self, key: str, template_id: str) -> float:
        """Laplace-smoothed decayed probability of ``template_id`` for ``key``."""
        entry = self._keys.get(key)
        if entry is None:
            return 1.0
        (weight, total), counts = entry[0], entry[1]
        n = total / weight
        c = counts.get(template_id, 0.0) / weight
        return (c + self.alpha) / (n + self.alpha * (len(counts) + 1))

    def score_one(self, x: Any) -> float:
        key, template_id = x
        if self.effective_count(key) < self.warmup:
            return 0.0
        return float(min(max(1.0 - self.probability(key, template_id), 0.0), 1.0))

    def learn_one(self, x: Any) -> None:
        key, template_id = x
        entry = self._keys.get(key)
        if entry is None:
            entry = ([1.0 / self._growth, 0.0], {})
            self._keys[key] = entry
        wt, counts = entry
        wt[0] *= self._growth
        counts[template_id] = counts.get(template_id, 0.0) + wt[0]
        wt[1] += wt[0]
        if wt[0] > _RESCALE:
            self._rescale(wt, counts)
        if len(counts) > self.max_templates:
            lightest = min(counts, key=counts.__getitem__)
            wt[1] -= counts.pop(lightest)

    @staticmethod
    def _rescale(wt: list[float], counts: dict[str, float]) -> None:
        w = wt[0]
        for t in list(counts):
            counts[t] /= w
            if counts[t] < 1e-12:  # decayed to nothing: forget it
                del counts[t]
        wt[0], wt[1] = 1.0, sum(counts.values())

    def _get_state(self) -> dict[str, Any]:
        out = {}
        for key, (wt, counts) in self._keys.items():
            # stored in observation units, so the snapshot does not carry huge weights
            out[key] = {"weight": 1.0, "counts": {t: c / wt[0] for t, c in counts.items()}}
        return {"keys": out}

    def _set_state(self, state: dict[str, Any]) -> None:
        self._keys = {}
        for key, entry in state["keys"].items():
            counts = {str(t): float(c) for t, c in entry["counts"].items()}
            if any(not math.isfinite(c) or c < 0 for c in counts.values()):
                raise ValueError(f"bad counts for key {key!r}")
            self._keys[str(key)] = ([1.0, sum(counts.values())], counts)

    def state_size(self) -> int:
        return sum(16 + 8 * len(counts) for _, counts in self._keys.values())

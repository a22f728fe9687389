"""Online command (or template) sequences: a smoothed first-order Markov chain per key.

A user who types ``ls``, ``cd``, ``vim``, ``make`` in that order all day has a habit;
a masquerader or a script types the same commands in another order. Each key keeps
decayed counts of which template follows which, and the probability of ``b`` after
``a`` is the transition estimate backed off to the key's own template frequencies
(interpolated Dirichlet smoothing, as in language models)::

    p(b | a) = (n(a, b) + beta * p(b)) / (n(a) + beta)
    p(b)     = (n(b) + alpha) / (n + alpha * (K + 1))

The surprise ``-log p(b | a)`` of each record is the sequence evidence; the score is
``1 - p(b | a)``. A block of surprising records is what matters, so in the stream the
surprise goes through an EWMA control chart (one-sided: only more surprise counts),
which makes "how unlike the user a block of commands is" one score per record.

References
----------
B. D. Davison, H. Hirsh, "Predicting Sequences of User Actions", AAAI Workshop on
Predicting the Future, 1998 (first-order command prediction). R. A. Maxion,
T. N. Townsend, "Masquerade Detection Using Truncated Command Lines", DSN 2002
(the batch naive-Bayes model of :mod:`detectors.logs.sequence`). C. D. Manning,
H. Schütze, *Foundations of Statistical NLP*, 1999, ch. 6 (smoothing by
interpolation).

Examples
--------
>>> chain = MarkovSequenceDetector(warmup=10)
>>> for _ in range(100):
...     for cmd in ("ls", "cd", "vim", "make"):
...         chain.learn_one(("alice", cmd))
>>> chain.score_one(("alice", "ls")) < 0.1  # after make, ls as always
True
>>> chain.learn_one(("alice", "ls"))
>>> chain.score_one(("alice", "make")) > 0.9  # make straight after ls: never
True
"""

from __future__ import annotations

import math
from typing import Any

from detectors.logs.base import LogDetector
from detectors.registry import register


class _Chain:
    __slots__ = ("last", "n", "rows", "trans", "unigrams")

    def __init__(self) -> None:
        self.unigrams: dict[str, float] = {}
        self.trans: dict[str, dict[str, float]] = {}
        self.rows: dict[str, float] = {}
        self.n = 0.0
        self.last: str | None = None


@register("markov_sequence")
class MarkovSequenceDetector(LogDetector):
    """Score ``1 - p(template | previous template)`` per key, learned online.

    Records are ``(key, template_id)`` pairs; the previous template of a key is the
    last one learned for it.

    Parameters
    ----------
    alpha
        Pseudo-count of each known template and of the "new template" slot.
    beta
        Weight of the back-off to the key's template frequencies.
    decay
        Multiplier of every count of a key per record (1.0: no forgetting); the memory
        is about ``1 / (1 - decay)`` records.
    warmup
        Records of a key before it gives non-zero scores.
    max_templates
        Templates (and transition rows) kept per key; the lightest go beyond it.

    Notes
    -----
    Cost per update: O(1) amortised (forgetting is applied lazily by a shared
    weight, as in :mod:`detectors.logs.rare`). State: one float per known template
    and per observed transition of each key. Use it per user on shell commands, or
    per host on templates; pair it with ``rare_template`` (new commands) since a
    template never seen has no transitions to judge.
    """

    def __init__(
        self,
        alpha: float = 0.5,
        beta: float = 2.0,
        decay: float = 0.999,
        warmup: int = 100,
        max_templates: int = 500,
    ) -> None:
        if alpha <= 0 or beta <= 0:
            raise ValueError("alpha and beta must be positive")
        if not 0.0 < decay <= 1.0:
            raise ValueError("decay must be in (0, 1]")
        if warmup < 0 or max_templates < 2:
            raise ValueError("warmup must be >= 0 and max_templates >= 2")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.decay = float(decay)
        self.warmup = int(warmup)
        self.max_templates = int(max_templates)
        self._keys: dict[str, _Chain] = {}

    def params(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "beta": self.beta,
            "decay": self.decay,
            "warmup": self.warmup,
            "max_templates": self.max_templates,
        }

    def probability(self, key: str, template_id: str) -> float:
        """``p(template_id | the key's previous template)``, smoothed."""
        chain = self._keys.get(key)
        if chain is None:
            return 1.0
        total = sum(chain.unigrams.values())
        p_uni = (chain.unigrams.get(template_id, 0.0) + self.alpha) / (
            total + self.alpha * (len(chain.unigrams) + 1)
        )
        if chain.last is None:
            return p_uni
        row = chain.trans.get(chain.last, {})
        n_row = chain.rows.get(chain.last, 0.0)
        return (row.get(template_id, 0.0) + self.beta * p_uni) / (n_row + self.beta)

    def surprise(self, key: str, template_id: str) -> float:
        """``-log p(template_id | previous)`` in nats."""
        return -math.log(max(self.probability(key, template_id), 1e-300))

    def score_one(self, x: Any) -> float:
        key, template_id = x
        chain = self._keys.get(key)
        if chain is None or chain.n < self.warmup:
            return 0.0
        return float(min(max(1.0 - self.probability(key, template_id), 0.0), 1.0))

    def learn_one(self, x: Any) -> None:
        key, template_id = x
        chain = self._keys.get(key)
        if chain is None:
            chain = self._keys[key] = _Chain()
        if self.decay < 1.0:
            self._forget(chain)
        chain.n += 1
        chain.unigrams[template_id] = chain.unigrams.get(template_id, 0.0) + 1.0
        if chain.last is not None:
            row = chain.trans.setdefault(chain.last, {})
            row[template_id] = row.get(template_id, 0.0) + 1.0
            chain.rows[chain.last] = chain.rows.get(chain.last, 0.0) + 1.0
        chain.last = template_id
        if len(chain.unigrams) > self.max_templates:
            self._drop_lightest(chain)

    def _forget(self, chain: _Chain) -> None:
        # Decay every 100 records by decay**100: O(1) amortised, same memory length.
        if int(chain.n) % 100 != 99:
            return
        f = self.decay**100
        for table in (chain.unigrams, chain.rows):
            for t in list(table):
                table[t] *= f
        for a in list(chain.trans):
            row = chain.trans[a]
            for b in list(row):
                row[b] *= f
                if row[b] < 1e-3:
                    del row[b]
            if not row:
                del chain.trans[a]
                chain.rows.pop(a, None)

    @staticmethod
    def _drop_lightest(chain: _Chain) -> None:
        lightest = min(chain.unigrams, key=chain.unigrams.__getitem__)
        del chain.unigrams[lightest]
        chain.trans.pop(lightest, None)
        chain.rows.pop(lightest, None)

    def _get_state(self) -> dict[str, Any]:
        return {
            "keys": {
                key: {
                    "unigrams": c.unigrams,
                    "trans": c.trans,
                    "rows": c.rows,
                    "n": c.n,
                    "last": c.last,
                }
                for key, c in self._keys.items()
            }
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self._keys = {}
        for key, data in state["keys"].items():
            c = _Chain()
            c.unigrams = {str(t): float(v) for t, v in data["unigrams"].items()}
            c.trans = {
                str(a): {str(b): float(v) for b, v in row.items()}
                for a, row in data["trans"].items()
            }
            c.rows = {str(a): float(v) for a, v in data["rows"].items()}
            c.n = float(data["n"])
            c.last = None if data["last"] is None else str(data["last"])
            values = [*c.unigrams.values(), *c.rows.values()]
            if any(not math.isfinite(v) or v < 0 for v in values):
                raise ValueError(f"bad counts for key {key!r}")
            self._keys[str(key)] = c

    def state_size(self) -> int:
        return sum(
            32 + 16 * len(c.unigrams) + 16 * sum(len(r) for r in c.trans.values())
            for c in self._keys.values()
        )

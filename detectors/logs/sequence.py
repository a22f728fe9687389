"""Masquerade detection on per-user command sequences: naive Bayes and Markov vs the crowd.

Each user has a profile of the commands they type (a multinomial with Dirichlet
smoothing) and of which command follows which (a first-order Markov chain that backs off
to the multinomial). A block of commands is scored by two log-likelihood ratios per
command, *"not self"* against *self*, where "not self" is the pooled training data of all
other users, as in Maxion & Townsend's naive Bayes:

* ``nb``: ``mean log p_other(c) - log p_self(c)`` (order-free, the naive Bayes term);
* ``mk``: ``mean log p_other(c_t) - log p_self(c_t | c_{t-1})`` (the transition term).

Raw ratios are not comparable between users (a user who types ten commands is easier
to tell apart than one who types two hundred), so each term is turned into a z-score
against *that user's own* distribution of block scores, learned by k-fold
cross-validation on the training commands, and the two z-scores are averaged. One
global threshold on that normalised score then serves every user.

"With updating" (Maxion & Townsend): a block whose score is below ``update_z`` is judged
to be the user's own, and is learned both into the profile and into the calibration,
so the model follows the user's drift; blocks above it are not learned, so a
masquerader does not teach the model to accept them.

References
----------
M. Schonlau, W. DuMouchel, W.-H. Ju, A. F. Karr, M. Theus, Y. Vardi, "Computer Intrusion:
Detecting Masquerades", Statistical Science 16(1), 2001 (the data and protocol).
R. A. Maxion, T. N. Townsend, "Masquerade Detection Using Truncated Command Lines",
DSN 2002 (naive Bayes with updating, "not-self" model from the other users).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from detectors.base import SnapshotError
from detectors.logs.base import LogDetector
from detectors.registry import register

_SQRT2 = math.sqrt(2.0)
_NFEAT = 2  # nb, mk


class _Profile:
    """One user's counts: commands, transitions, and the calibration of block scores."""

    __slots__ = (
        "bigrams",
        "cal_n",
        "cal_s",
        "cal_ss",
        "rows",
        "total",
        "train",
        "train_total",
        "unigrams",
    )

    def __init__(self) -> None:
        self.unigrams: Counter[str] = Counter()
        self.bigrams: Counter[str] = Counter()  # key "a\x00b": JSON-safe, unlike a tuple
        self.rows: Counter[str] = Counter()  # transitions leaving each command
        self.total = 0
        self.train: Counter[str] = Counter()  # training counts, kept out of the others' pool
        self.train_total = 0
        self.cal_n = 0
        self.cal_s = [0.0] * _NFEAT
        self.cal_ss = [0.0] * _NFEAT

    def learn(self, commands: Sequence[str]) -> None:
        self.unigrams.update(commands)
        self.total += len(commands)
        for a, b in itertools.pairwise(commands):
            self.bigrams[f"{a}\x00{b}"] += 1
            self.rows[a] += 1

    def calibrate(self, feats: Sequence[float]) -> None:
        self.cal_n += 1
        for i, f in enumerate(feats):
            self.cal_s[i] += f
            self.cal_ss[i] += f * f

    def zscores(self, feats: Sequence[float]) -> list[float]:
        out = []
        for i, f in enumerate(feats):
            n = max(self.cal_n, 1)
            mu = self.cal_s[i] / n
            sd = math.sqrt(max(self.cal_ss[i] / n - mu * mu, 0.0)) + 1e-6
            out.append((f - mu) / sd)
        return out


@register("command_sequence")
class CommandSequenceDetector(LogDetector):
    """Per-user masquerade detector on blocks of shell commands.

    Records are ``(user, commands)``: a user name and a block (list) of command names.
    :meth:`fit` trains every user at once (it needs all users for the "not self" pool);
    then :meth:`score_one` scores a block, :meth:`learn_one` learns it only if it is
    judged the user's own (``z < update_z``), and :meth:`block_z` gives the raw
    normalised score (better for ROC curves: the ``[0, 1]`` score saturates).

    Parameters
    ----------
    alpha
        Dirichlet pseudo-count of the self multinomial (small: a command the user never
        typed is strong evidence).
    backoff
        Pseudo-count weight of the multinomial in each Markov row.
    update_z
        Blocks with a normalised score below this are learned ("NB with updating").
    folds
        Cross-validation folds of the training commands that calibrate each user.
    block
        Commands per calibration block (the protocol's block size).

    Notes
    -----
    Cost per block of ``b`` commands: O(b) dictionary look-ups. State per user: counts
    of distinct commands and distinct transitions (a few hundred to a few thousand
    entries), plus the pooled counts of all training data. Use it for interactive
    sessions with enough history per user (thousands of commands). Do not use it for
    service accounts that run one script (nothing to tell apart) or before a user has
    history (``score_one`` is 0 for unknown users).

    Examples
    --------
    >>> alice = ["ls", "cd", "vim", "make", "ls", "git"] * 100
    >>> bob = ["ps", "top", "kill", "ssh", "ps", "df"] * 100
    >>> det = CommandSequenceDetector(block=30)
    >>> det.fit({"alice": alice, "bob": bob})
    >>> det.block_z("alice", ["ps", "top", "kill", "df"] * 5) > det.block_z("alice", alice[:20])
    True
    """

    def __init__(
        self,
        alpha: float = 0.1,
        backoff: float = 5.0,
        update_z: float = 1.5,
        folds: int = 5,
        block: int = 100,
    ) -> None:
        if alpha <= 0 or backoff <= 0:
            raise ValueError("alpha and backoff must be positive")
        if folds < 2 or block < 2:
            raise ValueError("folds and block must be at least 2")
        self.alpha = float(alpha)
        self.backoff = float(backoff)
        self.update_z = float(update_z)
        self.folds = int(folds)
        self.block = int(block)
        self._users: dict[str, _Profile] = {}
        self._pool: Counter[str] = Counter()  # all users' training commands
        self._pool_total = 0
        self._vocab: set[str] = set()

    def params(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "backoff": self.backoff,
            "update_z": self.update_z,
            "folds": self.folds,
            "block": self.block,
        }

    # -- training ----------------------------------------------------------------------
    def fit(self, training: Mapping[str, Sequence[str]]) -> None:
        """Train every user on their commands, then calibrate each against the others."""
        for user, commands in training.items():
            prof = _Profile()
            prof.learn(list(commands))
            prof.train = Counter(commands)
            prof.train_total = len(commands)
            self._users[user] = prof
            self._pool.update(commands)
            self._pool_total += len(commands)
            self._vocab.update(commands)
        for user, commands in training.items():
            self._calibrate(user, list(commands))

    def _calibrate(self, user: str, commands: list[str]) -> None:
        # k-fold: score each held-out fold's blocks with a profile of the other folds, so
        # the calibration sees what the user's *unseen* blocks look like.
        prof = self._users[user]
        n = len(commands)
        size = n // self.folds
        for k in range(self.folds):
            lo, hi = k * size, (k + 1) * size
            part = _Profile()
            part.learn(commands[:lo])
            part.learn(commands[hi:])
            for s in range(lo, hi - self.block + 1, self.block):
                prof.calibrate(self._features(user, part, commands[s : s + self.block]))

    # -- scoring -----------------------------------------------------------------------
    def _features(self, user: str, prof: _Profile, block: Sequence[str]) -> list[float]:
        if not block:
            return [0.0] * _NFEAT
        own = self._users[user].train
        v = len(self._vocab) + 1  # +1: room for commands nobody has typed yet
        other_total = self._pool_total - self._users[user].train_total
        a, bk = self.alpha, self.backoff
        denom_self = prof.total + a * v

        def p_other(c: str) -> float:
            return (self._pool[c] - own[c] + 1.0) / (other_total + v)

        def p_self(c: str) -> float:
            return (prof.unigrams[c] + a) / denom_self

        nb = sum(math.log(p_other(c)) - math.log(p_self(c)) for c in block) / len(block)
        mk = 0.0
        for prev, c in itertools.pairwise(block):
            p = (prof.bigrams[f"{prev}\x00{c}"] + bk * p_self(c)) / (prof.rows[prev] + bk)
            mk += math.log(p_other(c)) - math.log(p)
        mk /= max(len(block) - 1, 1)
        return [nb, mk]

    def block_z(self, user: str, block: Sequence[str]) -> float:
        """Normalised score of a block: mean of the per-user z-scores (0 for unknown users)."""
        prof = self._users.get(user)
        if prof is None or prof.cal_n == 0:
            return 0.0
        z = prof.zscores(self._features(user, prof, block))
        return float(sum(z) / len(z))

    def score_one(self, x: Any) -> float:
        """``Phi(z)`` of the block's normalised score: near 1 for a likely masquerader."""
        user, block = x
        return 0.5 * math.erfc(-self.block_z(user, list(block)) / _SQRT2)

    def learn_one(self, x: Any) -> None:
        """Learn a block into the user's profile only if it looks like the user's own."""
        user, block = x
        block = list(block)
        prof = self._users.get(user)
        if prof is None or not block:
            return
        feats = self._features(user, prof, block)
        z = prof.zscores(feats)
        if sum(z) / len(z) < self.update_z:
            prof.learn(block)
            prof.calibrate(feats)
            self._vocab.update(block)

    # -- state -------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        users = {
            u: {
                "unigrams": dict(p.unigrams),
                "bigrams": dict(p.bigrams),
                "rows": dict(p.rows),
                "total": p.total,
                "train": dict(p.train),
                "cal": [p.cal_n, p.cal_s, p.cal_ss],
            }
            for u, p in self._users.items()
        }
        return {"users": users, "pool": dict(self._pool), "vocab": sorted(self._vocab)}

    def _set_state(self, state: dict[str, Any]) -> None:
        self._users = {}
        for u, s in state["users"].items():
            p = _Profile()
            p.unigrams = Counter({str(k): int(v) for k, v in s["unigrams"].items()})
            p.bigrams = Counter({str(k): int(v) for k, v in s["bigrams"].items()})
            p.rows = Counter({str(k): int(v) for k, v in s["rows"].items()})
            p.total = int(s["total"])
            p.train = Counter({str(k): int(v) for k, v in s["train"].items()})
            p.train_total = sum(p.train.values())
            n, cs, css = s["cal"]
            if len(cs) != _NFEAT or len(css) != _NFEAT:
                raise SnapshotError("calibration has the wrong number of features")
            p.cal_n, p.cal_s, p.cal_ss = int(n), [float(v) for v in cs], [float(v) for v in css]
            self._users[str(u)] = p
        self._pool = Counter({str(k): int(v) for k, v in state["pool"].items()})
        self._pool_total = sum(self._pool.values())
        self._vocab = {str(c) for c in state["vocab"]}

    def state_size(self) -> int:
        entries = len(self._pool) + sum(
            len(p.unigrams) + len(p.bigrams) + len(p.rows) + len(p.train)
            for p in self._users.values()
        )
        return 8 * entries

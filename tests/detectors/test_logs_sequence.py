"""CommandSequenceDetector: masquerade blocks score above the user's own, snapshots."""

from __future__ import annotations

import numpy as np
import orjson

from detectors import registry
from detectors.logs.sequence import CommandSequenceDetector


def _user(rng: np.random.Generator, vocab: list[str], n: int) -> list[str]:
    # a sticky Markov chain over the user's vocabulary: realistic repetition
    out = [vocab[0]]
    for _ in range(n - 1):
        out.append(out[-1] if rng.random() < 0.3 else vocab[int(rng.zipf(1.6)) % len(vocab)])
    return out


def _data() -> dict[str, list[str]]:
    rng = np.random.default_rng(7)
    common = ["ls", "cd", "cat", "sh"]
    return {
        f"u{i}": _user(rng, common + [f"cmd{i}_{j}" for j in range(12)], 3000) for i in range(5)
    }


def test_masquerade_blocks_score_higher_than_own_blocks() -> None:
    data = _data()
    det = CommandSequenceDetector(block=50)
    det.fit({u: c[:2500] for u, c in data.items()})
    own = [det.block_z("u0", data["u0"][s : s + 50]) for s in range(2500, 3000, 50)]
    other = [
        det.block_z("u0", data[u][s : s + 50]) for u in ("u1", "u2") for s in range(2500, 3000, 50)
    ]
    assert min(other) > max(own)
    assert det.score_one(("u0", data["u1"][2500:2550])) > 0.99
    assert det.score_one(("nobody", data["u1"][:50])) == 0.5  # unknown user: no evidence


def test_updating_learns_own_blocks_but_not_intruders() -> None:
    data = _data()
    det = CommandSequenceDetector(block=50)
    det.fit({u: c[:2500] for u, c in data.items()})
    total = det._users["u0"].total
    det.learn_one(("u0", data["u0"][2500:2550]))
    assert det._users["u0"].total == total + 50
    det.learn_one(("u0", data["u3"][2500:2550]))
    assert det._users["u0"].total == total + 50


def test_snapshot_round_trip() -> None:
    data = _data()
    det = CommandSequenceDetector(block=50)
    det.fit({u: c[:2000] for u, c in data.items()})
    twin = registry.restore(orjson.loads(orjson.dumps(det.snapshot())))
    assert isinstance(twin, CommandSequenceDetector)
    for u in data:
        block = data[u][2000:2050]
        assert abs(twin.block_z("u1", block) - det.block_z("u1", block)) < 1e-9

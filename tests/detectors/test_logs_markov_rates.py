"""Online log sequences (Markov chain) and per-template rates: detection and snapshots."""

from __future__ import annotations

import numpy as np
import orjson

from detectors import registry
from detectors.logs.markov import MarkovSequenceDetector
from detectors.logs.rates import TemplateRates


def test_markov_flags_known_commands_in_a_new_order() -> None:
    det = MarkovSequenceDetector(warmup=20)
    habit = ["ls", "cd", "vim", "make", "git"]
    for _ in range(200):
        for cmd in habit:
            det.learn_one(("u", cmd))
    normal, odd = [], []
    for cmd in habit:  # the habit, in order
        normal.append(det.score_one(("u", cmd)))
        det.learn_one(("u", cmd))
    for cmd in ["make", "cd", "ls", "vim", "git"]:  # same commands, no habitual pair
        odd.append(det.score_one(("u", cmd)))
        det.learn_one(("u", cmd))
    assert max(normal) < 0.1 and min(odd) > 0.9, (normal, odd)
    assert det.score_one(("other", "ls")) == 0.0  # keys are separate, and warming up


def test_markov_forgets_an_old_habit() -> None:
    det = MarkovSequenceDetector(warmup=10, decay=0.99)
    for _ in range(300):
        for cmd in ("a", "b"):
            det.learn_one(("u", cmd))
    for _ in range(300):
        for cmd in ("a", "c", "b"):
            det.learn_one(("u", cmd))
    det.learn_one(("u", "a"))
    assert det.probability("u", "c") > 0.9  # the new habit: a -> c


def test_markov_snapshot_round_trip() -> None:
    det = MarkovSequenceDetector(warmup=5)
    for i in range(500):
        det.learn_one((f"u{i % 3}", f"c{(i * 7) % 11}"))
    twin = registry.restore(orjson.loads(orjson.dumps(det.snapshot())))
    for key, cmd in [("u0", "c1"), ("u1", "c3"), ("u2", "c99")]:
        assert twin.score_one((key, cmd)) == det.score_one((key, cmd))


def steady(rates: TemplateRates, minutes: int, per_minute: dict[str, int], t0: float = 0.0):
    rows = []
    for m in range(minutes):
        for template, n in per_minute.items():
            for k in range(n):
                rows += rates.add(template, t0 + m * 60.0 + k * (59.0 / max(n, 1)))
    return rows


def test_rates_quiet_on_poisson_noise_and_loud_on_a_burst() -> None:
    rng = np.random.default_rng(1)
    rates = TemplateRates(bucket_s=60.0, warmup=30)
    rows = []
    for m in range(600):
        for template, lam in (("ok", 20.0), ("warn", 0.5)):
            for k in range(rng.poisson(lam)):
                rows += rates.add(template, m * 60.0 + k * 0.01)
    calm = np.concatenate([r.scores for r in rows[60:]])
    assert (calm > 1 - 1e-3).mean() < 5e-3, (calm > 1 - 1e-3).mean()
    for k in range(30):  # 30 warnings in one minute
        rows = rates.add("warn", 600 * 60.0 + k)
    rows = rates.add("ok", 601 * 60.0)
    burst = rows[-1]
    assert burst.counts[burst.templates.index("warn")] == 30
    assert burst.scores[burst.templates.index("warn")] > 1 - 1e-6


def test_a_new_templates_first_burst_counts() -> None:
    rates = TemplateRates(bucket_s=60.0, warmup=10)
    steady(rates, 50, {"ok": 5})
    for k in range(25):
        rates.add("panic", 50 * 60.0 + k)
    row = rates.add("ok", 51 * 60.0)[-1]
    assert row.scores[row.templates.index("panic")] > 1 - 1e-6


def test_silence_is_filled_with_bounded_zero_buckets() -> None:
    rates = TemplateRates(bucket_s=60.0, max_gap=5, warmup=3)
    steady(rates, 20, {"ok": 3})
    closed = rates.closed
    rows = rates.add("ok", 1e6)  # a very long silence
    assert len(rows) == 1 and float(rows[0].counts.sum()) == 3.0  # the open bucket, scored
    assert rates.closed == closed + 1 + 5  # and five empty buckets learned, not more


def test_rates_snapshot_round_trip() -> None:
    rates = TemplateRates(bucket_s=10.0, warmup=5)
    steady(rates, 40, {"a": 3, "b": 1}, t0=0.0)
    twin = TemplateRates.from_dict(orjson.loads(orjson.dumps(rates.to_dict())))
    for k in range(12):
        a = rates.add("b", 400.0 + k)
        b = twin.add("b", 400.0 + k)
        assert [r.scores.tolist() for r in a] == [r.scores.tolist() for r in b]

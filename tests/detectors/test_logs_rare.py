"""RareTemplateDetector: rare and new templates per key, decay, snapshots."""

from __future__ import annotations

import orjson

from detectors import registry
from detectors.logs.rare import RareTemplateDetector


def test_new_template_scores_high_after_warmup_only() -> None:
    det = RareTemplateDetector(warmup=30)
    for i in range(20):
        det.learn_one(("web1", "t1" if i % 4 else "t2"))
    assert det.score_one(("web1", "t99")) == 0.0  # still warming up
    for i in range(200):
        det.learn_one(("web1", "t1" if i % 4 else "t2"))
    assert det.score_one(("web1", "t99")) > 0.99
    assert det.score_one(("web1", "t1")) < 0.3
    assert det.score_one(("web1", "t2")) < 0.8
    assert det.score_one(("db1", "t1")) == 0.0  # keys are separate


def test_decay_lets_a_new_routine_stop_alerting() -> None:
    det = RareTemplateDetector(half_life=50, warmup=10)
    for _ in range(500):
        det.learn_one(("svc", "old"))
    before = det.score_one(("svc", "new"))
    for _ in range(300):
        det.learn_one(("svc", "new"))
    assert before > 0.95
    assert det.score_one(("svc", "new")) < 0.1
    assert det.score_one(("svc", "old")) > 0.9  # it has decayed away


def test_rescaling_keeps_probabilities() -> None:
    det = RareTemplateDetector(half_life=5, warmup=1)
    for i in range(5000):  # weights pass the rescale point many times
        det.learn_one(("k", f"t{i % 3}"))
    p = [det.probability("k", f"t{j}") for j in range(3)]
    assert all(0.2 < x < 0.45 for x in p)


def test_snapshot_round_trip_through_registry() -> None:
    det = RareTemplateDetector(warmup=5)
    for i in range(100):
        det.learn_one((f"h{i % 2}", f"t{i % 5}"))
    twin = registry.restore(orjson.loads(orjson.dumps(det.snapshot())))
    assert isinstance(twin, RareTemplateDetector)
    for rec in [("h0", "t0"), ("h1", "t3"), ("h0", "zz"), ("h9", "t0")]:
        assert abs(twin.score_one(rec) - det.score_one(rec)) < 1e-12
    assert twin.state_size() > 0

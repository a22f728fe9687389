"""A second worker joins the group under load and later leaves (SIGTERM).

Partitions, and the device state in their changelog partitions, move to the new worker
and back. Nothing is lost, the anomalies match an uninterrupted reference run, and the
time the group needs to resume committing after each rebalance is measured.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from harness import (
    PacedProducer,
    committed_offsets,
    compare,
    launch,
    log_tail,
    make_settings,
    plant_messages,
    processed_count,
    read_outputs,
    reason_counts,
    reference,
    skipped_while_fetching,
    stop,
    wait_caught_up,
    wait_count,
    with_port,
)

from stream.settings import Settings
from stream.topics import create_topics

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def wait_all_partitions_advance(
    bootstrap: str, s: Settings, since: dict[int, int], end_of: PacedProducer, timeout: float
) -> float:
    """Seconds until every partition's committed offset moved past ``since`` (or the end)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        now = committed_offsets(bootstrap, s.app_id, s.topic("sensors"), s.partitions)
        if all(now[p] > since[p] for p in now) or end_of.done.is_set():
            return time.monotonic() - t0
        time.sleep(0.25)
    raise TimeoutError("the group did not resume committing on every partition")


@pytest.mark.parametrize("engine", ["faust", "kafka"])
def test_worker_joins_and_leaves_under_load(kafka_broker: str, tmp_path: Path, engine: str) -> None:
    s = make_settings(kafka_broker, tmp_path, engine=engine)
    messages, n_bad = plant_messages(n_devices=20, n_ticks=1800, seed=9, bad_every=300)
    ref = reference(s, messages)
    create_topics(s)
    producer = PacedProducer(kafka_broker, s, messages, rate=1500)
    w1 = launch(s, tmp_path / "worker1.log")
    s2 = with_port(s, tmp_path)
    w2 = None
    topic = s.topic("sensors")
    try:
        producer.start()
        wait_count(w1, s.web_port, 0.3 * len(messages), timeout=120)
        before_join = committed_offsets(kafka_broker, s.app_id, topic, s.partitions)
        w2 = launch(s2, tmp_path / "worker2.log")
        joined = time.monotonic()
        wait_count(w2, s2.web_port, 1, timeout=120)
        join_first_event = time.monotonic() - joined
        join_resume = wait_all_partitions_advance(kafka_broker, s, before_join, producer, 120)
        wait_count(w2, s2.web_port, 0.1 * len(messages), timeout=120)
        w2_seen = processed_count(s2.web_port)
        before_leave = committed_offsets(kafka_broker, s.app_id, topic, s.partitions)
        left = time.monotonic()
        stop(w2)  # graceful leave: SIGTERM
        leave_stop = time.monotonic() - left
        leave_resume = wait_all_partitions_advance(kafka_broker, s, before_leave, producer, 120)
        caught_up = wait_caught_up(kafka_broker, s, [w1], producer, timeout=150)
        out = read_outputs(kafka_broker, s)
        assert w1.poll() is None, "worker 1 died"
    finally:
        stop(w1)
        if w2 is not None:
            stop(w2)
        print(log_tail(tmp_path / "worker1.log"))

    match = compare(ref.anomalies, out.anomalies)
    figures = {
        "in": len(messages),
        "bad": n_bad,
        "w2_counted": w2_seen,
        "anomalies_published": len(out.anomalies),
        "duplicate_anomalies": out.duplicate_anomalies,
        "dead_letters_published": len(out.dead),
        "duplicate_dead_letters": out.duplicate_dead,
        "dead_reasons": reason_counts(out.dead),
        "join_first_event_s": round(join_first_event, 1),
        "join_all_partitions_resume_s": round(join_resume, 1),
        "leave_stop_s": round(leave_stop, 1),
        "leave_all_partitions_resume_s": round(leave_resume, 1),
        "leave_to_caught_up_s": round(caught_up - left, 1),
        "anomalies_vs_reference": match.as_dict(),
    }
    print("REBALANCE FIGURES", engine, figures)
    assert w2_seen > 0, "the second worker never got partitions"
    assert not skipped_while_fetching(tmp_path / "worker1.log", tmp_path / "worker2.log")
    assert ref.dead_values <= out.dead_values and len(out.dead_inputs) == n_bad
    assert out.duplicate_dead <= n_bad
    assert match.recall >= 0.9, match.as_dict()
    # State moves with its partitions and replays are skipped: no extra alarms
    # (measured precision 1.0).
    assert match.precision >= 0.95, match.as_dict()
    assert match.near_recall >= 0.95, match.as_dict()

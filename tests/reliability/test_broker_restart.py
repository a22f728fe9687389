"""Stop and start the broker mid-stream (its own broker, data kept): the worker reconnects.

The test starts a private single-node Kafka on free ports with
``ops/kafka/local-kafka.sh`` (data and run dirs under the test's tmp dir), so the shared
broker of the rest of the suite is never touched.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import (
    REPO_SCRIPT,
    PacedProducer,
    compare,
    free_port,
    lag,
    launch,
    log_tail,
    make_settings,
    plant_messages,
    read_outputs,
    reason_counts,
    reference,
    skipped_while_fetching,
    stop,
    wait_caught_up,
    wait_count,
)

from stream.topics import create_topics

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


class PrivateBroker:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        ctrl = free_port()
        while ctrl == self.port:
            ctrl = free_port()
        self.env = dict(os.environ)
        self.env.update(
            VIGIL_KAFKA_PORT=str(self.port),
            VIGIL_KAFKA_CONTROLLER_PORT=str(ctrl),
            VIGIL_KAFKA_DATA=str(tmp / "kafka-data"),
            VIGIL_KAFKA_RUN=str(tmp / "kafka-run"),
            VIGIL_KAFKA_HEAP="-Xms128m -Xmx512m",
            VIGIL_KAFKA_STOP_TIMEOUT="20",
        )
        self.bootstrap = f"127.0.0.1:{self.port}"

    def run(self, cmd: str, keep: bool) -> None:
        env = dict(self.env, VIGIL_KAFKA_KEEP_DATA="1" if keep else "0")
        subprocess.run(["bash", str(REPO_SCRIPT), cmd], env=env, check=True, timeout=180)


@pytest.fixture()
def private_broker(kafka_broker: str, tmp_path: Path) -> Iterator[PrivateBroker]:
    # kafka_broker: run (or skip/fail in CI) together with the other broker tests
    b = PrivateBroker(tmp_path)
    b.run("start", keep=False)
    try:
        yield b
    finally:
        b.run("stop", keep=True)


@pytest.mark.parametrize("engine", ["faust", "kafka"])
def test_broker_stop_start_mid_stream(
    private_broker: PrivateBroker, tmp_path: Path, engine: str
) -> None:
    bootstrap = private_broker.bootstrap
    s = make_settings(bootstrap, tmp_path, engine=engine)
    messages, n_bad = plant_messages(n_devices=20, n_ticks=1200, seed=13, bad_every=300)
    ref = reference(s, messages)
    create_topics(s)
    producer = PacedProducer(bootstrap, s, messages, rate=1500)
    w = launch(s, tmp_path / "worker.log")
    try:
        producer.start()
        wait_count(w, s.web_port, 0.35 * len(messages), timeout=120)
        t_stop = time.monotonic()
        private_broker.run("stop", keep=True)
        stopped = time.monotonic()
        time.sleep(5)  # the broker stays down a while; the producer keeps buffering
        private_broker.run("start", keep=True)
        up = time.monotonic()
        lag_at_up = lag(bootstrap, s)
        wait_count(w, s.web_port, 0.5 * len(messages), timeout=180)
        resumed = time.monotonic()
        caught_up = wait_caught_up(bootstrap, s, [w], producer, timeout=240)
        out = read_outputs(bootstrap, s)
        assert w.poll() is None, "worker died"
    finally:
        stop(w)
        print(log_tail(tmp_path / "worker.log", 5000))

    match = compare(ref.anomalies, out.anomalies)
    figures = {
        "in": len(messages),
        "bad": n_bad,
        "broker_stop_s": round(stopped - t_stop, 1),
        "broker_down_s": round(up - stopped, 1),
        "lag_when_broker_back": lag_at_up,
        "broker_up_to_worker_progress_s": round(resumed - up, 1),
        "broker_up_to_lag_zero_s": round(caught_up - up, 1),
        "anomalies_published": len(out.anomalies),
        "duplicate_anomalies": out.duplicate_anomalies,
        "dead_letters_published": len(out.dead),
        "duplicate_dead_letters": out.duplicate_dead,
        "dead_reasons": reason_counts(out.dead),
        "anomalies_vs_reference": match.as_dict(),
    }
    print("BROKER RESTART FIGURES", engine, figures)
    assert not skipped_while_fetching(tmp_path / "worker.log")
    assert ref.dead_values <= out.dead_values and len(out.dead_inputs) == n_bad
    assert match.recall >= 0.9 and match.precision >= 0.9, match.as_dict()
    assert match.near_recall >= 0.95, match.as_dict()

"""The kafka engine (``vigil worker --engine kafka``) end to end on a real broker.

The same scenario as ``test_pipeline_kafka.py`` (plant faults found, every malformed
message dead-lettered, nothing lost), then a clean restart (SIGTERM) whose second half
must publish what an uninterrupted embedded run publishes, which only holds when the
state is restored from the changelog, and a SIGKILL mid-stream that must lose nothing.
"""

from __future__ import annotations

import base64
import json
import signal
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))

from harness import (
    PacedProducer,
    committed_offsets,
    compare,
    end_offsets,
    launch,
    log_tail,
    make_settings,
    plant_messages,
    processed_count,
    read_all,
    read_outputs,
    reference,
    stop,
    wait_caught_up,
    wait_count,
    with_port,
)
from test_pipeline_kafka import FAULT_KINDS, MAX_BYTES, malformed_messages

from stream.demo import produce, wait_for_worker
from stream.embedded import Message
from stream.engine_kafka import ChangelogStore, changelog_topic, murmur2_partition
from stream.simulate.plant import Plant, PlantConfig
from stream.topics import create_topics
from stream.truth import match_detections


class FakeProducer:
    """Records what a :class:`ChangelogStore` produces."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, int]] = []

    def produce(self, topic: str, value: bytes, key: bytes, **kw: Any) -> None:
        self.sent.append((topic, key, value, kw["partition"]))


def test_changelog_store_writes_each_key_to_its_input_partition() -> None:
    producer = FakeProducer()
    store = ChangelogStore(producer, "app-device-state-changelog", 4, lambda e, m: None)  # type: ignore[arg-type]
    store.hints[b"pump-001"] = 3  # its input came from partition 3
    store["pump-001"] = b"s1"
    store["pump-002"] = b"s2"  # no keyed input seen: where murmur2 puts the key
    assert producer.sent == [
        ("app-device-state-changelog", b"pump-001", b"s1", 3),
        ("app-device-state-changelog", b"pump-002", b"s2", murmur2_partition(b"pump-002", 4)),
    ]
    assert store.get("pump-001") == b"s1"
    store.muted = {3}  # lost partition: its new owner writes it now
    store["pump-001"] = b"stale"
    assert len(producer.sent) == 2 and store.get("pump-001") == b"s1"
    store.muted = set()
    store.load(b"pump-003", b"s3", 3)
    store.load(b"pump-002", None, murmur2_partition(b"pump-002", 4))  # a tombstone
    assert store.get("pump-002") is None
    assert sorted(store.drop([3])) == ["pump-001", "pump-003"]
    assert store.get("pump-001") is None and store.hints == {}


def test_a_refused_asynchronous_commit_goes_into_the_next_one() -> None:
    """The periodic commit does not wait; a refusal puts its offsets back unless a later
    commit of the partition is under way or newer input is pending, or the partition
    is no longer this worker's."""
    from types import SimpleNamespace

    from confluent_kafka import KafkaError, TopicPartition

    from stream.engine_kafka import KafkaEngine

    engine = SimpleNamespace(
        assigned={("s", 0), ("s", 1), ("s", 2)},
        pending={("s", 2): 70},
        committing={("s", 0): 10, ("s", 1): 20, ("s", 2): 30, ("s", 3): 40},
    )
    refused = KafkaError(KafkaError.REBALANCE_IN_PROGRESS)
    KafkaEngine._on_commit(
        engine,  # type: ignore[arg-type]
        refused,
        [TopicPartition("s", 0, 10), TopicPartition("s", 1, 15), TopicPartition("s", 2, 30)],
    )
    # s/0 back into the next commit; s/1 has a later commit under way; s/2 has newer input
    assert engine.pending == {("s", 0): 10, ("s", 2): 70}
    assert engine.committing == {("s", 1): 20, ("s", 3): 40}
    KafkaEngine._on_commit(engine, refused, [TopicPartition("s", 3, 40)])  # type: ignore[arg-type]
    assert ("s", 3) not in engine.pending  # revoked meanwhile: the next owner redoes it
    KafkaEngine._on_commit(engine, None, [TopicPartition("s", 1, 20)])  # type: ignore[arg-type]
    assert engine.committing == {} and engine.pending == {("s", 0): 10, ("s", 2): 70}


class _Broker:
    """A producer and a consumer that answer when told: what a checkpoint sends and
    when the broker acknowledges it, without a broker."""

    def __init__(self) -> None:
        self.sent: list[list[Any]] = []  # [topic, key, value, partition, callback, acked]
        self.commits: list[tuple[dict[tuple[str, int], int], bool]] = []  # (offsets, waited)

    def produce(self, topic: str, value: bytes, key: bytes, **kw: Any) -> None:
        self.sent.append([topic, key, value, kw.get("partition"), kw["on_delivery"], False])

    def poll(self, timeout: float = 0.0) -> int:
        return 0

    def ack(self, topic: str | None = None, value: bytes | None = None) -> None:
        for rec in self.sent:
            if not rec[5] and topic in (None, rec[0]) and value in (None, rec[2]):
                rec[5] = True
                rec[4](None, None)

    def flush(self, timeout: float = 0.0) -> int:
        self.ack()
        return 0

    def commit(self, offsets: list[Any], asynchronous: bool) -> None:
        self.commits.append(({(t.topic, t.partition): t.offset for t in offsets}, not asynchronous))

    def topics(self) -> list[str]:
        return [rec[0] for rec in self.sent]


class _Flush:
    """A pipeline's flush, sliced: each key it writes gets the state ``<key>:v<n>``,
    ``n`` counting the flushes begun; a key takes ``cost`` seconds, as in
    :meth:`Pipeline.flush_some` (``None``: one key per slice)."""

    def __init__(self, store: Any, keys: tuple[str, ...], cost: float | None = None) -> None:
        self.store, self.keys, self.version, self.todo = store, keys, 0, list[str]()
        self.cost = cost

    def begin_flush(self) -> int:
        self.version += 1
        self.todo += [k for k in self.keys if k not in self.todo]
        return len(self.todo)

    def flush_some(self, until: float | None = None) -> tuple[int, int]:
        n = 0
        while self.todo:
            if until is not None and n and (self.cost is None or time.perf_counter() >= until):
                break
            key = self.todo.pop(0)
            self.store[key] = f"{key}:v{self.version}".encode()
            n += 1
            if self.cost is not None:
                time.sleep(self.cost)
        return n, len(self.todo)

    def flush(self) -> int:
        self.begin_flush()
        return self.flush_some()[0]


def _engine(broker: _Broker, keys: tuple[str, ...] = ("pump-1",), cost: float | None = None) -> Any:
    """A KafkaEngine's checkpoint machinery on ``broker``, its pipeline's state ``keys``."""
    from types import SimpleNamespace

    from stream.engine_kafka import ChangelogStore, Counts, KafkaEngine, _Acks

    engine = object.__new__(KafkaEngine)
    engine.settings = SimpleNamespace(batch_within_s=0.1)  # type: ignore[assignment]
    engine.producer = engine.consumer = broker  # type: ignore[assignment]
    engine._failed = []
    engine._outputs = _Acks(engine._failed)
    engine._inflight = None
    engine.inputs = {"in": "sensors"}
    store = ChangelogStore(broker, "changelog", 4, engine._delivered)  # type: ignore[arg-type]
    engine.stores = {"sensors": store}
    engine.pipeline = _Flush(store, keys, cost)  # type: ignore[assignment]
    engine.pending, engine.committing = {}, {}
    engine.counts, engine._checkpoint_at, engine.commit_every_s = Counts(), 0.0, 1.0
    return engine


def _states(broker: _Broker) -> list[bytes]:
    return [rec[2] for rec in broker.sent if rec[0] == "changelog"]


def _output(engine: Any, value: bytes) -> None:
    from stream.engine_kafka import _produce

    _produce(engine.producer, "anomalies", value, b"k", None, engine._outputs)


def test_the_periodic_checkpoint_keeps_the_order_without_waiting() -> None:
    """State after the outputs before it, offsets after that state: and the loop goes
    on meanwhile (outputs produced after the checkpoint began do not hold it back)."""
    broker = _Broker()
    engine = _engine(broker)
    _output(engine, b"a1")
    engine.pending = {("in", 0): 10}
    engine._begin_checkpoint()
    assert broker.topics() == ["anomalies"]  # the state is held: a1 not acknowledged
    assert engine.pending == {} and engine._inflight is not None
    _output(engine, b"a2")  # the loop goes on
    engine.pending = {("in", 0): 12}
    engine._advance()
    assert broker.topics() == ["anomalies", "anomalies"] and broker.commits == []
    broker.ack("anomalies", b"a1")  # a2, produced after the checkpoint began, is not
    engine._advance()
    assert broker.topics()[-1] == "changelog" and broker.commits == []  # state, not offsets
    _output(engine, b"a3")
    engine._advance()
    assert broker.commits == []  # the state is not acknowledged yet
    broker.ack("changelog")
    engine._advance()
    assert broker.commits == [({("in", 0): 10}, False)]  # what was consumed before it
    assert engine._inflight is None and engine.pending == {("in", 0): 12}


def test_a_waiting_checkpoint_finishes_the_one_under_way_first() -> None:
    broker = _Broker()
    engine = _engine(broker)
    _output(engine, b"a1")
    engine.pending = {("in", 0): 10}
    engine._begin_checkpoint()  # holds v1
    engine.pending = {("in", 1): 5}
    engine.checkpoint()  # revocation or close: v1, then v2, then every offset
    assert _states(broker) == [b"pump-1:v1", b"pump-1:v2"]  # older never after newer
    assert broker.commits == [({("in", 0): 10, ("in", 1): 5}, True)]
    assert engine._inflight is None and engine.pending == {}


def test_state_taken_in_slices_waits_for_the_outputs_before_its_last_slice() -> None:
    """A key's state taken later than the checkpoint's start covers inputs after it:
    it waits for their outputs too. The offsets committed are those of the start."""
    broker = _Broker()
    engine = _engine(broker, keys=("pump-1", "pump-2"))
    engine.pending = {("in", 0): 10}
    engine._begin_checkpoint()  # the first slice: pump-1
    assert engine._inflight.outputs is None and _states(broker) == []
    _output(engine, b"a1")  # from input after the start, before pump-2's state is taken
    engine.pending = {("in", 0): 11}
    engine._advance()  # the second slice: pump-2; the state is all taken
    engine._advance()
    assert _states(broker) == []  # a1 is not acknowledged
    _output(engine, b"a2")  # after the last slice: it does not hold the state back
    broker.ack("anomalies", b"a1")
    engine._advance()
    assert sorted(_states(broker)) == [b"pump-1:v1", b"pump-2:v1"]
    broker.ack("changelog")
    engine._advance()
    assert broker.commits == [({("in", 0): 10}, False)]
    assert engine.pending == {("in", 0): 11}


def test_an_idle_loop_takes_the_state_in_one_longer_slice() -> None:
    """5 ms of state per batch under load; when a batch found nothing, as long as the
    wait for input the loop has just had (many keys would otherwise take many waits)."""
    from stream.engine_kafka import STATE_SLICE_S

    broker = _Broker()
    engine = _engine(broker, keys=tuple(f"pump-{i}" for i in range(6)), cost=STATE_SLICE_S / 2)
    engine.pending = {("in", 0): 10}
    engine._begin_checkpoint()
    left = len(engine.pipeline.todo)
    assert 0 < left < 6  # a slice of about 5 ms
    engine._advance(idle=True)
    assert engine.pipeline.todo == [] and engine._inflight.outputs is not None


def test_a_waiting_checkpoint_writes_the_keys_a_sliced_one_had_left() -> None:
    broker = _Broker()
    engine = _engine(broker, keys=("pump-1", "pump-2"))
    engine.pending = {("in", 0): 10}
    engine._begin_checkpoint()  # pump-1 taken, pump-2 left
    engine.checkpoint()
    assert _states(broker) == [b"pump-1:v1", b"pump-2:v2", b"pump-1:v2"]
    assert broker.commits == [({("in", 0): 10}, True)] and engine._inflight is None


def test_a_lost_partition_gets_none_of_the_held_state() -> None:
    from stream.engine_kafka import murmur2_partition

    broker = _Broker()
    engine = _engine(broker)
    engine.pending = {("in", 0): 10}
    _output(engine, b"a1")
    engine._begin_checkpoint()  # holds v1 of pump-1
    lost = murmur2_partition(b"pump-1", 4)
    engine._settle(skip={("in", lost)})
    assert "changelog" not in broker.topics()  # its new owner writes its state
    engine._settle(skip=())  # nothing under way any more
    assert engine.pending == {("in", 0): 10}


def test_murmur2_matches_kafka_java_client() -> None:
    # Kafka's own test vectors (UtilsTest.testMurmur2), as positive ints modulo 2^31.
    vectors = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536}
    for key, java in vectors.items():
        assert murmur2_partition(key, 2**31 - 1) == (java & 0x7FFFFFFF) % (2**31 - 1)


@pytest.mark.kafka
def test_murmur2_matches_librdkafka(kafka_broker: str) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"m2-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_broker})  # kept alive for the future
    admin.create_topics([NewTopic(topic, 7, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": kafka_broker, "partitioner": "murmur2_random"})
    got: dict[bytes, int] = {}
    keys = [f"pump-{i:03d}".encode() for i in range(60)] + [bytes([i]) * i for i in range(1, 40)]
    for key in keys:
        producer.produce(
            topic, b"x", key, on_delivery=lambda e, m: got.update({m.key(): m.partition()})
        )
    assert producer.flush(30) == 0
    assert {k: murmur2_partition(k, 7) for k in keys} == got


def get_json(port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def first_tick(messages: list[Message]) -> float:
    """Event time of the first well-formed batched reading in ``messages``."""
    for _, _, value in messages:
        try:
            data = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        if isinstance(data, dict) and data.get("device") and isinstance(data.get("values"), dict):
            return float(data["ts"])
    raise ValueError("no well-formed message")


@pytest.mark.kafka
@pytest.mark.slow
def test_plant_and_bad_input_through_the_kafka_engine(kafka_broker: str, tmp_path: Path) -> None:
    s = make_settings(kafka_broker, tmp_path, engine="kafka", max_message_bytes=MAX_BYTES)
    n_ticks = 1200
    plant = Plant(PlantConfig(n_devices=20, seed=11))
    run = plant.simulate(
        n_ticks, plant.random_faults(24, n_ticks, kinds=FAULT_KINDS, duration=(30, 150))
    )
    bad = malformed_messages(60)
    messages: list[Message] = [
        ("sensors", rec["device"].encode(), orjson.dumps(rec)) for rec in run.readings()
    ]
    step = len(messages) // (len(bad) + 1)
    for j, (key, value) in enumerate(bad):
        messages.insert((j + 1) * step + j, ("sensors", key, value))

    create_topics(s)
    proc = launch(s, tmp_path / "worker.log")
    try:
        produce(kafka_broker, s, messages)
        counts = wait_for_worker(proc, s.web_port, len(messages), timeout=300)
        assert get_json(s.web_port, "/ready") == (200, {"ready": True})
        status, health = get_json(s.web_port, "/health")
        assert status == 200 and health["devices"] == 20
        status, state = get_json(s.web_port, "/api/v1/keys/pump-000")
        assert status == 200 and state["kind"] == "device" and len(state["sensors"]) == 4
        assert get_json(s.web_port, "/api/v1/keys/nope")[0] == 404
        # the time checkpoints stop the loop is timed for operators
        # (vigil_checkpoint_seconds): the periodic ones take the state and send the commit
        url = f"http://127.0.0.1:{s.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            scraped = resp.read().decode()
        for phase in ("state", "commit"):
            line = f'vigil_checkpoint_seconds_count{{phase="{phase}"}} '
            assert line in scraped, f"no checkpoint timing for {phase}"
            assert float(scraped.split(line)[1].split()[0]) >= 1
        out = read_outputs(kafka_broker, s)
        changelog = read_all(kafka_broker, changelog_topic(s, "sensors"), s.partitions)
    finally:
        stop(proc)
        print(log_tail(tmp_path / "worker.log"))
    assert proc.returncode == 0, "the worker did not stop cleanly on SIGTERM"

    assert counts["processed"] + counts["dead_letter"] == len(messages)
    assert len(out.dead) == counts["dead_letter"] == len(bad)
    dead_values = {base64.b64decode(d["value_b64"]): d for d in out.dead}
    for _, value in bad:
        assert value in dead_values, f"malformed message not dead-lettered: {value[:60]!r}"
        assert dead_values[value]["reason"] and dead_values[value]["error"]
    report = match_detections(run.faults, [a for a in out.anomalies if a.kind == "sensor"])
    print(report.as_dict())
    assert report.recall >= 0.90, report.as_dict()
    assert out.duplicate_anomalies == 0
    # State went to faust's changelog topic, each key on its input's partition.
    assert {orjson.loads(v)["device"] for _, _, v in changelog} == set(run.devices)
    for p, _, v in changelog:
        assert p == murmur2_partition(orjson.loads(v)["device"].encode(), s.partitions)
    # A clean stop commits everything it consumed.
    end = end_offsets(kafka_broker, s.topic("sensors"), s.partitions)
    assert committed_offsets(kafka_broker, s.app_id, s.topic("sensors"), s.partitions) == end


@pytest.mark.kafka
@pytest.mark.slow
def test_sigterm_restart_resumes_from_the_changelog(kafka_broker: str, tmp_path: Path) -> None:
    s = make_settings(kafka_broker, tmp_path, engine="kafka")
    messages, n_bad = plant_messages(n_devices=20, n_ticks=1500, seed=5, bad_every=300)
    ref = reference(s, messages)
    half = len(messages) // 2
    first, second = messages[:half], messages[half:]
    t_second = first_tick(second)
    create_topics(s)
    w1 = launch(s, tmp_path / "worker1.log")
    s2 = with_port(s, tmp_path)
    w2 = None
    try:
        produce(kafka_broker, s, first)
        wait_for_worker(w1, s.web_port, len(first), timeout=240)
        stop(w1)  # SIGTERM: finish the batch, commit, leave
        assert w1.returncode == 0
        topic = s.topic("sensors")
        committed = committed_offsets(kafka_broker, s.app_id, topic, s.partitions)
        assert sum(committed.values()) == len(first), "a clean stop left input uncommitted"
        w2 = launch(s2, tmp_path / "worker2.log")
        produce(kafka_broker, s, second)
        wait_caught_up(kafka_broker, s, [w2], None, timeout=240)
        w2_count = processed_count(s2.web_port)
        out = read_outputs(kafka_broker, s)
    finally:
        if w1.poll() is None:
            w1.kill()
        if w2 is not None:
            stop(w2)
        print(log_tail(tmp_path / "worker2.log"))

    assert w2_count == len(second), "the restarted worker re-read committed input"
    assert out.duplicate_anomalies == 0 and out.duplicate_dead == 0
    assert ref.dead_values <= out.dead_values and len(out.dead_inputs) == n_bad
    after = compare(ref.anomalies, out.anomalies, after_ts=t_second)
    print("RESTART", after.as_dict())
    assert after.reference > 10, "the second half has too few anomalies to compare"
    # Restored state behaves as if never stopped: the same anomaly events, by id.
    assert after.recall >= 0.98 and after.precision >= 0.98, after.as_dict()


@pytest.mark.kafka
@pytest.mark.slow
def test_sigkill_mid_stream_loses_nothing(kafka_broker: str, tmp_path: Path) -> None:
    s = make_settings(kafka_broker, tmp_path, engine="kafka")
    messages, n_bad = plant_messages(n_devices=20, n_ticks=1500, seed=5, bad_every=300)
    ref = reference(s, messages)
    create_topics(s)
    producer = PacedProducer(kafka_broker, s, messages, rate=2500)
    w1 = launch(s, tmp_path / "worker1.log")
    w2 = None
    try:
        producer.start()
        wait_count(w1, s.web_port, 0.4 * len(messages), timeout=120)
        w1.send_signal(signal.SIGKILL)
        w1.wait(10)
        topic = s.topic("sensors")
        committed = committed_offsets(kafka_broker, s.app_id, topic, s.partitions)
        s2 = with_port(s, tmp_path)
        w2 = launch(s2, tmp_path / "worker2.log")
        restarted = time.monotonic()
        wait_count(w2, s2.web_port, 1, timeout=120)
        first_output = time.monotonic() - restarted
        wait_caught_up(kafka_broker, s, [w2], producer, timeout=240)
        end = end_offsets(kafka_broker, topic, s.partitions)
        w2_count = processed_count(s2.web_port)
        out = read_outputs(kafka_broker, s)
    finally:
        if w1.poll() is None:
            w1.kill()
        if w2 is not None:
            stop(w2)
        print(log_tail(tmp_path / "worker2.log"))

    since_commit = sum(end[p] - committed[p] for p in end)
    match = compare(ref.anomalies, out.anomalies)
    print(
        "KILL",
        {
            "in": len(messages),
            "w2_processed": w2_count,
            "uncommitted_at_kill": since_commit,
            "restart_to_first_event_s": round(first_output, 1),
            "duplicate_anomalies": out.duplicate_anomalies,
            "duplicate_dead": out.duplicate_dead,
            "vs_reference": match.as_dict(),
        },
    )
    # Nothing lost: the group committed every input, and every bad input is dead-lettered.
    assert sum(end.values()) == len(messages)
    assert committed_offsets(kafka_broker, s.app_id, topic, s.partitions) == end
    assert ref.dead_values <= out.dead_values and len(out.dead_inputs) == n_bad
    # The restarted worker redid at most what was not committed when the first died.
    assert w2_count == since_commit
    # Redone inputs are skipped by the restored state, so they add no second alarm.
    assert match.recall >= 0.95 and match.precision >= 0.95, match.as_dict()


@pytest.mark.kafka
def test_a_batch_takes_what_has_arrived_instead_of_waiting_to_fill(
    kafka_broker: str, tmp_path: Path
) -> None:
    from stream.engine_kafka import KafkaEngine

    # A long fill wait: a batch that waited to fill would take the whole of it.
    s = make_settings(kafka_broker, tmp_path, engine="kafka", batch_within_s=6.0)

    def reading(ts: float) -> bytes:
        return orjson.dumps({"device": "pump-000", "sensor": "flow", "ts": ts, "value": 1.0})

    engine = KafkaEngine(s)
    try:
        engine.start()
        produce(kafka_broker, s, [("sensors", b"pump-000", reading(1.7e9))])
        deadline = time.monotonic() + 60
        while engine.counts.consumed == 0 and time.monotonic() < deadline:
            engine.step()  # joins the group, restores, reads the first reading
        assert engine.counts.consumed == 1
        produce(kafka_broker, s, [("sensors", b"pump-000", reading(1.7e9 + 1))])
        started = time.monotonic()
        while engine.counts.consumed == 1 and time.monotonic() - started < 30:
            engine.step()
        took = time.monotonic() - started
    finally:
        engine.close()
    assert engine.counts.consumed == 2
    assert took < 3.0, f"the second reading waited {took:.1f} s for its batch to fill"

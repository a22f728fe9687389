"""Kafka-side tools of the reliability tests: workers, paced producing, offsets, outputs.

Accounting never relies on a worker's ``/metrics`` alone (its counters reset when it
restarts). An input is accounted for when the consumer group's committed offset has
passed it (faust commits only after the batch's outputs were flushed to Kafka), and
the outputs are checked by identity: anomalies by their deterministic ``id``, dead
letters by the (topic, partition, offset) of the input they carry.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from stream.codecs import decode_anomaly
from stream.demo import start_worker, worker_counts
from stream.embedded import Message, run_embedded
from stream.events import AnomalyEvent
from stream.pipeline import Pipeline
from stream.settings import Settings
from stream.simulate.plant import Plant, PlantConfig

FAULT_KINDS = ("spike", "level_shift", "drift", "stuck")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_settings(broker: str, tmp_path: Path, **over: Any) -> Settings:
    tag = uuid.uuid4().hex[:8]
    values: dict[str, Any] = {
        "broker": broker,
        "app_id": f"vigil-rel-{tag}",
        "topic_prefix": f"rel-{tag}.",
        "partitions": 4,
        "web_port": free_port(),
        "data_dir": str(tmp_path / f"data-{tag}"),
    }
    values.update(over)
    return Settings.load(**values)


def with_port(settings: Settings, tmp_path: Path) -> Settings:
    """The same worker identity (app id, topics) on a fresh web port and data dir."""
    tag = uuid.uuid4().hex[:6]
    return settings.model_copy(
        update={"web_port": free_port(), "data_dir": str(tmp_path / f"data-{tag}")}
    )


BAD = (
    b"{not json %d",
    b'{"device": "pump-000", "sensor": "flow", "ts": %d, "value": "high"}',
    b'{"device": "pump-001", "sensor": "flow", "ts": %d, "value": 1e999}',
    b"\xff\xfe%d",
    b'{"device": "", "sensor": "flow", "ts": %d, "value": 1.0}',
)


def plant_messages(
    n_devices: int = 20, n_ticks: int = 1500, seed: int = 5, bad_every: int = 300
) -> tuple[list[Message], int]:
    """A simulated plant (one batched message per device and tick) with bad input mixed in.

    Returns the messages and how many of them are bad (each bad one is unique).
    """
    plant = Plant(PlantConfig(n_devices=n_devices, seed=seed))
    plan = plant.random_faults(n_devices, n_ticks, kinds=FAULT_KINDS, duration=(30, 150))
    run = plant.simulate(n_ticks, plan)
    out: list[Message] = []
    n_bad = 0
    for i, rec in enumerate(run.batches()):
        out.append(("sensors", rec["device"].encode(), orjson.dumps(rec)))
        if bad_every and i % bad_every == bad_every - 1:
            key = b"pump-000" if n_bad % 2 else None
            out.append(("sensors", key, BAD[n_bad % len(BAD)] % i))
            n_bad += 1
    return out, n_bad


@dataclass(slots=True)
class Reference:
    """What an uninterrupted run of the embedded pipeline publishes for the same input."""

    anomalies: list[AnomalyEvent]
    dead_values: set[bytes]
    processed: int


def reference(settings: Settings, messages: Sequence[Message]) -> Reference:
    res = run_embedded(Pipeline(settings), messages, settings.batch_size)
    dead = {base64.b64decode(d.value_b64) for d in res.dead_letters}
    return Reference(res.anomalies, dead, res.processed)


class PacedProducer(threading.Thread):
    """Produce messages at about ``rate`` messages/s in a background thread."""

    def __init__(
        self, bootstrap: str, settings: Settings, messages: Sequence[Message], rate: float
    ):
        super().__init__(daemon=True)
        self.bootstrap = bootstrap
        self.settings = settings
        self.messages = messages
        self.rate = rate
        self.sent = 0
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        from confluent_kafka import Producer

        try:
            producer = Producer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "linger.ms": 5,
                    "partitioner": "murmur2_random",
                    "message.timeout.ms": 300_000,
                    "message.max.bytes": 2_000_000,
                    "enable.idempotence": True,
                }
            )
            topics = {
                "sensors": self.settings.topic("sensors"),
                "logs": self.settings.topic("logs"),
            }
            started = time.monotonic()
            chunk = max(int(self.rate / 20), 1)
            for i in range(0, len(self.messages), chunk):
                for stream, key, value in self.messages[i : i + chunk]:
                    while True:
                        try:
                            producer.produce(topics[stream], value, key)
                            break
                        except BufferError:
                            producer.poll(0.1)
                    self.sent += 1
                producer.poll(0)
                ahead = self.sent / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            left = producer.flush(240)
            if left:
                raise RuntimeError(f"{left} messages not delivered")
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()


def _consumer(bootstrap: str, group: str | None = None) -> Any:
    from confluent_kafka import Consumer

    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group or f"vigil-rel-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    """The end offset of each partition (retried while leadership moves, e.g. just
    after a broker restart, when the broker answers NOT_LEADER for a moment)."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    moving = {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
        KafkaError._ALL_BROKERS_DOWN,
    }
    c = _consumer(bootstrap)
    try:
        for attempt in range(40):
            try:
                return {
                    p: int(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
                    for p in range(partitions)
                }
            except KafkaException as exc:
                if attempt == 39 or exc.args[0].code() not in moving:
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")
    finally:
        c.close()


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offset per partition (0 when nothing was committed)."""
    from confluent_kafka import KafkaException, TopicPartition

    # The coordinator may be moving or loading (NOT_COORDINATOR, ..._LOAD_IN_PROGRESS)
    # right after a broker or member change: retry briefly.
    for attempt in range(20):
        c = _consumer(bootstrap, group)  # never subscribes: does not join the group
        try:
            tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
            return {tp.partition: max(int(tp.offset), 0) for tp in tps}
        except KafkaException:
            if attempt == 19:
                raise
            time.sleep(0.5)
        finally:
            c.close()
    raise AssertionError("unreachable")


def lag(bootstrap: str, settings: Settings) -> int:
    """Input messages not yet committed by the worker group (sensors + logs)."""
    total = 0
    for name in ("sensors", "logs"):
        topic = settings.topic(name)
        end = end_offsets(bootstrap, topic, settings.partitions)
        done = committed_offsets(bootstrap, settings.app_id, topic, settings.partitions)
        total += sum(end[p] - done.get(p, 0) for p in end)
    return total


def read_all(bootstrap: str, topic: str, partitions: int) -> list[tuple[int, int, bytes]]:
    """Every (partition, offset, value) on ``topic`` up to its current end."""
    from confluent_kafka import TopicPartition

    end = end_offsets(bootstrap, topic, partitions)
    c = _consumer(bootstrap)
    out: list[tuple[int, int, bytes]] = []
    todo = {p for p, e in end.items() if e > 0}
    if not todo:
        c.close()
        return out
    c.assign([TopicPartition(topic, p, 0) for p in todo])
    deadline = time.monotonic() + 120
    while todo and time.monotonic() < deadline:
        for msg in c.consume(1000, timeout=1.0):
            if msg.error() is not None:
                continue
            p, o = msg.partition(), msg.offset()
            out.append((p, o, msg.value() or b""))
            if o >= end[p] - 1:
                todo.discard(p)
    c.close()
    if todo:
        raise TimeoutError(f"could not read {topic} partitions {sorted(todo)} to the end")
    return out


@dataclass(slots=True)
class Outputs:
    """The anomalies and dead letters on the output topics, with duplicate counts."""

    anomalies: list[AnomalyEvent]
    dead: list[dict[str, Any]]
    anomaly_ids: set[str] = field(default_factory=set)
    dead_inputs: set[tuple[str, int, int]] = field(default_factory=set)
    dead_values: set[bytes] = field(default_factory=set)

    @property
    def duplicate_anomalies(self) -> int:
        return len(self.anomalies) - len(self.anomaly_ids)

    @property
    def duplicate_dead(self) -> int:
        return len(self.dead) - len(self.dead_inputs)


def read_outputs(bootstrap: str, settings: Settings) -> Outputs:
    anomalies = [
        decode_anomaly(v)
        for _, _, v in read_all(bootstrap, settings.topic("anomalies"), settings.partitions)
    ]
    dead = [
        orjson.loads(v)
        for _, _, v in read_all(bootstrap, settings.topic("dead_letter"), settings.partitions)
    ]
    out = Outputs(anomalies, dead)
    out.anomaly_ids = {a.id for a in anomalies}
    out.dead_inputs = {(d["topic"], d["partition"], d["offset"]) for d in dead}
    # A cut record (over 256 KiB) stands for its original through the SHA-256.
    out.dead_values = {base64.b64decode(d["value_b64"]) for d in dead if not d.get("truncated")}
    out.dead_values |= {bytes.fromhex(d["value_sha256"]) for d in dead if d.get("truncated")}
    return out


def wait_caught_up(
    bootstrap: str,
    settings: Settings,
    procs: Sequence[subprocess.Popen[bytes]],
    producer: PacedProducer | None,
    timeout: float,
) -> float:
    """Wait until every produced input is committed by the group; returns when (monotonic)."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"worker {proc.pid} exited with code {proc.returncode}")
        if producer is None or producer.done.is_set():
            if producer is not None and producer.error is not None:
                raise RuntimeError(f"producer failed: {producer.error!r}")
            last = lag(bootstrap, settings)
            if last == 0:
                return time.monotonic()
        time.sleep(0.5)
    raise TimeoutError(f"group {settings.app_id} still {last} messages behind after {timeout:.0f}s")


def processed_count(port: int) -> float:
    try:
        c = worker_counts(port)
    except OSError:
        return -1.0
    return c["processed"] + c["dead_letter"]


def metric_total(port: int, name: str) -> float:
    """The sum of a worker's ``name`` samples on ``/metrics`` (all label sets)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_count(proc: subprocess.Popen[bytes], port: int, at_least: float, timeout: float) -> float:
    """Wait until a worker's /metrics has accounted for ``at_least`` inputs; returns when."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with code {proc.returncode}")
        if processed_count(port) >= at_least:
            return time.monotonic()
        time.sleep(0.1)
    raise TimeoutError(f"worker did not reach {at_least} inputs in {timeout:.0f}s")


def launch(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    return start_worker(settings, log_path)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 60) -> None:
    if proc.poll() is not None:
        return
    os.kill(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def log_tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def log_lines(*logs: Path) -> Iterator[tuple[Path, str]]:
    """Each line of the workers' logs, with its file (a log not written is skipped)."""
    for path in logs:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            yield path, line


def skipped_while_fetching(*logs: Path) -> list[str]:
    """The faust consumer's warnings that it jumped over input offsets (counted as done).

    The test topics have no transactions and no compaction, so any such jump is inputs
    committed without being processed.
    """
    return [line for _, line in log_lines(*logs) if "skipped while fetching" in line]


def warnings_of(*logs: Path, limit: int = 40) -> list[str]:
    """The workers' WARNING and ERROR lines (the first ``limit``), for a failure's message:
    a rare failure on a shared CI machine must say what the workers saw."""
    found = [
        f"{path.name}: {line[:300]}"
        for path, line in log_lines(*logs)
        if "[WARNING]" in line or "[ERROR]" in line
    ]
    return found[:limit]


@dataclass(slots=True)
class Match:
    """How a run's anomalies compare with the reference's, by deterministic id."""

    reference: int
    observed: int
    common: int
    near: int  # reference opens matched within +-tolerance samples (same key/action)
    # Who differs, for a failure's message: "key action detector @event_ts"
    extra: tuple[str, ...] = ()
    missed: tuple[str, ...] = ()

    @property
    def recall(self) -> float:
        return self.common / self.reference if self.reference else 1.0

    @property
    def precision(self) -> float:
        return self.common / self.observed if self.observed else 1.0

    @property
    def near_recall(self) -> float:
        return self.near / self.reference if self.reference else 1.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "observed_unique": self.observed,
            "identical": self.common,
            "recall": round(self.recall, 4),
            "precision": round(self.precision, 4),
            "near_recall": round(self.near_recall, 4),
            "extra": list(self.extra[:12]),
            "missed": list(self.missed[:12]),
        }


def compare(
    ref: Sequence[AnomalyEvent],
    got: Sequence[AnomalyEvent],
    after_ts: float = 0.0,
    tolerance_s: float = 5.0,
) -> Match:
    """Compare anomalies with event time >= ``after_ts``: identical ids, and near matches.

    A near match is an event of the same key and action within ``tolerance_s`` seconds
    (samples, at the plant's 1 s period) of a reference event.
    """
    r = {a.id: a for a in ref if a.event_ts >= after_ts}
    g = {a.id: a for a in got if a.event_ts >= after_ts}
    by_key: dict[tuple[str, str], list[float]] = {}
    for a in g.values():
        by_key.setdefault((a.key, str((a.details or {}).get("action"))), []).append(a.event_ts)
    near = 0
    for a in r.values():
        times = by_key.get((a.key, str((a.details or {}).get("action"))), [])
        if any(abs(t - a.event_ts) <= tolerance_s for t in times):
            near += 1

    def show(a: AnomalyEvent) -> str:
        action = (a.details or {}).get("action")
        return f"{a.key} {action} {a.detector} @{a.event_ts:.0f}"

    extra = tuple(show(g[i]) for i in sorted(g.keys() - r.keys(), key=lambda i: g[i].event_ts))
    missed = tuple(show(r[i]) for i in sorted(r.keys() - g.keys(), key=lambda i: r[i].event_ts))
    return Match(len(r), len(g), len(r.keys() & g.keys()), near, extra, missed)


def reason_counts(dead: Sequence[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(d["reason"] for d in dead))


REPO_SCRIPT = Path(__file__).resolve().parents[2] / "ops" / "kafka" / "local-kafka.sh"

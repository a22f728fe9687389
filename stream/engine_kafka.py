"""The lean worker engine (``vigil worker --engine kafka``): confluent-kafka around the core.

The same :class:`~stream.pipeline.Pipeline` as the faust worker, driven by a plain
consumer-group loop::

    consume(batch) -> split by topic -> process_sensors / process_logs
        -> produce anomalies and dead letters
    and once a second, a checkpoint, which the loop does not wait for:
        -> the offsets consumed so far noted, the keys changed so far frozen
        -> their state taken into ChangelogStore and held, 5 ms of each batch
           (idle: as long as the wait for input, batch_within_s)
        -> once every output produced before its last slice is acknowledged: the
           held state produced to <app_id>-*-state-changelog
        -> once that is acknowledged: the noted offsets committed (at-least-once;
           synchronously on revocation and close, see KafkaEngine.checkpoint)

State is compatible with the faust engine's tables: the changelog topics have faust's
names, the key is the device (or log key) as UTF-8 and the value the snapshot bytes.
A state record goes to the partition number of the input that changed it, so assigning
an input partition means restoring the changelog partition of the same number.

Partition assignment is ``range``: each topic's partitions are split among the workers
alike, so partition ``p`` of sensors, logs and feedback go to the same worker (a key's
verdicts must reach the worker that holds its state) and every worker gets its share of
the sensors topic. ``cooperative-sticky`` (used until 2026-12-01) balances the count of
partitions over all topics: a worker that joined got the feedback and logs partitions
and no sensors (``tests/reliability/test_rebalance.py``). The price of ``range`` is an
eager rebalance: every partition is revoked, checkpointed and restored from its
changelog, also those a worker keeps. Do not run faust workers and kafka-engine workers
in one group at the same time (their assignors differ). Stop one engine, start the
other: the state carries over through the changelogs.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import NewTopic

from stream import api, codecs, metrics
from stream.pipeline import BatchResult, Pipeline, Record
from stream.runtime import tune_gc
from stream.settings import Settings
from stream.topics import create_topics, kafka_config, read_metadata

log = logging.getLogger(__name__)

#: The two faust tables of ``stream.app``; their changelog topics are shared.
TABLES = {"sensors": "device-state", "logs": "log-state"}


#: Errors of a topic created a moment ago (no leader or metadata yet): worth a retry.
_NOT_READY = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
}


def changelog_topic(settings: Settings, stream: str) -> str:
    """faust's name for a table's changelog: ``<app_id>-<table>-changelog``."""
    return f"{settings.app_id}-{TABLES[stream]}-changelog"


def murmur2_partition(key: bytes, n_partitions: int) -> int:
    """The partition Kafka's Java clients (and ``murmur2_random``) choose for ``key``."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    n = len(key)
    h = (0x9747B28C ^ n) & mask
    for i in range(0, n - n % 4, 4):
        k = int.from_bytes(key[i : i + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = n % 4
    base = n - tail
    if tail == 3:
        h ^= key[base + 2] << 16
    if tail >= 2:
        h ^= key[base + 1] << 8
    if tail >= 1:
        h ^= key[base]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % n_partitions


class ChangelogStore:
    """A pipeline :class:`~stream.pipeline.StateStore` written through to a changelog.

    Values live in a dict (what this worker restored or wrote); every write is also
    produced to the compacted changelog topic, on the partition of the key's input.

    Parameters
    ----------
    producer
        The engine's producer (idempotent).
    topic
        The changelog topic.
    n_partitions
        Its partition count (keys without a known input partition use murmur2).
    on_delivery
        Delivery callback, to hold the commit back when a record was not written.
    """

    def __init__(
        self,
        producer: Producer,
        topic: str,
        n_partitions: int,
        on_delivery: Callable[[KafkaError | None, Message], None],
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.n_partitions = n_partitions
        self.on_delivery = on_delivery
        self.values: dict[str, bytes] = {}
        self.muted: set[int] = set()  # partitions whose writes are dropped (lost ones)
        #: Writes kept back, ``(key, value, partition)`` in order, while not ``None``:
        #: a checkpoint's state waits there for its outputs' acknowledgement.
        self.held: list[tuple[bytes, bytes, int]] | None = None
        self.where: dict[str, int] = {}  # key -> changelog partition it lives in
        #: key (as the input message key) -> partition of its latest input.
        self.hints: dict[bytes, int] = {}

    def get(self, key: str) -> bytes | None:
        return self.values.get(key)

    def __setitem__(self, key: str, value: bytes) -> None:
        raw = key.encode("utf-8")
        partition = self.hints.get(raw)
        if partition is None or partition >= self.n_partitions:
            # An unkeyed input: the partition a keyed producer (and faust) would use.
            partition = self.where.get(key, murmur2_partition(raw, self.n_partitions))
        if partition in self.muted:
            return
        self.values[key] = value
        self.where[key] = partition
        if self.held is not None:
            self.held.append((raw, value, partition))
            return
        _produce(self.producer, self.topic, value, raw, partition, self.on_delivery)

    def release(
        self,
        records: list[tuple[bytes, bytes, int]],
        on_delivery: Callable[[KafkaError | None, Message], None],
        muted: Iterable[int] = (),
    ) -> int:
        """Produce held ``records`` in their order, but those of ``muted`` partitions
        (lost meanwhile: their new owner writes them); returns how many."""
        skip = set(muted)
        n = 0
        for raw, value, partition in records:
            if partition not in skip:
                _produce(self.producer, self.topic, value, raw, partition, on_delivery)
                n += 1
        return n

    def load(self, key: bytes, value: bytes | None, partition: int) -> None:
        """One changelog record read back (``None`` is a tombstone)."""
        name = key.decode("utf-8", "replace")
        if value is None:
            self.values.pop(name, None)
            self.where.pop(name, None)
        else:
            self.values[name] = value
            self.where[name] = partition

    def drop(self, partitions: Iterable[int]) -> list[str]:
        """Forget the keys of ``partitions`` (revoked); returns them."""
        gone = set(partitions)
        keys = [k for k, p in self.where.items() if p in gone]
        for k in keys:
            del self.values[k]
            del self.where[k]
        self.hints = {k: p for k, p in self.hints.items() if p not in gone}
        return keys


def _produce(
    producer: Producer,
    topic: str,
    value: bytes,
    key: bytes | None,
    partition: int | None,
    on_delivery: Callable[[KafkaError | None, Message], None],
) -> None:
    kwargs: dict[str, Any] = {"on_delivery": on_delivery}
    if partition is not None:
        kwargs["partition"] = partition
    while True:
        try:
            producer.produce(topic, value, key, **kwargs)
            if isinstance(on_delivery, _Acks):
                on_delivery.left += 1
            return
        except BufferError:  # the local queue is full: let librdkafka send some
            producer.poll(0.1)


def _where(msg: Message) -> tuple[str, int, int]:
    # A message without an error always has all three (the stubs say Optional).
    return cast(str, msg.topic()), cast(int, msg.partition()), cast(int, msg.offset())


def ensure_changelogs(settings: Settings, timeout: float = 30.0) -> dict[str, int]:
    """Create the compacted changelog topics if absent; returns their partition counts.

    A new changelog gets the partition count of its input topic, so that state record
    partition == input partition holds for every input.
    """
    admin, meta = read_metadata(settings, timeout)
    counts: dict[str, int] = {}
    todo = []
    for stream in TABLES:
        name = changelog_topic(settings, stream)
        existing = meta.topics.get(name)
        if existing is not None and existing.error is None:
            counts[name] = len(existing.partitions)
            continue
        source = meta.topics.get(settings.topic(stream))
        n = len(source.partitions) if source is not None and source.partitions else 0
        counts[name] = n or settings.partitions
        todo.append(
            NewTopic(
                name,
                num_partitions=counts[name],
                replication_factor=settings.replication_factor,
                config={"cleanup.policy": "compact"},
            )
        )
    for name, fut in (admin.create_topics(todo, operation_timeout=timeout) if todo else {}).items():
        try:
            fut.result(timeout)
            log.info("created changelog topic %s (%d partitions)", name, counts[name])
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return counts


class _Acks:
    """The delivery callback of a group of produced records: counts those not yet
    acknowledged (the producer counts up, delivery reports down) and keeps errors."""

    __slots__ = ("failed", "left")

    def __init__(self, failed: list[KafkaError]) -> None:
        self.left = 0
        self.failed = failed  # the engine's: any error stops every later commit

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        self.left -= 1
        if err is not None:
            self.failed.append(err)


#: Loop time a periodic checkpoint may take per batch to take the state of its keys
#: (at least one key per batch); the rest waits for the next batches.
STATE_SLICE_S = 0.005


@dataclass(slots=True, eq=False)
class _Checkpoint:
    """A periodic checkpoint under way: its state being taken, then the broker's
    answers awaited."""

    offsets: dict[tuple[str, int], int]  # the consumed offsets it commits
    held: dict[ChangelogStore, list[tuple[bytes, bytes, int]]]  # its state, held
    outputs: _Acks | None = None  # the outputs produced before its state was all taken
    state: _Acks | None = None  # its state records, once produced


@dataclass(slots=True)
class Counts:
    """What the engine has done since it started."""

    consumed: int = 0
    batches: int = 0
    commits: int = 0
    restored: int = 0
    first_message_at: float | None = None  # time.monotonic() of the first input
    last_commit_at: float | None = None  # time.monotonic() of the latest commit


class KafkaEngine:
    """The consumer-group loop around one :class:`Pipeline` (no HTTP; see :func:`serve`).

    Parameters
    ----------
    settings
        Worker settings: ``app_id`` is the consumer group, ``batch_size`` and
        ``batch_within_s`` bound a batch.
    consumer_config
        Extra librdkafka settings of the consumer.
    commit_every_s
        Longest time between checkpoints (state written, outputs acknowledged, offsets
        committed: from one's commit to the start of the next; with many keys a
        periodic one spans several batches) while input keeps coming; a batch that
        finds the topics drained starts one at once. 0 starts one every batch.
        Default: the settings' ``commit_every_s``.
    """

    def __init__(
        self,
        settings: Settings,
        consumer_config: dict[str, Any] | None = None,
        commit_every_s: float | None = None,
    ) -> None:
        self.settings = settings
        self.commit_every_s = settings.commit_every_s if commit_every_s is None else commit_every_s
        self._checkpoint_at = time.monotonic()
        self.counts = Counts()
        self.inputs = {
            settings.topic("sensors"): "sensors",
            settings.topic("logs"): "logs",
            # Verdicts change the state of a device or log key; they have no store of
            # their own (the key's partition number is the same on every topic).
            settings.topic("feedback"): "feedback",
        }
        base = kafka_config(settings)
        create_topics(settings)
        partitions = ensure_changelogs(settings)
        self.producer = Producer(
            {
                **base,
                "enable.idempotence": True,
                "linger.ms": 5,
                # faust (aiokafka) hashes keys with murmur2: outputs land alike.
                "partitioner": "murmur2_random",
                "message.max.bytes": max(settings.max_message_bytes * 2, 2_097_152),
            }
        )
        self._failed: list[KafkaError] = []
        # the outputs produced since the last checkpoint began, and that checkpoint
        self._outputs = _Acks(self._failed)
        self._inflight: _Checkpoint | None = None
        self.stores = {
            stream: ChangelogStore(
                self.producer,
                changelog_topic(settings, stream),
                partitions[changelog_topic(settings, stream)],
                self._delivered,
            )
            for stream in TABLES
        }
        self.pipeline = Pipeline(
            settings, device_store=self.stores["sensors"], log_store=self.stores["logs"]
        )
        self.consumer = Consumer(
            {
                **base,
                "group.id": settings.app_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "range",
                # librdkafka's 45 s default would hold a killed worker's partitions for
                # 45 s; faust (aiokafka) uses 10 s.
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 3_000,
                "on_commit": self._on_commit,
                **(consumer_config or {}),
            }
        )
        self._restorer = Consumer(
            {**base, "group.id": f"{settings.app_id}-restore", "enable.auto.commit": False}
        )
        self.assigned: set[tuple[str, int]] = set()
        self.pending: dict[tuple[str, int], int] = {}  # next offset to commit
        # offsets of asynchronous commits not yet confirmed by the group coordinator
        self.committing: dict[tuple[str, int], int] = {}
        self.lock = threading.Lock()  # the HTTP thread reads the pipeline under it
        self.ready = False
        self.stopping = False
        self._lag_at = 0.0

    # -- delivery and checkpoints -------------------------------------------------
    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failed.append(err)

    def _acknowledged(self, what: str) -> None:
        """Wait until everything produced so far is acknowledged by the broker."""
        left = self.producer.flush(120)
        if left or self._failed:
            # Never go on past a lost record: stop, and let the restarted worker redo
            # the uncommitted input from the last state that was written.
            raise RuntimeError(
                f"{what}: {left} records undelivered, errors {self._failed[:3]}; not committing"
            )

    def write_state(self, skip: Iterable[tuple[str, int]] = ()) -> None:
        """Outputs acknowledged, then changed state written and acknowledged.

        Outputs first: the state carries the offsets it has learned, and a restarted
        worker skips those inputs, so state must never be stored ahead of the outputs
        of the same inputs. State of the ``skip`` input partitions is not written.
        """
        started = time.perf_counter()
        self._acknowledged("outputs")
        written = time.perf_counter()
        metrics.CHECKPOINT.labels(phase="outputs").observe(written - started)
        skipped = set(skip)
        for topic, stream in self.inputs.items():
            if stream in self.stores:
                self.stores[stream].muted = {p for t, p in skipped if t == topic}
        try:
            self.pipeline.flush()
        finally:
            for store in self.stores.values():
                store.muted = set()
        self._acknowledged("state")
        metrics.CHECKPOINT.labels(phase="state").observe(time.perf_counter() - written)

    def checkpoint(self) -> None:
        """Everything so far, waited for: outputs, then state, acknowledged; then every
        consumed offset not yet confirmed, committed (revocation and close).

        The order is what makes the engine at-least-once: an offset is committed only
        once the outputs and the state that reflect its input are acknowledged. A
        periodic checkpoint under way is finished first (its state goes before the
        newer state of the same keys).
        """
        self._settle()
        self.write_state()
        self.pending = {**self.committing, **self.pending}
        if self.pending:
            self._commit(dict(self.pending), wait=True)

    def _begin_checkpoint(self) -> None:
        """The periodic checkpoint, without stopping the loop for the broker.

        The offsets consumed so far are noted and the keys changed so far frozen
        (:meth:`Pipeline.begin_flush`); :meth:`_advance`, called every batch, takes
        their state a slice at a time (:data:`STATE_SLICE_S` of the loop per batch) and
        holds it, produces it once every output produced before its last slice is
        acknowledged, and commits the noted offsets once the state is acknowledged. A
        key's state taken later than the start covers at least its inputs before the
        start, and a restarted worker skips what a key's state covers, so committing
        the offsets of the start is safe. That is the order of :meth:`checkpoint`,
        while the loop goes on: waiting for both acknowledgements took ~25 ms a second
        of its time, and taking every key's state at once ~140 µs per key, both on the
        latency of the readings that came meanwhile.
        """
        self.pipeline.begin_flush()
        self._inflight = _Checkpoint(dict(self.pending), {s: [] for s in self.stores.values()})
        self.pending.clear()
        self._advance()

    def _advance(self, idle: bool = False) -> None:
        """Move the checkpoint under way on as far as the broker's answers allow;
        ``idle`` (the batch found nothing): a slice of state as long as the wait for
        input the loop has just had, not :data:`STATE_SLICE_S`."""
        cp = self._inflight
        if cp is None:
            return
        if cp.outputs is None:  # taking the state
            started = time.perf_counter()
            budget = self.settings.batch_within_s if idle else STATE_SLICE_S
            for store, records in cp.held.items():
                store.held = records
            try:
                _, left = self.pipeline.flush_some(until=started + budget)
            finally:
                for store in cp.held:
                    store.held = None
            metrics.CHECKPOINT.labels(phase="state").observe(time.perf_counter() - started)
            if left:
                return
            # the state is taken: it waits for every output produced before now
            cp.outputs, self._outputs = self._outputs, _Acks(self._failed)
        self.producer.poll(0)  # serves delivery reports
        if self._failed:
            # Never go on past a lost record: stop, and let the restarted worker redo
            # the uncommitted input from the last state that was written.
            raise RuntimeError(
                f"checkpoint: records undelivered {self._failed[:3]}; not committing"
            )
        if cp.state is None:
            if cp.outputs.left > 0:
                return
            cp.state = _Acks(self._failed)
            for store, records in cp.held.items():
                store.release(records, cp.state)
            cp.held = {}
            self.producer.poll(0)
        if cp.state.left > 0:
            return
        self._inflight = None
        if cp.offsets:
            self._commit(cp.offsets, wait=False)

    def _settle(self, skip: Iterable[tuple[str, int]] = ()) -> None:
        """Hand the checkpoint under way to a waiting one: the state it has taken
        produced now (but that of the ``skip`` input partitions), the rest of its keys
        left to the waiting one's flush, its offsets pending again."""
        cp, self._inflight = self._inflight, None
        if cp is None:
            return
        skipped = set(skip)
        for topic, stream in self.inputs.items():
            store = self.stores.get(stream)
            if store is not None and store in cp.held:
                muted = {p for t, p in skipped if t == topic}
                store.release(cp.held[store], self._delivered, muted)
        # newer input of the same partition, if any, is committed instead
        self.pending = {**cp.offsets, **self.pending}

    def _commit(self, offsets: dict[tuple[str, int], int], wait: bool) -> None:
        """Commit ``offsets``; ``wait=False`` sends the commit and goes on.

        Waiting for the coordinator's answer stalled the loop ~15 ms a second
        (``vigil_checkpoint_seconds{phase="commit"}``). A refused asynchronous commit
        puts its offsets back into the next one (:meth:`_on_commit`), and a waiting
        checkpoint (revocation, close) commits every offset not yet confirmed.
        """
        tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        started = time.perf_counter()
        try:
            if wait:
                self.consumer.commit(offsets=tps, asynchronous=False)
                self.committing.clear()
            else:
                self.consumer.commit(offsets=tps, asynchronous=True)
                self.committing.update(offsets)
            metrics.CHECKPOINT.labels(phase="commit").observe(time.perf_counter() - started)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.fatal():
                raise
            # The group went on without us (a broker restart outlived our session:
            # UNKNOWN_MEMBER_ID) or the coordinator is away. Outputs and state are
            # written, so nothing is lost: the consumer rejoins, and these offsets are
            # committed at the next checkpoint or their inputs redone by the next owner.
            log.warning("commit failed, retried at the next checkpoint: %s", exc)
            self.pending = {**offsets, **self.pending}
            self._checkpoint_at = time.monotonic()
            return
        if wait:
            self.pending.clear()
        self.counts.commits += 1
        self._checkpoint_at = self.counts.last_commit_at = time.monotonic()

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The coordinator's answer to a commit (served in the loop's consume)."""
        for tp in partitions:
            key = (tp.topic, tp.partition)
            if self.committing.get(key) != tp.offset:
                continue  # a later commit of this partition is under way
            del self.committing[key]
            if err is not None and key in self.assigned and key not in self.pending:
                self.pending[key] = tp.offset  # refused: into the next commit
        if err is not None:
            log.warning("commit failed, retried at the next checkpoint: %s", err)

    # -- rebalancing --------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.ready = False
        with self.lock:
            new = [(tp.topic, tp.partition) for tp in partitions]
            self.assigned.update(new)
            started = time.perf_counter()
            n = self._restore(new)
            # Hot state of a key now restored from the changelog is stale: drop it.
            self.pipeline.forget(n)
        log.info(
            "assigned %s; restored %d state records in %.2fs",
            sorted(new),
            len(n),
            time.perf_counter() - started,
        )
        self.ready = True

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.ready = False
        gone = {(tp.topic, tp.partition) for tp in partitions}
        with self.lock:
            try:
                self.checkpoint()  # finish: the batch's state and offsets, committed
            except KafkaException as exc:
                log.warning("commit on revocation failed (inputs will be redone): %s", exc)
            self._drop(gone)
        log.info("revoked %s", sorted(gone))
        self.ready = bool(self.assigned)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: another worker may own them already; no commit possible.
        gone = {(tp.topic, tp.partition) for tp in partitions}
        log.warning("partitions lost: %s", sorted(gone))
        with self.lock:
            # Their new owner writes their state now: ours would overwrite it.
            self._settle(skip=gone)
            self.write_state(skip=gone)
            self._drop(gone)

    def _drop(self, gone: set[tuple[str, int]]) -> None:
        self.assigned -= gone
        for key in gone:
            self.pending.pop(key, None)
            self.committing.pop(key, None)
        self.pipeline.forget_inputs(gone)
        for topic, stream in self.inputs.items():
            parts = [p for t, p in gone if t == topic]
            if parts and stream in self.stores:
                self.pipeline.forget(self.stores[stream].drop(parts))

    def _watermarks(self, tp: TopicPartition, timeout: float = 60.0) -> tuple[int, int]:
        # A changelog created a moment ago may have no leader yet: retry until it has.
        deadline = time.monotonic() + timeout
        while True:
            try:
                low, high = self._restorer.get_watermark_offsets(tp, timeout=10)
                return int(low), int(high)
            except KafkaException as exc:
                if time.monotonic() > deadline or exc.args[0].code() not in _NOT_READY:
                    raise
                log.info("changelog %s[%d] not ready: %s", tp.topic, tp.partition, exc)
                time.sleep(0.5)

    def _restore(self, partitions: Sequence[tuple[str, int]]) -> list[str]:
        """Read the changelog partitions of newly assigned inputs to their end."""
        todo: dict[tuple[str, int], int] = {}
        for topic, p in partitions:
            store = self.stores.get(self.inputs[topic])
            if store is None or p >= store.n_partitions:
                continue
            tp = TopicPartition(store.topic, p)
            low, high = self._watermarks(tp)
            if high > low:
                todo[(store.topic, p)] = high
        keys: list[str] = []
        if not todo:
            return keys
        by_topic = {s.topic: s for s in self.stores.values()}
        self._restorer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in todo])
        idle = 0
        while todo and idle < 20:
            msgs = self._restorer.consume(10_000, timeout=0.5)
            idle = 0 if msgs else idle + 1
            for msg in msgs:
                if msg.error() is not None:
                    continue
                t, p, o = _where(msg)
                key = msg.key()
                if key is not None:
                    by_topic[t].load(key, msg.value(), p)
                    keys.append(key.decode("utf-8", "replace"))
                    self.counts.restored += 1
                if (t, p) in todo and o >= todo[(t, p)] - 1:
                    del todo[(t, p)]
            # Compaction may have removed the last records: the position tells.
            if todo and not msgs:
                for tp in self._restorer.position([TopicPartition(t, p) for t, p in todo]):
                    if tp.offset >= todo.get((tp.topic, tp.partition), 0):
                        todo.pop((tp.topic, tp.partition), None)
        if todo:
            log.warning("changelog partitions not read to the end: %s", sorted(todo))
        self._restorer.unassign()
        return keys

    # -- the loop -----------------------------------------------------------------
    def start(self) -> None:
        """Join the group (partitions arrive, and are restored, in the first consume)."""
        tune_gc(self.settings)
        self.consumer.subscribe(
            list(self.inputs),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    def step(self) -> int:
        """Consume, process and publish one batch, checkpoint when due; returns its size."""
        msgs = self._take()
        if msgs and self.counts.first_message_at is None:
            self.counts.first_message_at = time.monotonic()
        batches: dict[str, list[Record]] = {"sensors": [], "logs": [], "feedback": []}
        n = 0
        with self.lock:
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    if err.fatal():
                        raise KafkaException(err)
                    log.warning("consumer error: %s", err)
                    continue
                topic, partition, offset = _where(msg)
                if (topic, partition) not in self.assigned:
                    continue  # fetched before a revocation: the new owner reads it
                key = msg.key()
                stream = self.inputs[topic]
                if key is not None and stream in self.stores:
                    self.stores[stream].hints[key] = partition
                kind, ts = msg.timestamp()
                batches[stream].append(
                    Record(
                        topic,
                        partition,
                        offset,
                        key,
                        msg.value() or b"",
                        ts / 1000 if kind else None,
                    )
                )
                self.pending[(topic, partition)] = offset + 1
                n += 1
            if batches["sensors"]:
                self.publish(self.pipeline.process_sensors(batches["sensors"]))
            if batches["logs"]:
                self.publish(self.pipeline.process_logs(batches["logs"]))
            if batches["feedback"]:
                self.publish(self.pipeline.process_feedback(batches["feedback"]))
            if n:
                self.counts.consumed += n
                self.counts.batches += 1
            # Checkpoint when idle (an empty batch), else every commit_every_s:
            # snapshots and the synchronous commit cost a quarter of the time when
            # paid on every batch, and a crash redoes at most this much input anyway.
            # Under steady load below capacity every batch is short, and paying the
            # checkpoint on each of them put it on the path of the next readings
            # (bench/latency.py at 3,000 msg/s: p99 230 -> 174 ms, p50 71 -> 60 ms).
            self._advance(idle=n == 0)
            due = time.monotonic() - self._checkpoint_at >= self.commit_every_s
            if self.pending and (n == 0 or due) and self._inflight is None:
                self._begin_checkpoint()
        if time.monotonic() - self._lag_at > 5.0:
            self.report_lag()
        return n

    def _take(self) -> list[Message]:
        """A batch: what has been fetched already, up to ``batch_size``; if nothing has,
        the first message to arrive within ``batch_within_s`` and what came with it.

        ``consume(n, timeout)`` waits until ``n`` messages or the timeout: below
        capacity every reading then waited for the batch to fill (``bench/latency.py``
        at 10,000 msg/s: p50 123 ms, most of it that wait). Taking what is there keeps a
        full batch under load (the queue is never empty) and a short one when idle.
        """
        size = self.settings.batch_size
        msgs = self.consumer.consume(size, 0)
        if msgs:
            return msgs
        first = self.consumer.poll(self.settings.batch_within_s)
        if first is None:
            return []
        return [first, *self.consumer.consume(size - 1, 0)] if size > 1 else [first]

    def publish(self, result: BatchResult) -> None:
        """Produce a batch's outputs (acknowledged at checkpoint)."""
        anomalies = self.settings.topic("anomalies")
        for a in result.anomalies:
            _produce(
                self.producer, anomalies, codecs.encode(a), a.key.encode(), None, self._outputs
            )
        incidents = self.settings.topic("incidents")
        for i in result.incidents:
            _produce(
                self.producer, incidents, codecs.encode(i), i.key.encode(), None, self._outputs
            )
        shadow = self.settings.topic("shadow")
        for e in result.shadow:
            _produce(self.producer, shadow, codecs.encode(e), e.key.encode(), None, self._outputs)
        dead = self.settings.topic("dead_letter")
        for dl in result.dead_letters:
            key = None if dl.key_b64 is None else dl.key_b64.encode()  # as stream.app does
            _produce(self.producer, dead, codecs.encode(dl), key, None, self._outputs)
        self.producer.poll(0)

    def report_lag(self) -> None:
        """``vigil_consumer_lag``: end of each input partition minus this worker's position."""
        self._lag_at = time.monotonic()
        per_topic = dict.fromkeys(self.inputs, 0)
        tps = [TopicPartition(t, p) for t, p in sorted(self.assigned)]
        try:
            positions = self.consumer.position(tps) if tps else []
            for tp in positions:
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
                if high < 0:
                    _, high = self.consumer.get_watermark_offsets(tp, timeout=2)
                done = self.pending.get((tp.topic, tp.partition), tp.offset)
                if high >= 0 and done >= 0:
                    per_topic[tp.topic] += max(high - done, 0)
        except KafkaException as exc:
            log.debug("lag not available: %s", exc)
            return
        for topic, value in per_topic.items():
            metrics.CONSUMER_LAG.labels(topic=topic).set(value)

    def run(self, until: Callable[[KafkaEngine], bool] | None = None) -> Counts:
        """Loop until :meth:`stop` (or ``until(self)``); then commit and leave the group."""
        self.start()
        try:
            while not self.stopping and (until is None or not until(self)):
                self.step()
        finally:
            self.close()
        return self.counts

    def stop(self) -> None:
        """Ask the loop to finish its batch, commit and close (signal-safe)."""
        self.stopping = True

    def close(self) -> None:
        self.ready = False
        try:
            with self.lock:
                try:
                    self.checkpoint()
                except KafkaException as exc:  # e.g. a rebalance under way: the next owner redoes
                    log.warning("commit on close failed (inputs will be redone): %s", exc)
        finally:
            self.consumer.close()  # revokes (committing again, a no-op) and leaves the group
            self._restorer.close()
            self.producer.flush(30)


# -- HTTP ---------------------------------------------------------------------------
def _handler(engine: KafkaEngine) -> type[BaseHTTPRequestHandler]:
    pipeline = engine.pipeline

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: " + format, *args)

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, obj: Any, status: int = 200) -> None:
            self._send(status, orjson.dumps(api.to_jsonable(obj)))

        def _api(self, fn: Callable[[], Any], status: int = 200) -> None:
            try:
                with engine.lock:
                    obj = fn()
            except api.ApiError as exc:
                self._json({"error": str(exc)}, exc.status)
                return
            self._json(obj, status)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, metrics.generate_latest(), "text/plain; version=0.0.4")
            elif path == "/health":
                self._api(lambda: api.health(pipeline))
            elif path == "/ready":
                self._json({"ready": engine.ready}, 200 if engine.ready else 503)
            elif path == "/openapi.json":
                self._json(api.openapi())
            elif path.startswith("/api/v1/keys/"):
                from urllib.parse import unquote

                key = unquote(path[len("/api/v1/keys/") :])
                self._api(lambda: api.key_state(pipeline, key))
            elif path == "/api/v1/incidents":
                self._api(lambda: api.open_incidents(pipeline))
            elif path == "/api/v1/suppressions":
                self._api(lambda: api.suppressions(pipeline))
            else:
                self._json({"error": "not found"}, 404)

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != "/api/v1/suppressions":
                self._json({"error": "not found"}, 404)
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = orjson.loads(self.rfile.read(min(length, 65_536)) or b"null")
            except orjson.JSONDecodeError:
                self._json({"error": "the body must be JSON"}, 400)
                return
            self._api(lambda: api.add_suppression(pipeline, body), 201)

        def do_DELETE(self) -> None:
            prefix = "/api/v1/suppressions/"
            path = self.path.split("?", 1)[0]
            if not path.startswith(prefix):
                self._json({"error": "not found"}, 404)
                return
            sup_id = path[len(prefix) :]
            self._api(lambda: api.delete_suppression(pipeline, sup_id))

    return Handler


def serve(engine: KafkaEngine) -> ThreadingHTTPServer:
    """Serve ``/metrics``, ``/health``, ``/ready`` and the API in a daemon thread."""
    settings = engine.settings
    server = ThreadingHTTPServer((settings.web_host, settings.web_port), _handler(engine))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="vigil-http", daemon=True).start()
    return server


def run_kafka_worker(settings: Settings) -> None:
    """Run the kafka-engine worker until SIGTERM/SIGINT, then finish, commit and close."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)  # the CLI keeps the root at WARNING; rebalances are news
    engine = KafkaEngine(settings)
    server = serve(engine)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: engine.stop())
    log.info(
        "kafka engine: group %s on %s, web on %s:%d",
        settings.app_id,
        list(engine.inputs),
        settings.web_host,
        settings.web_port,
    )
    try:
        counts = engine.run()
    finally:
        server.shutdown()
    log.info("stopped: %s", counts)

"""The faust worker: Kafka topics in, the pipeline core in the middle, topics and metrics out.

The data path, as the agents below run it::

    vigil.sensors ──┐                                   ┌─> vigil.anomalies
    vigil.logs ─────┼─ take a batch ─> Pipeline.process ┼─> vigil.incidents
    vigil.feedback ─┘   (decode, route, detect, decide) ├─> vigil.shadow (keys in shadow mode)
                                                        └─> vigil.dead-letter

Per-key state is hot in memory and written to changelog-backed tables at each offset
commit (every ``commit_every_s``; not per event, not per batch), just before the
offsets, and at each revocation, so a restarted worker, or one that takes over a
partition, restores the models from the changelog and redoes at most one interval of
input. Tables use the key's
partitioner (Kafka's murmur2, what Java clients, aiokafka and
``partitioner=murmur2_random`` producers use), so a device's state lands in the
changelog partition of its input partition.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import faust
from faust.types import TP, EventT

from stream import api, codecs, metrics
from stream.faust_commit import GapSafeConsumer, GapSafeTransport
from stream.pipeline import BatchResult, Pipeline, Record
from stream.settings import Settings
from stream.topics import create_topics, partition_counts

log = logging.getLogger(__name__)


def _broker_urls(broker: str) -> list[str]:
    return [f"kafka://{b.strip()}" for b in broker.split(",") if b.strip()]


def _credentials(settings: Settings) -> Any:
    if settings.security_protocol == "PLAINTEXT":
        return None
    import ssl

    ssl_context = None
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        ssl_context = ssl.create_default_context(cafile=settings.ssl_cafile)
    if settings.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password,
            mechanism=settings.sasl_mechanism or "SCRAM-SHA-512",
            ssl_context=ssl_context,
        )
    return faust.SSLCredentials(ssl_context)


class TableStore:
    """A faust table as the pipeline's :class:`~stream.pipeline.StateStore` (str keys)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, key: str) -> bytes | None:
        value = self.table.get(key.encode("utf-8"))
        return None if value is None else bytes(value)

    def __setitem__(self, key: str, value: bytes) -> None:
        self.table[key.encode("utf-8")] = value

    def __len__(self) -> int:
        return len(self.table)


def _records(events: list[EventT]) -> list[Record]:
    out = []
    for ev in events:
        msg = ev.message
        value = msg.value if isinstance(msg.value, bytes | bytearray) else bytes(msg.value or b"")
        key = msg.key if msg.key is None or isinstance(msg.key, bytes) else bytes(msg.key)
        out.append(Record(msg.topic, msg.partition, msg.offset, key, bytes(value), msg.timestamp))
    return out


def create_app(settings: Settings, partitions: dict[str, int] | None = None) -> faust.App:
    """The faust app of one worker, with its topics, tables, agents and web views.

    ``partitions`` are the output topics' partition counts (:func:`partition_counts`);
    an output goes to its input's partition number only where that partition exists.
    """
    if not settings.broker:
        raise ValueError("the faust worker needs a broker (VIGIL_BROKER or --broker)")
    app = faust.App(
        settings.app_id,
        broker=_broker_urls(settings.broker),
        broker_credentials=_credentials(settings),
        store="memory://",
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        processing_guarantee=settings.processing_guarantee,
        consumer_auto_offset_reset="earliest",
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        datadir=settings.data_dir,
        stream_wait_empty=False,
        # Each commit also writes the state (GapSafeConsumer.commit): this is the
        # checkpoint interval, as for the kafka engine.
        broker_commit_interval=settings.commit_every_s,
        producer_max_request_size=max(settings.max_message_bytes * 2, 2_097_152),
    )
    # Before anything asks for the transport: our consumer's commit never skips an
    # unacknowledged input and repairs a stalled one (stream/faust_commit.py).
    app.transport = GapSafeTransport(app.conf.broker_consumer, app)

    def topic(name: str) -> faust.TopicT:
        return app.topic(
            settings.topic(name),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
        )

    sensors_topic = topic("sensors")
    logs_topic = topic("logs")
    feedback_topic = topic("feedback")
    anomalies_topic = topic("anomalies")
    incidents_topic = topic("incidents")
    shadow_topic = topic("shadow")
    dead_letter_topic = topic("dead_letter")

    def table(name: str) -> TableStore:
        # bytes keys and values use the raw codec: the changelog key is the device name
        # itself, so the partitioner hashes it exactly as it hashed the input key.
        return TableStore(
            app.Table(
                name,
                default=None,
                key_type=bytes,
                value_type=bytes,
                partitions=settings.partitions,
                use_partitioner=True,
            )
        )

    device_table = table("device-state")
    log_table = table("log-state")
    pipeline = Pipeline(settings, device_store=device_table, log_store=log_table)
    app.vigil_pipeline = pipeline  # type: ignore[attr-defined]

    async def publish(result: BatchResult) -> None:
        # Each output goes to its input's partition number: with exactly_once, faust
        # wraps the outputs of a partition in that input partition's transaction.
        # A topic made elsewhere with fewer partitions (say, auto-created with one) gets
        # the key's partition instead: sending to a missing partition crashes the agent.
        def same(partition: int | None, name: str) -> int | None:
            limit = (partitions or {}).get(settings.topic(name), settings.partitions)
            return partition if partition is not None and partition < limit else None

        for anomaly in result.anomalies:
            await anomalies_topic.send(
                key=anomaly.key.encode(),
                value=codecs.encode(anomaly),
                partition=same(pipeline.output_partition(anomaly), "anomalies"),
            )
        for incident in result.incidents:
            await incidents_topic.send(
                key=incident.key.encode(),
                value=codecs.encode(incident),
                partition=same(pipeline.partition_of.get(incident.key), "incidents"),
            )
        for event in result.shadow:
            await shadow_topic.send(
                key=event.key.encode(),
                value=codecs.encode(event),
                partition=same(pipeline.partition_of.get(event.key.split("/")[0]), "shadow"),
            )
        for dl in result.dead_letters:
            key = None if dl.key_b64 is None else base64.b64decode(dl.key_b64)
            await dead_letter_topic.send(
                key=key, value=codecs.encode(dl), partition=same(dl.partition, "dead_letter")
            )

    def completed(records: list[Record]) -> None:
        # Outputs sent: these inputs may be committed (their state is written first, by
        # the commit itself).
        consumer = app.consumer
        if isinstance(consumer, GapSafeConsumer):
            consumer.completed((r.topic, r.partition, r.offset) for r in records)

    def leave(records: list[Record]) -> None:
        # take_events hands over what it buffered before a rebalance, during it (from
        # the revocation until the tables are restored and the partitions sought back to
        # their committed offsets: GapSafeConsumer.settled) or after it. Processed during
        # it, an input would load its key's state from a table being restored, which
        # for a while holds an older record of the key (seen: 1,400 inputs then learned
        # out of order, and alarms that an uninterrupted run does not raise); of a
        # partition no longer assigned, from a table another worker now writes. Left,
        # they are read again from the committed offset by the partition's owner.
        consumer = app.consumer
        if isinstance(consumer, GapSafeConsumer):
            consumer.left((r.topic, r.partition, r.offset) for r in records)
        metrics.LEFT_IN_REBALANCE.inc(len(records))
        log.info("%d inputs handed over during a rebalance: left, to be read again", len(records))

    async def run_batches(
        stream: faust.StreamT, process: Callable[[list[Record]], BatchResult]
    ) -> None:
        # take a batch -> decode, route, detect, decide -> publish -> done; the state
        # goes to the tables at each commit (GapSafeConsumer.commit), before the offsets
        async for events in stream.take_events(  # type: ignore[attr-defined]
            settings.batch_size, within=settings.batch_within_s
        ):
            consumer = app.consumer
            barrier = (
                consumer.batch_lock if isinstance(consumer, GapSafeConsumer) else nullcontext()
            )
            async with barrier:  # no offset commit in the middle of a batch
                records = _records(list(events))
                if isinstance(consumer, GapSafeConsumer) and not consumer.settled():
                    leave(records)
                    continue
                assigned = consumer.assignment()
                gone = {(r.topic, r.partition) for r in records} - {tuple(tp) for tp in assigned}
                if gone:
                    leave([r for r in records if (r.topic, r.partition) in gone])
                    records = [r for r in records if (r.topic, r.partition) not in gone]
                if isinstance(consumer, GapSafeConsumer):
                    # each partition's inputs in offset order: after one faust did not
                    # hand over, they wait for it to be fetched again
                    records = consumer.in_order(records)
                result = process(records)
                await publish(result)
                if not isinstance(consumer, GapSafeConsumer):
                    pipeline.flush()  # a plain consumer's commit does not write the state
                completed(records)

    @app.agent(sensors_topic)
    async def sensor_agent(stream: faust.StreamT) -> None:
        await run_batches(stream, pipeline.process_sensors)

    @app.agent(logs_topic)
    async def log_agent(stream: faust.StreamT) -> None:
        await run_batches(stream, pipeline.process_logs)

    @app.agent(feedback_topic)
    async def feedback_agent(stream: faust.StreamT) -> None:
        await run_batches(stream, pipeline.process_feedback)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app_: faust.App, revoked: set[Any], **kwargs: Any) -> None:
        # Hot state may belong to partitions another worker now owns: drop it and let
        # the tables (restored from the changelog) be the source of truth again.
        log.info("partitions revoked (%d): hot state flushed and dropped", len(revoked))
        consumer = app.consumer
        if isinstance(consumer, GapSafeConsumer):
            consumer.unsettle()
        pipeline.flush()
        # On the broker before the group moves on (faust flushed its producer before
        # this signal): the tables restored after the rebalance, this worker's own
        # included, must hold what it learned.
        await app.producer.flush()
        pipeline.forget()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def on_recovered(app_: faust.App, **kwargs: Any) -> None:
        consumer = app.consumer
        if isinstance(consumer, GapSafeConsumer):
            consumer.on_recovered()

    held: set[tuple[str, int]] = set()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(app_: faust.App, assigned: set[Any], **kwargs: Any) -> None:
        # Partitions kept through the rebalance keep their memory of dead letters (and,
        # with exactly_once, their open transaction); those gone forget it.
        now = {(tp.topic, tp.partition) for tp in assigned}
        pipeline.forget_inputs(held - now)
        consumer = app.consumer
        if isinstance(consumer, GapSafeConsumer):
            consumer.forget_left(TP(t, p) for t, p in held - now)
        held.clear()
        held.update(now)

    @app.page("/metrics")
    async def metrics_view(web: Any, request: Any) -> Any:
        return web.bytes(metrics.generate_latest(), content_type="text/plain; version=0.0.4")

    @app.page("/health")
    async def health_view(web: Any, request: Any) -> Any:
        return web.json(api.health(pipeline))

    @app.page("/ready")
    async def ready_view(web: Any, request: Any) -> Any:
        ready = app.rebalancing is False and app.consumer is not None
        return web.json({"ready": bool(ready)}, status=200 if ready else 503)

    @app.page("/openapi.json")
    async def openapi_view(web: Any, request: Any) -> Any:
        return web.json(api.openapi())

    @app.page("/api/v1/keys/{key}")
    class KeyView(faust.web.View):
        async def get(self, request: Any, key: str) -> Any:
            try:
                return self.json(api.to_jsonable(api.key_state(pipeline, key)))
            except api.ApiError as exc:
                return self.json({"error": str(exc)}, status=exc.status)

    @app.page("/api/v1/commits")
    async def commits_view(web: Any, request: Any) -> Any:
        # Why is the lag not falling? Per input partition: committed, read, acknowledged.
        consumer = app.consumer
        state = consumer.commit_state() if isinstance(consumer, GapSafeConsumer) else []
        return web.json(api.to_jsonable(state))

    @app.page("/api/v1/incidents")
    async def incidents_view(web: Any, request: Any) -> Any:
        return web.json(api.to_jsonable(api.open_incidents(pipeline)))

    @app.page("/api/v1/suppressions")
    class SuppressionsView(faust.web.View):
        async def get(self, request: Any) -> Any:
            return self.json(api.suppressions(pipeline))

        async def post(self, request: Any) -> Any:
            try:
                body = await request.json()
            except ValueError:
                return self.json({"error": "the body must be JSON"}, status=400)
            try:
                return self.json(api.add_suppression(pipeline, body), status=201)
            except api.ApiError as exc:
                return self.json({"error": str(exc)}, status=exc.status)

    @app.page("/api/v1/suppressions/{sup_id}")
    class SuppressionView(faust.web.View):
        async def delete(self, request: Any, sup_id: str) -> Any:
            try:
                return self.json(api.delete_suppression(pipeline, sup_id))
            except api.ApiError as exc:
                return self.json({"error": str(exc)}, status=exc.status)

    inputs = {sensors_topic.get_topic_name(), logs_topic.get_topic_name()}

    @app.timer(interval=5.0)
    async def report_lag() -> None:
        # Lag of this worker's input partitions: end of the log minus what was read.
        consumer = app.consumer
        if consumer is None:
            return
        per_topic = dict.fromkeys(inputs, 0)
        for tp in consumer.assignment():
            if tp.topic not in inputs:
                continue
            high = consumer.highwater(tp)
            read = getattr(consumer, "_read_offset", {}).get(tp)  # no public accessor
            if high is not None:
                per_topic[tp.topic] += max(high - (read + 1 if read is not None else 0), 0)
        for topic_name, lag in per_topic.items():
            metrics.CONSUMER_LAG.labels(topic=topic_name).set(lag)

    return app


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run a faust worker until it is stopped (SIGTERM/SIGINT)."""
    from confluent_kafka import KafkaException

    try:  # a broker we cannot reach or that refuses us: say so and stop
        counts = partition_counts(settings)
    except KafkaException as exc:
        log.error("vigil worker: cannot read the topics of %s: %s", settings.broker, exc)
        raise SystemExit(1) from None
    # Create the topics first, as the kafka engine does: a broker that creates them on
    # first use gives them one partition, and outputs follow their input's partition.
    try:
        create_topics(settings)
        counts = partition_counts(settings)
    except KafkaException as exc:  # e.g. no CREATE permission: use what exists
        log.warning("could not create Vigil's topics, using those that exist: %s", exc)
    for name in ("anomalies", "dead_letter", "incidents", "shadow"):
        n = counts.get(settings.topic(name), settings.partitions)
        if n < settings.partitions:
            log.warning(
                "output topic %s has %d partitions, fewer than %d: events of the others "
                "are partitioned by key",
                settings.topic(name),
                n,
                settings.partitions,
            )
    app = create_app(settings, counts)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()

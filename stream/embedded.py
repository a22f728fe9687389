"""The embedded runner: the pipeline core driven in-process, no broker.

``vigil demo`` without a broker and ``vigil evaluate`` use it: messages go through the
same decode, route, detect and decide code as in the worker, in batches of the same
size, so what is measured here is what runs there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from stream.events import AnomalyEvent, DeadLetter, IncidentEvent
from stream.pipeline import BatchResult, Pipeline, Record

#: A message as the embedded runner takes it: (stream "sensors" or "logs", key, value).
Message = tuple[str, bytes | None, bytes]


@dataclass(slots=True)
class EmbeddedResult:
    """Everything one embedded run produced."""

    anomalies: list[AnomalyEvent] = field(default_factory=list)
    incidents: list[IncidentEvent] = field(default_factory=list)
    shadow: list[AnomalyEvent | IncidentEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    processed: int = 0
    readings: int = 0
    messages: int = 0


def run_embedded(
    pipeline: Pipeline,
    messages: Iterable[Message],
    batch_size: int = 1000,
    on_batch: Callable[[BatchResult, EmbeddedResult], None] | None = None,
) -> EmbeddedResult:
    """Feed ``messages`` through ``pipeline`` in batches; collect what it publishes."""
    total = EmbeddedResult()
    process = {
        "sensors": pipeline.process_sensors,
        "logs": pipeline.process_logs,
        "feedback": pipeline.process_feedback,
    }
    topics = {stream: pipeline.settings.topic(stream) for stream in process}
    batches: dict[str, list[Record]] = {stream: [] for stream in process}
    offsets = dict.fromkeys(process, 0)

    def drain(stream: str) -> None:
        records = batches[stream]
        if not records:
            return
        result = process[stream](records)
        pipeline.flush()
        total.anomalies.extend(result.anomalies)
        total.incidents.extend(result.incidents)
        total.shadow.extend(result.shadow)
        total.dead_letters.extend(result.dead_letters)
        total.processed += result.processed
        total.readings += result.readings
        batches[stream] = []
        if on_batch is not None:
            on_batch(result, total)

    for stream, key, value in messages:
        if stream not in batches:
            raise ValueError(f"unknown stream {stream!r}; expected one of {sorted(process)}")
        batches[stream].append(Record(topics[stream], 0, offsets[stream], key, value))
        offsets[stream] += 1
        total.messages += 1
        if len(batches[stream]) >= batch_size:
            drain(stream)
    for stream in process:
        drain(stream)
    return total

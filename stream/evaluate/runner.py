"""Feed a benchmark through the pipeline core, exactly as the worker would run it.

Every benchmark harness builds JSON-encoded sensor messages (one reading, or one
batched row per tick) and hands them to :func:`stream.embedded.run_embedded`, so the
scores measured are those of the shipped decode, route, detect and decide code. The
per-point scores come from the pipeline's ``score_sink``; the decisions are its
anomaly events.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from stream.embedded import EmbeddedResult, Message, run_embedded
from stream.events import AnomalyEvent, IncidentEvent
from stream.pipeline import BatchResult, Pipeline
from stream.settings import Settings

#: Called after every batch with the number of messages it held.
Advance = Callable[[int], None]


def default_data_dir(name: str) -> Path:
    """``$VIGIL_DATASETS/<name>``, else ``../shared/datasets/<name>`` beside the repo."""
    env = os.environ.get("VIGIL_DATASETS")
    if env:
        return Path(env) / name
    return Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / name


def reading_message(device: str, sensor: str, ts: float, value: float) -> Message:
    """One single-reading message on the sensors stream, keyed by device."""
    body = {"device": device, "sensor": sensor, "ts": ts, "value": value}
    return ("sensors", device.encode(), orjson.dumps(body))


def row_message(device: str, ts: float, values: dict[str, float]) -> Message:
    """One batched message holding a whole row (every sensor of one tick)."""
    body = {"device": device, "ts": ts, "values": values}
    return ("sensors", device.encode(), orjson.dumps(body))


@dataclass(slots=True)
class Scored:
    """What a benchmark run produced: per-point scores and the published events.

    ``scores[device][sensor]`` lists ``(ts, score)`` in arrival order.
    """

    scores: dict[str, dict[str, list[tuple[float, float]]]] = field(default_factory=dict)
    anomalies: list[AnomalyEvent] = field(default_factory=list)
    incidents: list[IncidentEvent] = field(default_factory=list)
    dead_letters: int = 0
    messages: int = 0
    seconds: float = 0.0


def run_messages(
    settings: Settings,
    messages: Iterable[Message],
    advance: Advance | None = None,
) -> Scored:
    """Run ``messages`` through a fresh :class:`Pipeline`; collect scores and events.

    Parameters
    ----------
    settings
        The configuration under test (detector, warm-up, thresholds, batch size).
    messages
        Messages in stream order; nothing later is visible to the pipeline earlier.
    advance
        Progress callback, called with the number of messages of each batch.

    Returns
    -------
    Scored
        Every score the pipeline computed and every anomaly event it published.
    """
    import time

    out = Scored()

    def sink(device: str, sensor: str, ts: float, _value: float, score: float) -> None:
        out.scores.setdefault(device, {}).setdefault(sensor, []).append((ts, score))

    # The clock only guards against far-future timestamps; benchmarks are in the past.
    pipeline = Pipeline(settings, score_sink=sink)

    def on_batch(batch: BatchResult, _total: EmbeddedResult) -> None:
        if advance is not None:
            advance(batch.processed + len(batch.dead_letters))

    started = time.perf_counter()
    result = run_embedded(pipeline, messages, settings.batch_size, on_batch)
    out.seconds = time.perf_counter() - started
    out.anomalies = result.anomalies
    out.incidents = result.incidents
    out.dead_letters = len(result.dead_letters)
    out.messages = result.messages
    return out


def chain(*parts: Iterable[Message]) -> Iterator[Message]:
    """Messages of several files one after the other (each file is its own device)."""
    for part in parts:
        yield from part

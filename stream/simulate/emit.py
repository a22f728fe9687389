"""Getting simulated data out: JSON-lines files with ground truth, or a Kafka producer."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from stream.produce import INPUT_PRODUCER_CONFIG, produce_all
from stream.produce import DeliveryError as DeliveryError  # what send_to_kafka raises
from stream.simulate.oplogs import LogRun
from stream.simulate.plant import PlantRun

#: One message to send: ``(topic, key, value)``.
Message = tuple[str, str, dict[str, Any]]


def write_files(
    run: PlantRun, log_run: LogRun | None, out_dir: Path, batched: bool = False
) -> dict[str, Path]:
    """Write a plant run (and optionally a log run) as JSON lines plus ground truth.

    Parameters
    ----------
    run : PlantRun
        Sensor data; written as ``readings.jsonl`` (one reading a line) or, if
        ``batched``, ``batches.jsonl`` (one device and tick a line).
    log_run : LogRun, optional
        Log events, written as ``logs.jsonl``.
    out_dir : pathlib.Path
        Directory, created if missing.
    batched : bool
        Write batches instead of single readings.

    Returns
    -------
    dict of str to pathlib.Path
        Keys ``"readings"`` or ``"batches"``, ``"logs"`` (with a log run) and ``"truth"``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    name = "batches" if batched else "readings"
    paths[name] = _write_jsonl(
        out_dir / f"{name}.jsonl", run.batches() if batched else run.readings()
    )
    if log_run is not None:
        paths["logs"] = _write_jsonl(out_dir / "logs.jsonl", log_run.events)
    truth = {
        "plant": run.to_truth_json(),
        "logs": None if log_run is None else log_run.to_truth_json(),
    }
    paths["truth"] = out_dir / "truth.json"
    paths["truth"].write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2))
    return paths


def _write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> Path:
    """Write ``records`` one JSON object a line, in buffered chunks."""
    nl = orjson.OPT_APPEND_NEWLINE
    with path.open("wb") as fh:
        chunk: list[bytes] = []
        for rec in records:
            chunk.append(orjson.dumps(rec, option=nl))
            if len(chunk) >= 10_000:
                fh.write(b"".join(chunk))
                chunk.clear()
        fh.write(b"".join(chunk))
    return path


def plant_messages(run: PlantRun, topic: str, batched: bool = False) -> Iterator[Message]:
    """Messages of a plant run, keyed by device (so a device stays on one partition)."""
    for rec in run.batches() if batched else run.readings():
        yield topic, rec["device"], rec


def log_messages(log_run: LogRun, topic: str) -> Iterator[Message]:
    """Messages of a log run, keyed by user."""
    for ev in log_run.events:
        yield topic, ev["user"], ev


def make_producer(bootstrap: str, extra: Mapping[str, Any] | None = None) -> Any:
    """A ``confluent_kafka.Producer`` tuned for many small messages.

    Uses lz4 compression when this librdkafka build supports it, else none.
    """
    from confluent_kafka import KafkaException, Producer

    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        **INPUT_PRODUCER_CONFIG,
        "compression.type": "lz4",
        **(extra or {}),
    }
    try:
        return Producer(conf)
    except KafkaException:
        # Codec not built in: fall back rather than fail, the data is the point.
        return Producer({**conf, "compression.type": "none"})


def send_to_kafka(
    messages: Iterable[Message],
    bootstrap: str,
    rate: float | None = None,
    *,
    producer_config: Mapping[str, Any] | None = None,
    flush_timeout: float = 30.0,
    producer_factory: Callable[[str, Mapping[str, Any] | None], Any] = make_producer,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Produce ``messages`` to Kafka, optionally at a fixed rate.

    Parameters
    ----------
    messages : iterable of (topic, key, value)
        Values are dicts, serialised with orjson; keys are UTF-8 encoded.
    bootstrap : str
        ``bootstrap.servers``.
    rate : float, optional
        Messages per second; ``None`` sends as fast as possible. The sender sleeps
        whenever it is ahead of the schedule ``t0 + i / rate``.
    producer_config : mapping, optional
        Extra librdkafka settings.
    flush_timeout : float
        Seconds to wait for outstanding deliveries at the end.
    producer_factory, clock, sleep
        Injection points for tests.

    Returns
    -------
    int
        Number of messages delivered.

    Raises
    ------
    DeliveryError
        If any delivery failed or messages remained queued after the flush.
    """
    if rate is not None and rate <= 0:
        raise ValueError("rate must be positive")
    producer = producer_factory(bootstrap, producer_config)
    records = ((topic, key.encode(), orjson.dumps(value)) for topic, key, value in messages)
    return produce_all(
        producer,
        records,
        schedule=None if rate is None else (lambda i: i / rate),
        flush_timeout=flush_timeout,
        clock=clock,
        sleep=sleep,
    )

"""``vigil replay``: files (NAB, SKAB, JSON lines, raw logs) into Vigil's input topics.

The readers here turn a file into :class:`Item` objects, one per message, each with the
stream it belongs to (``sensors`` or ``logs``), its key (device, user or host) and the
event time used to pace a replay. ``vigil report`` reads its input with the same readers.

Formats (``--format auto`` picks one from the file):

* ``nab``: ``timestamp,value`` CSV; one reading of sensor ``value`` a row, for the
  device named by ``--device`` (default: the file stem);
* ``skab``: ``;``-separated CSV with a ``datetime`` column and one column per sensor
  (``anomaly`` and ``changepoint`` are labels and are skipped); one batched message
  (``{"device", "ts", "values"}``) a row;
* ``jsonl``: what ``vigil simulate`` writes: single readings, batches or log events, one
  JSON object a line;
* ``log``: raw log lines (syslog, auth.log, shell records), one message a line, keyed by
  the host (else the user) :func:`stream.logparse.parse_line` finds, else by the file
  stem. Lines that do not parse are still sent: the worker dead-letters them.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from stream.logparse import LogParseError, parse_line
from stream.produce import INPUT_PRODUCER_CONFIG, produce_all
from stream.settings import Settings

Stream = Literal["sensors", "logs"]
FORMATS = ("auto", "jsonl", "nab", "skab", "log")
#: SKAB columns that are labels, not sensors.
SKAB_LABELS = ("anomaly", "changepoint")


class ReplayError(ValueError):
    """The input file cannot be read as the format asked for."""


@dataclass(frozen=True, slots=True)
class Item:
    """One message to send.

    Attributes
    ----------
    stream : {"sensors", "logs"}
        The input topic it goes to.
    key : str
        The message key: device for sensors, user or host for logs.
    value : bytes
        The message payload.
    ts : float or None
        Event time (epoch seconds) for pacing, when known.
    payload : dict or None
        The decoded JSON payload of sensor messages (``None`` for raw log lines).
    """

    stream: Stream
    key: str
    value: bytes
    ts: float | None
    payload: dict[str, Any] | None = None


@dataclass(slots=True)
class ReadResult:
    """The items of a file, the format it was read as and how many rows were skipped."""

    items: list[Item]
    format: str
    skipped: int = 0


def parse_time(text: str) -> float:
    """Epoch seconds from an ISO-8601 time (naive means UTC) or a number.

    Parameters
    ----------
    text : str
        ``2014-04-10 00:00:00``, ``2020-03-09T10:14:33+01:00``, ``1700000000`` or
        ``1700000000000`` (milliseconds).

    Returns
    -------
    float
        Epoch seconds.

    Raises
    ------
    ValueError
        If ``text`` is neither.

    Examples
    --------
    >>> parse_time("2024-01-01 00:00:00")
    1704067200.0
    >>> parse_time("1704067200000")
    1704067200.0
    """
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    if not math.isfinite(number):
        raise ValueError(f"time {text!r} is not finite")
    return number / 1000.0 if number > 1e11 else number


def sensor_name(column: str) -> str:
    """A column header as a sensor name: non-alphanumerics become ``_`` (as in evaluation).

    Examples
    --------
    >>> sensor_name("Volume Flow RateRMS")
    'Volume_Flow_RateRMS'
    """
    return "".join(ch if ch.isalnum() else "_" for ch in column.strip())


def detect_format(path: Path) -> str:
    """The format of ``path`` from its suffix and first line.

    ``.jsonl``/``.ndjson``/``.json`` is ``jsonl``; a CSV whose header has ``;`` and a
    ``datetime`` column is ``skab``; a CSV starting ``timestamp`` is ``nab``; anything
    else is ``log``.
    """
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    with path.open(encoding="utf-8", errors="replace") as fh:
        first = fh.readline().strip().lstrip("\ufeff")
    if suffix == ".csv" or first.lower().startswith(("timestamp", "datetime")):
        header = [c.strip().lower() for c in first.split(";" if ";" in first else ",")]
        if "datetime" in header and ";" in first:
            return "skab"
        if header[:1] == ["timestamp"] and "value" in header:
            return "nab"
        raise ReplayError(
            f"{path}: a CSV that is neither NAB (timestamp,value) nor SKAB "
            f"(';'-separated with a datetime column); header {first[:80]!r}"
        )
    if first.startswith("{"):
        return "jsonl"
    return "log"


def _finite(text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _sensor_item(payload: dict[str, Any], ts: float) -> Item:
    return Item("sensors", str(payload["device"]), orjson.dumps(payload), ts, payload)


def read_nab(path: Path, device: str) -> ReadResult:
    """Readings of sensor ``value`` of ``device`` from a NAB ``timestamp,value`` CSV."""
    items: list[Item] = []
    skipped = 0
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"timestamp", "value"} <= set(reader.fieldnames):
            raise ReplayError(f"{path}: NAB files need a 'timestamp,value' header")
        for row in reader:
            value = _finite(row.get("value"))
            try:
                ts = parse_time(row.get("timestamp") or "")
            except ValueError:
                ts = None
            if value is None or ts is None:
                skipped += 1
                continue
            payload = {"device": device, "sensor": "value", "ts": ts, "value": value}
            items.append(_sensor_item(payload, ts))
    return ReadResult(items, "nab", skipped)


def read_skab(path: Path, device: str) -> ReadResult:
    """One batched message a row of a SKAB file (label columns skipped)."""
    items: list[Item] = []
    skipped = 0
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter=";")
        fields = reader.fieldnames or []
        if "datetime" not in fields:
            raise ReplayError(f"{path}: SKAB files need a 'datetime' column")
        columns = [c for c in fields if c != "datetime" and c.strip().lower() not in SKAB_LABELS]
        names = [sensor_name(c) for c in columns]
        for row in reader:
            try:
                ts = parse_time(row.get("datetime") or "")
            except ValueError:
                skipped += 1
                continue
            values = {
                n: v
                for n, c in zip(names, columns, strict=True)
                if (v := _finite(row.get(c))) is not None
            }
            if not values:
                skipped += 1
                continue
            items.append(_sensor_item({"device": device, "ts": ts, "values": values}, ts))
    return ReadResult(items, "skab", skipped)


def _json_item(obj: Any) -> Item | None:
    """A sensors or logs item from one decoded JSON line, or ``None`` if it is neither."""
    if not isinstance(obj, dict):
        return None
    ts_raw = obj.get("ts")
    ts = float(ts_raw) if isinstance(ts_raw, int | float) else None
    if ts is None and isinstance(obj.get("ticks"), list) and obj["ticks"]:
        first = obj["ticks"][0]
        if isinstance(first, dict) and isinstance(first.get("ts"), int | float):
            ts = float(first["ts"])
    if ts is not None and ts > 1e11:
        ts /= 1000.0
    device = obj.get("device")
    if isinstance(device, str) and ("value" in obj or "values" in obj or "ticks" in obj):
        return Item("sensors", device, orjson.dumps(obj), ts, obj)
    if "message" in obj or "msg" in obj:
        key = obj.get("user") or obj.get("host")
        if isinstance(key, str) and key:
            return Item("logs", key, orjson.dumps(obj), ts, obj)
    return None


def read_jsonl(path: Path) -> ReadResult:
    """Readings, batches and log events as ``vigil simulate`` writes them."""
    items: list[Item] = []
    skipped = 0
    with path.open("rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                item = _json_item(orjson.loads(line))
            except orjson.JSONDecodeError:
                item = None
            if item is None:
                skipped += 1
            else:
                items.append(item)
    return ReadResult(items, "jsonl", skipped)


def read_log(path: Path) -> ReadResult:
    """One item a non-empty line, keyed by host, else user, else the file stem."""
    items: list[Item] = []
    last_ts: float | None = None
    with path.open(encoding="utf-8", errors="surrogateescape") as fh:
        for raw in fh:
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            key, ts = path.stem, last_ts
            try:
                event = parse_line(line)
            except LogParseError:
                pass  # sent anyway: the worker dead-letters it with the reason
            else:
                key = event.host or event.user or path.stem
                ts = event.ts if event.ts > 0 else last_ts
            last_ts = ts
            value = line.encode("utf-8", errors="surrogateescape")
            items.append(Item("logs", key, value, ts))
    return ReadResult(items, "log", 0)


def read_file(path: Path, fmt: str = "auto", device: str | None = None) -> ReadResult:
    """Read ``path`` as ``fmt`` (``auto`` detects it); ``device`` names CSV devices.

    Parameters
    ----------
    path : pathlib.Path
        The input file.
    fmt : str
        One of :data:`FORMATS`.
    device : str, optional
        Device of NAB/SKAB data (default: the file stem). JSON lines name their own.

    Returns
    -------
    ReadResult
        The items in file order, the format used and the number of skipped rows.
    """
    path = Path(path)
    if not path.is_file():
        raise ReplayError(f"no such file: {path}")
    if fmt not in FORMATS:
        raise ReplayError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    if fmt == "auto":
        fmt = detect_format(path)
    name = device or path.stem
    if fmt == "nab":
        return read_nab(path, name)
    if fmt == "skab":
        return read_skab(path, name)
    if fmt == "jsonl":
        return read_jsonl(path)
    return read_log(path)


def schedule(
    items: Sequence[Item], speed: float | None = None, rate: float | None = None
) -> list[float] | None:
    """Send offsets (seconds from the start) of each item, or ``None`` for no pacing.

    Parameters
    ----------
    items : sequence of Item
        The messages, in sending order.
    speed : float, optional
        Replay at ``speed`` times real time from the items' event times (an item
        without one keeps the previous offset; time going backwards does too).
    rate : float, optional
        ``rate`` messages per second.

    Returns
    -------
    list of float or None
        Non-decreasing offsets, one per item.

    Examples
    --------
    >>> its = [Item("sensors", "d", b"", t) for t in (100.0, 101.0, 103.0)]
    >>> schedule(its, speed=2.0)
    [0.0, 0.5, 1.5]
    >>> schedule(its, rate=10.0)
    [0.0, 0.1, 0.2]
    """
    if speed is not None and rate is not None:
        raise ValueError("give speed or rate, not both")
    if rate is not None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        return [i / rate for i in range(len(items))]
    if speed is None:
        return None
    if speed <= 0:
        raise ValueError("speed must be positive")
    first = next((it.ts for it in items if it.ts is not None), None)
    offsets: list[float] = []
    last = 0.0
    for it in items:
        if it.ts is not None and first is not None:
            last = max(last, (it.ts - first) / speed)
        offsets.append(last)
    return offsets


def send(
    items: Sequence[Item],
    settings: Settings,
    offsets: Sequence[float] | None = None,
    on_sent: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    flush_timeout: float = 60.0,
) -> int:
    """Produce ``items`` to the input topics of ``settings``; returns how many were delivered.

    The producer hashes keys with ``murmur2_random`` (as Kafka's Java clients do), so a
    device or user always lands on the partition a Java producer would choose.

    Raises
    ------
    RuntimeError
        When deliveries fail or messages are still queued after ``flush_timeout``.
    """
    from confluent_kafka import Producer

    from stream.topics import kafka_config

    conf = {**kafka_config(settings), **INPUT_PRODUCER_CONFIG}
    topics = {"sensors": settings.topic("sensors"), "logs": settings.topic("logs")}
    records = ((topics[it.stream], it.key.encode(), it.value) for it in items)
    return produce_all(
        Producer(conf),
        records,
        schedule=None if offsets is None else offsets.__getitem__,
        on_sent=on_sent,
        flush_timeout=flush_timeout,
        clock=clock,
        sleep=sleep,
    )


def cmd_replay(args: argparse.Namespace) -> int:
    """``vigil replay``: read a file and produce it to the input topics."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    settings = Settings.load(args.config, broker=args.broker)
    if not settings.broker:
        print("vigil replay: no broker configured (set VIGIL_BROKER or --broker)", file=sys.stderr)
        return 2
    try:
        result = read_file(Path(args.file), args.format, args.device)
        offsets = schedule(result.items, speed=args.speed, rate=args.rate)
    except (ReplayError, ValueError, OSError) as exc:
        print(f"vigil replay: {exc}", file=sys.stderr)
        return 2
    console = Console(stderr=True)
    if not result.items:
        print(f"vigil replay: nothing to send in {args.file}", file=sys.stderr)
        return 1
    from stream.topics import create_topics

    create_topics(settings)
    with Progress(
        TextColumn("[bold]replay[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(
            f"{Path(args.file).name} ({result.format})", total=len(result.items)
        )
        sent = send(
            result.items,
            settings,
            offsets,
            on_sent=lambda n: progress.update(task, completed=n),
        )
    by_stream = {s: sum(1 for it in result.items if it.stream == s) for s in ("sensors", "logs")}
    parts = [f"{n} to {settings.topic(s)}" for s, n in by_stream.items() if n]
    skipped = f" (skipped {result.skipped} unreadable rows)" if result.skipped else ""
    print(f"sent {sent} messages ({', '.join(parts)}) to {settings.broker}{skipped}")
    return 0


def add_parser(sub: Any) -> None:
    """Add ``vigil replay`` to the CLI's subparsers."""
    p = sub.add_parser("replay", help="replay a NAB/SKAB/JSONL/log file into the input topics")
    p.add_argument("file", help="input file")
    p.add_argument("--broker", help="Kafka bootstrap servers (default: $VIGIL_BROKER)")
    p.add_argument("--config", help="YAML or TOML settings file")
    p.add_argument("--format", choices=FORMATS, default="auto")
    p.add_argument("--device", default=None, help="device of NAB/SKAB data (default: file stem)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed", type=float, default=None, help="X times real time, from the data's timestamps"
    )
    pace.add_argument("--rate", type=float, default=None, help="messages per second")
    p.set_defaults(func=cmd_replay)

"""``vigil tail``: follow the anomalies topic and print one coloured line per event.

The consumer joins a fresh consumer group each run (so it never moves anyone else's
offsets) and starts at the end of the topic unless ``--from-beginning``. ``--max`` and
``--timeout`` make it stop on its own, for scripts and tests; ``--json`` prints the raw
events, one JSON object a line (``vigil report --anomalies`` reads that).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.text import Text

from stream.codecs import decode_anomaly, encode
from stream.events import AnomalyEvent
from stream.settings import Settings

SEVERITY_STYLE = {"warning": "bold yellow", "critical": "bold red"}
KIND_STYLE = {"sensor": "cyan", "log": "magenta", "causality": "blue"}
_RANK = {"warning": 1, "critical": 2}


def matches(event: AnomalyEvent, kind: str | None = None, severity: str | None = None) -> bool:
    """Whether ``event`` passes the filters.

    Parameters
    ----------
    event : AnomalyEvent
        The event.
    kind : str, optional
        Keep only this kind (``sensor``, ``log``, ``causality``).
    severity : str, optional
        Keep only events at least this severe (``critical`` keeps criticals only).
    """
    if kind is not None and event.kind != kind:
        return False
    return severity is None or _RANK.get(event.severity, 0) >= _RANK[severity]


def render(event: AnomalyEvent) -> Text:
    """One line for ``event``: time, severity, kind, key, detector, score and reason.

    Examples
    --------
    >>> from stream.events import AnomalyEvent
    >>> e = AnomalyEvent(id="x", kind="sensor", key="pump-1/flow", detector="forecast",
    ...                  event_ts=0.0, detected_ts=0.0, score=0.99, threshold=0.9,
    ...                  severity="critical", model_version="m", reason="flow spiked")
    >>> render(e).plain
    '1970-01-01 00:00:00  CRITICAL  sensor     pump-1/flow  forecast  0.990000  flow spiked'
    """
    when = datetime.fromtimestamp(event.event_ts, UTC).strftime("%Y-%m-%d %H:%M:%S")
    line = Text()
    line.append(when, style="dim")
    line.append("  ")
    line.append(f"{event.severity.upper():<8}", style=SEVERITY_STYLE.get(event.severity, ""))
    line.append("  ")
    line.append(f"{event.kind:<9}", style=KIND_STYLE.get(event.kind, ""))
    line.append("  ")
    line.append(event.key, style="bold")
    line.append("  ")
    line.append(event.detector, style="green")
    line.append("  ")
    line.append(f"{event.score:.6f}")
    if event.reason:
        line.append("  ")
        line.append(event.reason, style="italic")
    return line


def consumer_config(settings: Settings, from_beginning: bool) -> dict[str, Any]:
    """confluent-kafka consumer settings: a fresh group, no commits, latest or earliest."""
    from stream.topics import kafka_config

    return {
        **kafka_config(settings),
        "group.id": f"vigil-tail-{uuid.uuid4().hex[:10]}",
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "enable.auto.commit": False,
    }


def follow(
    settings: Settings,
    on_event: Callable[[AnomalyEvent, bytes], None],
    *,
    from_beginning: bool = False,
    kind: str | None = None,
    severity: str | None = None,
    max_events: int | None = None,
    timeout: float | None = None,
    on_bad: Callable[[bytes, Exception], None] | None = None,
) -> int:
    """Consume the anomalies topic, calling ``on_event`` for each event passing the filters.

    Stops after ``max_events`` events or ``timeout`` seconds (whichever first), or never.

    Returns
    -------
    int
        Number of events passed to ``on_event``.
    """
    from confluent_kafka import Consumer, KafkaError

    consumer = Consumer(consumer_config(settings, from_beginning))
    consumer.subscribe([settings.topic("anomalies")])
    deadline = None if timeout is None else time.monotonic() + timeout
    shown = 0
    try:
        while max_events is None or shown < max_events:
            wait = 0.5
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    break
            msg = consumer.poll(wait)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise RuntimeError(f"Kafka error: {err}")
                if err.code() not in (
                    KafkaError._PARTITION_EOF,
                    KafkaError.UNKNOWN_TOPIC_OR_PART,
                ):
                    print(f"vigil tail: {err}", file=sys.stderr)
                continue
            raw = msg.value()
            if raw is None:
                continue
            try:
                event = decode_anomaly(raw)
            except Exception as exc:  # a foreign message must not stop the tail
                if on_bad is not None:
                    on_bad(raw, exc)
                continue
            if matches(event, kind, severity):
                on_event(event, raw)
                shown += 1
    finally:
        consumer.close()
    return shown


def cmd_tail(args: argparse.Namespace) -> int:
    """``vigil tail``: print anomalies as they arrive."""
    settings = Settings.load(args.config, broker=args.broker)
    if not settings.broker:
        print("vigil tail: no broker configured (set VIGIL_BROKER or --broker)", file=sys.stderr)
        return 2
    console = Console(highlight=False)
    errors = Console(stderr=True, highlight=False)

    def show(event: AnomalyEvent, _raw: bytes) -> None:
        if args.json:
            sys.stdout.write(encode(event).decode() + "\n")
            sys.stdout.flush()
        else:
            console.print(render(event), soft_wrap=True)

    def bad(raw: bytes, exc: Exception) -> None:
        errors.print(f"[dim]skipped a message that is not an anomaly event: {exc}[/]")

    if not args.json:
        where = "the beginning" if args.from_beginning else "now"
        errors.print(
            f"[dim]following {settings.topic('anomalies')} on {settings.broker} from {where}[/]"
        )
    shown = follow(
        settings,
        show,
        from_beginning=args.from_beginning,
        kind=args.kind,
        severity=args.severity,
        max_events=args.max,
        timeout=args.timeout,
        on_bad=bad,
    )
    if not args.json:
        errors.print(f"[dim]{shown} anomalies shown[/]")
    return 0


def add_parser(sub: Any) -> None:
    """Add ``vigil tail`` to the CLI's subparsers."""
    p = sub.add_parser("tail", help="follow the anomalies topic")
    p.add_argument("--broker", help="Kafka bootstrap servers (default: $VIGIL_BROKER)")
    p.add_argument("--config", help="YAML or TOML settings file")
    p.add_argument("--from-beginning", action="store_true", help="start at the oldest event")
    p.add_argument("--kind", choices=("sensor", "log", "causality"), default=None)
    p.add_argument(
        "--severity",
        choices=("warning", "critical"),
        default=None,
        help="minimum severity (critical shows criticals only)",
    )
    p.add_argument("--max", type=int, default=None, help="stop after N events")
    p.add_argument("--timeout", type=float, default=None, help="stop after S seconds")
    p.add_argument("--json", action="store_true", help="print raw events as JSON lines")
    p.set_defaults(func=cmd_tail)

"""``vigil tail``: rendering, filters, and following a real anomalies topic."""

from __future__ import annotations

import time
import uuid

import pytest

from stream.cli import main
from stream.codecs import encode
from stream.events import AnomalyEvent
from stream.settings import Settings
from stream.tools.tail import matches, render


def event(key: str, severity: str = "warning", kind: str = "sensor") -> AnomalyEvent:
    return AnomalyEvent(
        id=uuid.uuid4().hex[:24],
        kind=kind,  # type: ignore[arg-type]
        key=key,
        detector="forecast",
        event_ts=1_704_067_200.0,
        detected_ts=1_704_067_201.0,
        score=0.999,
        threshold=0.99,
        severity=severity,  # type: ignore[arg-type]
        model_version="forecast:1",
        reason=f"{key} jumped",
    )


def test_render_has_every_field() -> None:
    line = render(event("pump-7/flow", "critical"))
    assert line.plain.split() == [
        "2024-01-01",
        "00:00:00",
        "CRITICAL",
        "sensor",
        "pump-7/flow",
        "forecast",
        "0.999000",
        "pump-7/flow",
        "jumped",
    ]
    # Severity is coloured: the CRITICAL span carries the red style.
    styles = {line.plain[s.start : s.end]: str(s.style) for s in line.spans}
    assert "red" in styles["CRITICAL"]


def test_filters() -> None:
    w, c = event("a"), event("b", "critical", "log")
    assert matches(w) and matches(c)
    assert not matches(w, severity="critical") and matches(c, severity="critical")
    assert matches(w, severity="warning") and matches(c, severity="warning")
    assert matches(c, kind="log") and not matches(w, kind="log")


def test_tail_without_broker_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("VIGIL_BROKER", raising=False)
    assert main(["tail", "--max", "1", "--timeout", "1"]) == 2
    assert "no broker configured" in capsys.readouterr().err


@pytest.mark.kafka
def test_tail_prints_events_from_the_beginning(
    kafka_broker: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from confluent_kafka import Producer

    monkeypatch.setenv("VIGIL_TOPIC_PREFIX", f"test-tail-{uuid.uuid4().hex[:8]}.")
    settings = Settings.load(broker=kafka_broker)
    topic = settings.topic("anomalies")
    producer = Producer({"bootstrap.servers": kafka_broker})
    first, second = event("pump-001/flow", "critical"), event("alice", kind="log")
    producer.produce(topic, b"not an anomaly", b"junk")
    for e in (first, second):
        producer.produce(topic, encode(e), e.key.encode())
    assert producer.flush(30) == 0

    t0 = time.monotonic()
    argv = ["tail", "--broker", kafka_broker, "--from-beginning", "--max", "2", "--timeout", "20"]
    assert main(argv) == 0
    assert time.monotonic() - t0 < 20  # stopped by --max, not by the timeout
    captured = capsys.readouterr()
    lines = [ln for ln in captured.out.splitlines() if ln.strip()]
    assert len(lines) == 2
    assert "pump-001/flow" in captured.out and "alice" in captured.out
    assert "CRITICAL" in captured.out and "WARNING" in captured.out
    assert "not an anomaly event" in captured.err  # the junk message was skipped, said so

    # Filters apply before --max: only the log event, then the timeout ends the tail.
    assert main([*argv[:-4], "--kind", "log", "--json", "--timeout", "8"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and '"key":"alice"' in out[0]

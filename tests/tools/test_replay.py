"""``vigil replay``: the file readers, pacing, and a replay into a real broker."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import orjson
import pytest

from stream.cli import main
from stream.settings import Settings
from stream.simulate.emit import write_files
from stream.simulate.oplogs import simulate_oplogs
from stream.simulate.plant import Plant, PlantConfig
from stream.tools.replay import (
    Item,
    ReplayError,
    detect_format,
    read_file,
    schedule,
)

SYSLOG = (
    "Mar  3 04:05:06 bastion-01 sshd[811]: Failed password for root from 192.0.2.7 port 51122 ssh2"
)


def write_nab(path: Path, n: int, bad_rows: tuple[int, ...] = ()) -> Path:
    rows = []
    for i in range(n):
        value = "" if i in bad_rows else f"{i * 1.5}"
        rows.append(f"2024-01-01 00:00:{i:02d},{value}")
    path.write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    return path


def write_log(path: Path) -> tuple[Path, list[str]]:
    lines = [
        SYSLOG,
        "Mar  3 04:05:07 web-01 sshd[812]: Accepted password for alice from 192.0.2.8 port 5 ssh2",
        "this line is in no known format",
        "user=bob cmd=ls -la",
    ]
    path.write_text("\n".join(lines) + "\n\n")
    return path, lines


# -- readers ---------------------------------------------------------------------------
def test_nab_reader_names_device_and_skips_bad_rows(tmp_path: Path) -> None:
    path = write_nab(tmp_path / "machine_temp.csv", 10, bad_rows=(3,))
    res = read_file(path)
    assert res.format == "nab" and res.skipped == 1 and len(res.items) == 9
    first = res.items[0]
    assert first.stream == "sensors" and first.key == "machine_temp"
    assert orjson.loads(first.value) == {
        "device": "machine_temp",
        "sensor": "value",
        "ts": 1_704_067_200.0,
        "value": 0.0,
    }
    assert read_file(path, "nab", device="m7").items[0].key == "m7"


def test_skab_reader_batches_rows_without_labels(tmp_path: Path) -> None:
    path = tmp_path / "1.csv"
    path.write_text(
        "datetime;Accelerometer1RMS;Volume Flow RateRMS;anomaly;changepoint\n"
        "2020-03-09 10:14:33;0.02;32.0;0.0;0.0\n"
        "2020-03-09 10:14:34;0.03;;1.0;0.0\n"
    )
    res = read_file(path, device="valve1")
    assert res.format == "skab" and len(res.items) == 2
    assert [orjson.loads(it.value) for it in res.items] == [
        {
            "device": "valve1",
            "ts": 1583748873.0,
            "values": {"Accelerometer1RMS": 0.02, "Volume_Flow_RateRMS": 32.0},
        },
        {"device": "valve1", "ts": 1583748874.0, "values": {"Accelerometer1RMS": 0.03}},
    ]


def test_skab_reader_on_the_real_files(datasets_dir: Path) -> None:
    path = datasets_dir / "skab" / "valve1" / "0.csv"
    res = read_file(path)
    payload = orjson.loads(res.items[0].value)
    assert res.format == "skab" and res.skipped == 0 and res.items[0].key == "0"
    assert "anomaly" not in payload["values"] and "changepoint" not in payload["values"]
    assert len(payload["values"]) == 8


def test_jsonl_reader_reads_what_simulate_writes(tmp_path: Path) -> None:
    run = Plant(PlantConfig(n_devices=2, seed=1)).simulate(5)
    logs = simulate_oplogs(n_users=2, n_events=6, seed=1, faults=0)
    single = write_files(run, logs, tmp_path / "single")
    batched = write_files(run, None, tmp_path / "batched", batched=True)
    readings = read_file(single["readings"])
    assert readings.format == "jsonl" and len(readings.items) == 2 * 5 * len(run.sensors)
    assert {it.key for it in readings.items} == {"pump-000", "pump-001"}
    batches = read_file(batched["batches"])
    assert len(batches.items) == 2 * 5 and all(it.stream == "sensors" for it in batches.items)
    events = read_file(single["logs"])
    assert len(events.items) == len(logs.events)
    assert [it.key for it in events.items] == [ev["user"] for ev in logs.events]
    assert all(it.stream == "logs" for it in events.items)


def test_log_reader_keys_by_host_user_or_stem(tmp_path: Path) -> None:
    path, lines = write_log(tmp_path / "auth.log")
    res = read_file(path)
    assert res.format == "log"
    assert [it.key for it in res.items] == ["bastion-01", "web-01", "auth", "bob"]
    assert [it.value.decode() for it in res.items] == lines
    assert all(it.stream == "logs" for it in res.items)


def test_format_detection_and_errors(tmp_path: Path) -> None:
    odd = tmp_path / "odd.csv"
    odd.write_text("a,b\n1,2\n")
    with pytest.raises(ReplayError, match="neither NAB"):
        detect_format(odd)
    with pytest.raises(ReplayError, match="no such file"):
        read_file(tmp_path / "missing.csv")


def test_schedule_paces_by_speed_or_rate() -> None:
    items = [Item("sensors", "d", b"", t) for t in (10.0, 12.0, None, 11.0, 16.0)]
    assert schedule(items) is None
    # No time or time going backwards keeps the previous offset.
    assert schedule(items, speed=2.0) == [0.0, 1.0, 1.0, 1.0, 3.0]
    assert schedule(items, rate=4.0) == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError):
        schedule(items, rate=0.0)
    with pytest.raises(ValueError):
        schedule(items, speed=1.0, rate=1.0)


def test_replay_without_broker_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("VIGIL_BROKER", raising=False)
    path = write_nab(tmp_path / "s.csv", 3)
    assert main(["replay", str(path)]) == 2
    assert "no broker configured" in capsys.readouterr().err


def test_speed_and_rate_are_exclusive(tmp_path: Path) -> None:
    path = write_nab(tmp_path / "s.csv", 3)
    with pytest.raises(SystemExit):
        main(["replay", str(path), "--speed", "2", "--rate", "5"])


# -- through Kafka ---------------------------------------------------------------------
def murmur2(data: bytes) -> int:
    """Kafka's Java ``Utils.murmur2`` (signed 32-bit), which ``murmur2_random`` matches."""
    m, h = 0x5BD1E995, (0x9747B28C ^ len(data)) & 0xFFFFFFFF
    n4 = len(data) // 4
    for i in range(n4):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = data[4 * n4 :]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if len(tail) >= 1:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h >= 1 << 31 else h


def java_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's Java producer picks for ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def test_murmur2_matches_kafkas_test_vectors() -> None:
    # From Kafka's UtilsTest.testMurmur2.
    assert murmur2(b"21") == -973932308
    assert murmur2(b"foobar") == -790332482
    assert murmur2(b"a-little-bit-long-string") == -985981536
    assert murmur2(b"a-little-bit-longer-string") == -1486304829
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971
    assert murmur2(b"abc") == 479470107


def consume_all(broker: str, topic: str, expected: int, timeout: float = 30.0) -> list:  # type: ignore[type-arg]
    """Every message of ``topic`` (key, value, partition) until ``expected`` have come."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": broker,
            "group.id": f"test-replay-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    out = []
    deadline = time.monotonic() + timeout
    settle = None
    while time.monotonic() < deadline:
        for msg in consumer.consume(500, timeout=0.5):
            if msg.error() is None:
                out.append((msg.key(), msg.value(), msg.partition()))
        if len(out) >= expected:
            # Read a little longer: more than expected would be a bug too.
            settle = settle or time.monotonic() + 1.5
            if time.monotonic() > settle:
                break
    consumer.close()
    return out


@pytest.mark.kafka
def test_replay_nab_and_log_files_into_kafka(
    kafka_broker: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prefix = f"test-replay-{uuid.uuid4().hex[:8]}."
    monkeypatch.setenv("VIGIL_TOPIC_PREFIX", prefix)
    settings = Settings.load(broker=kafka_broker)

    nab = write_nab(tmp_path / "machine_temp.csv", 40, bad_rows=(5,))
    t0 = time.monotonic()
    assert main(["replay", str(nab), "--broker", kafka_broker, "--rate", "200"]) == 0
    assert time.monotonic() - t0 >= 38 / 200  # paced: 39 messages at 200/s
    out = capsys.readouterr().out
    assert "sent 39 messages" in out and "skipped 1" in out

    logs, lines = write_log(tmp_path / "auth.log")
    assert main(["replay", str(logs), "--broker", kafka_broker, "--speed", "1000"]) == 0
    assert f"sent {len(lines)} messages" in capsys.readouterr().out

    sensors = consume_all(kafka_broker, settings.topic("sensors"), 39)
    assert len(sensors) == 39
    assert {k for k, _, _ in sensors} == {b"machine_temp"}
    # Keyed as a Java producer would: murmur2 (librdkafka's default CRC32 differs here).
    assert {p for _, _, p in sensors} == {java_partition(b"machine_temp", settings.partitions)}
    values = sorted(orjson.loads(v)["value"] for _, v, _ in sensors)
    assert values == [i * 1.5 for i in range(40) if i != 5]

    got = consume_all(kafka_broker, settings.topic("logs"), len(lines))
    assert all(p == java_partition(k, settings.partitions) for k, _, p in got)
    assert sorted((k, v.decode()) for k, v, _ in got) == sorted(
        zip(
            [b"bastion-01", b"web-01", b"auth", b"bob"],
            lines,
            strict=True,
        )
    )

"""``vigil report`` end to end on a small simulated plant with injected spikes."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import orjson
import pytest

from stream.cli import main
from stream.embedded import run_embedded
from stream.pipeline import Pipeline
from stream.settings import Settings
from stream.simulate.emit import write_files
from stream.simulate.faults import Fault, FaultSpec
from stream.simulate.plant import Plant, PlantConfig
from stream.tools.report import DPI, FIG_WIDTH_IN, PANEL_HEIGHT_IN

DEVICE = "pump-000"
SPIKES = (
    FaultSpec(DEVICE, ("flow",), "spike", 700, 701, 15.0),
    FaultSpec(DEVICE, ("pressure",), "spike", 1100, 1101, -15.0),
)


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (and check the signature)."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    assert head[12:16] == b"IHDR", "first chunk is not IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


@pytest.fixture(scope="module")
def plant_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Fault], list[str]]:
    out = tmp_path_factory.mktemp("plant")
    run = Plant(PlantConfig(n_devices=2, seed=3)).simulate(1500, list(SPIKES))
    paths = write_files(run, None, out)
    return paths["readings"], run.faults, list(run.sensors)


def embedded_anomalies(readings: Path) -> set[tuple[str | None, float]]:
    """(sensor, ts) of the device's anomalies from an ordinary embedded run of the file."""
    msgs = []
    for line in readings.read_bytes().splitlines():
        rec = orjson.loads(line)
        if rec["device"] == DEVICE:
            msgs.append(("sensors", DEVICE.encode(), line))
    result = run_embedded(Pipeline(Settings.load()), msgs, batch_size=1000)
    return {(a.sensor, a.event_ts) for a in result.anomalies if a.device == DEVICE}


def test_report_png_matches_pipeline_and_spikes(
    plant_file: tuple[Path, list[Fault], list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    readings, faults, sensors = plant_file
    out = tmp_path / "report.png"
    assert main(["report", "--device", DEVICE, "--input", str(readings), "--out", str(out)]) == 0
    assert "anomalies" in capsys.readouterr().out

    # A valid PNG of figsize x dpi pixels: one panel per sensor.
    assert png_size(out) == (
        round(FIG_WIDTH_IN * DPI),
        round(PANEL_HEIGHT_IN * len(sensors) * DPI),
    )

    side = orjson.loads(out.with_suffix(".json").read_bytes())
    assert side["device"] == DEVICE
    assert side["sensors"] == sensors
    assert side["readings"] == 1500 * len(sensors)
    assert (side["figure"]["width"], side["figure"]["height"]) == png_size(out)
    marks = side["markers"]
    assert side["counts"]["anomalies"] == len(marks) > 0

    # The markers are exactly the pipeline's anomaly events (an ordinary batched run).
    expected = embedded_anomalies(readings)
    got = [(m["sensor"], m["ts"]) for m in marks]
    assert len(got) == len(expected)
    assert set(got) == expected

    # Every marker sits on the signal value at its time (the raw reading).
    values = {}
    for line in readings.read_bytes().splitlines():
        rec = orjson.loads(line)
        if rec["device"] == DEVICE:
            values[(rec["sensor"], rec["ts"])] = rec["value"]
    for m in marks:
        assert m["value"] == pytest.approx(values[(m["sensor"], m["ts"])])

    # At least one marker falls on an injected spike (sensor and sample).
    hits = [
        m
        for m in marks
        for f in faults
        if f.kind == "spike" and m["sensor"] in f.sensors and f.start_ts <= m["ts"] < f.end_ts
    ]
    assert hits, f"no marker on a spike: {marks} vs {faults}"


def test_report_html_is_self_contained(
    plant_file: tuple[Path, list[Fault], list[str]], tmp_path: Path
) -> None:
    readings, _, _ = plant_file
    out = tmp_path / "report.html"
    assert main(["report", "--device", DEVICE, "--input", str(readings), "--out", str(out)]) == 0
    page = out.read_text()
    side = orjson.loads(out.with_suffix(".json").read_bytes())
    assert "data:image/png;base64," in page
    assert "<script" not in page and "http" not in page.split("<body>", 1)[1]
    body = page.split('<table id="anomalies">', 1)[1]
    assert body.count("<tr>") == 1 + len(side["markers"])  # header + one row each


def test_report_marks_anomalies_from_a_file(
    plant_file: tuple[Path, list[Fault], list[str]], tmp_path: Path
) -> None:
    """``--anomalies`` replaces the pipeline's markers with the file's events."""
    from stream.codecs import encode
    from stream.events import AnomalyEvent

    readings, _, _ = plant_file
    ts = 1_704_067_200.0 + 42
    events = [
        AnomalyEvent(
            id="a",
            kind="sensor",
            key=f"{DEVICE}/current",
            detector="x",
            event_ts=ts,
            detected_ts=ts,
            score=0.9,
            threshold=0.5,
            severity="warning",
            model_version="m",
            device=DEVICE,
            sensor="current",
        ),
        AnomalyEvent(
            id="b",
            kind="sensor",
            key="pump-001/current",
            detector="x",
            event_ts=ts,
            detected_ts=ts,
            score=0.9,
            threshold=0.5,
            severity="critical",
            model_version="m",
            device="pump-001",
            sensor="current",
        ),
    ]
    anomalies = tmp_path / "anomalies.jsonl"
    anomalies.write_bytes(b"".join(encode(e) + b"\n" for e in events) + b"not json\n")
    out = tmp_path / "r.png"
    argv = ["report", "--device", DEVICE, "--input", str(readings), "--out", str(out)]
    assert main([*argv, "--anomalies", str(anomalies)]) == 0
    side = orjson.loads(out.with_suffix(".json").read_bytes())
    assert [(m["sensor"], m["ts"], m["severity"]) for m in side["markers"]] == [
        ("current", ts, "warning")
    ]


def test_report_errors_are_clear(
    plant_file: tuple[Path, list[Fault], list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    readings, _, _ = plant_file
    argv = ["report", "--input", str(readings)]
    assert main([*argv, "--device", "nope", "--out", str(tmp_path / "r.png")]) == 2
    assert "no sensor data of device 'nope'" in capsys.readouterr().err
    assert main([*argv, "--device", DEVICE, "--out", str(tmp_path / "r.pdf")]) == 2
    assert ".png or .html" in capsys.readouterr().err
    assert not (tmp_path / "r.png").exists()


def test_report_on_nab_csv(tmp_path: Path) -> None:
    """CSV input names its device with ``--device``; one panel, one sensor ``value``."""
    csv = tmp_path / "series.csv"
    noise = np.random.default_rng(1).normal(10.0, 0.5, 400)
    noise[300] = 80.0
    rows = [f"2024-01-01 00:{i // 60:02d}:{i % 60:02d},{v}" for i, v in enumerate(noise)]
    csv.write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    out = tmp_path / "nab.png"
    assert main(["report", "--device", "m1", "--input", str(csv), "--out", str(out)]) == 0
    assert png_size(out) == (round(FIG_WIDTH_IN * DPI), round(PANEL_HEIGHT_IN * DPI))
    side = orjson.loads(out.with_suffix(".json").read_bytes())
    assert side["sensors"] == ["value"] and side["readings"] == 400
    assert any(m["value"] == 80 for m in side["markers"])


def test_expected_band_is_the_forecast_before_each_value(
    plant_file: tuple[Path, list[Fault], list[str]],
) -> None:
    """Normal values mostly sit inside expected ± 3 scale; the spikes fall outside it."""
    from stream.tools.replay import read_file
    from stream.tools.report import BAND_SCALES, run_report_pipeline

    readings, faults, sensors = plant_file
    settings = Settings.load()
    data = run_report_pipeline(read_file(readings).items, DEVICE, settings)
    assert data.sensors == sensors and data.dead_letters == 0
    spike_at = {(f.sensors[0], f.start_ts) for f in faults}
    for sensor, s in data.series.items():
        assert len(s.ts) == len(s.value) == len(s.expected) == len(s.scale) == 1500
        # The first reading of a sensor has no expectation yet.
        assert np.isnan(s.expected[0])
        loc, scale = np.asarray(s.expected), np.asarray(s.scale)
        z = np.abs(np.asarray(s.value) - loc) / scale
        normal = [
            i
            for i in range(settings.warmup, len(z))
            if (sensor, s.ts[i]) not in spike_at and np.isfinite(z[i])
        ]
        assert np.mean(z[normal] <= BAND_SCALES) > 0.95, sensor
        for i, ts in enumerate(s.ts):
            if (sensor, ts) in spike_at:
                assert z[i] > 2 * BAND_SCALES, (sensor, ts, z[i])

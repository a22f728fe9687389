"""``vigil report``: one device's signals, expected bands and anomalies, as PNG or HTML.

The input (any format ``vigil replay`` reads, or the simulator's ``readings.jsonl``) runs
through the embedded pipeline one tick at a time. Before each tick the device model's
:meth:`~stream.state.DeviceModel.expected` gives the one-step expectation and scale of
every sensor, so the band drawn is what the detector expected *before* it saw the value;
the pipeline's ``score_sink`` records each value it scored. Anomaly markers are the
pipeline's anomaly events (or those of ``--anomalies FILE``, e.g. from ``vigil tail
--json``), coloured by severity. Next to the figure a JSON sidecar (same name, ``.json``)
holds the markers' coordinates and the counts.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from stream.codecs import decode_anomaly
from stream.events import AnomalyEvent
from stream.pipeline import Pipeline, Record
from stream.settings import Settings
from stream.tools.replay import FORMATS, Item, ReplayError, read_file

#: Figure geometry: the PNG is ``FIG_WIDTH_IN * DPI`` by ``PANEL_HEIGHT_IN * DPI`` per sensor.
FIG_WIDTH_IN = 12.0
PANEL_HEIGHT_IN = 2.5
DPI = 100
#: Half-width of the expected band, in scales.
BAND_SCALES = 3.0
SEVERITY_COLOURS = {"warning": "#ff9800", "critical": "#d50000"}
KIND_MARKERS = {"sensor": "o", "causality": "D", "log": "x"}


@dataclass(slots=True)
class Series:
    """One sensor as the pipeline saw it: values, scores and the expectation before each."""

    ts: list[float] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    expected: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)


@dataclass(slots=True)
class Marker:
    """Where an anomaly is drawn: its sensor, time and the signal's value there."""

    sensor: str | None
    ts: float
    value: float | None
    severity: str
    kind: str
    detector: str
    score: float
    key: str
    reason: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "sensor": self.sensor,
            "ts": self.ts,
            "value": self.value,
            "severity": self.severity,
            "kind": self.kind,
            "detector": self.detector,
            "score": self.score,
            "key": self.key,
            "reason": self.reason,
        }


@dataclass(slots=True)
class ReportData:
    """What a report shows."""

    device: str
    series: dict[str, Series]
    anomalies: list[AnomalyEvent]
    readings: int = 0
    dead_letters: int = 0
    warmup: int = 0

    @property
    def sensors(self) -> list[str]:
        return list(self.series)


def _ticks(items: Iterable[Item], device: str) -> Iterable[list[bytes]]:
    """The device's sensor messages grouped by tick (consecutive messages of one time).

    Multi-tick batch messages are split into one message per tick, so every group is
    one row of the device's detector.
    """
    group: list[bytes] = []
    group_ts: float | None = None
    for item in items:
        if item.stream != "sensors" or item.key != device:
            continue
        payload = item.payload or {}
        ticks = payload.get("ticks")
        if isinstance(ticks, list):
            parts = [
                (
                    t.get("ts"),
                    orjson.dumps({"device": device, "ts": t.get("ts"), "values": t.get("values")}),
                )
                for t in ticks
                if isinstance(t, dict)
            ]
        else:
            parts = [(item.ts, item.value)]
        for ts, raw in parts:
            if group and ts != group_ts:
                yield group
                group = []
            group.append(raw)
            group_ts = ts
    if group:
        yield group


def run_report_pipeline(items: Sequence[Item], device: str, settings: Settings) -> ReportData:
    """Run ``device``'s sensor messages through a fresh embedded pipeline, tick by tick.

    Parameters
    ----------
    items : sequence of Item
        Messages as :func:`stream.tools.replay.read_file` returns them; other devices'
        and log messages are ignored.
    device : str
        The device to report on.
    settings : Settings
        Detector and decision settings (the broker is not used).

    Returns
    -------
    ReportData
        Per-sensor series with the expectation before each value, and the anomaly events.
    """
    series: dict[str, Series] = {}
    before: dict[str, tuple[float, float]] = {}

    def sink(dev: str, sensor: str, ts: float, value: float, score: float) -> None:
        s = series.get(sensor)
        if s is None:
            s = series[sensor] = Series()
        loc, scale = before.get(sensor, (math.nan, math.nan))
        s.ts.append(ts)
        s.value.append(value)
        s.score.append(score)
        s.expected.append(loc)
        s.scale.append(scale)

    pipeline = Pipeline(settings, score_sink=sink)
    topic = settings.topic("sensors")
    data = ReportData(device, series, [], warmup=settings.warmup)
    offset = 0
    key = device.encode()
    for group in _ticks(items, device):
        before.clear()
        model = pipeline.devices.get(device)
        expectation = model.expected() if model is not None else None
        if model is not None and expectation is not None:
            loc, scale = expectation
            for sensor, c in model.index.items():
                before[sensor] = (float(loc[c]), float(scale[c]))
        records = [Record(topic, 0, offset + i, key, raw) for i, raw in enumerate(group)]
        offset += len(records)
        result = pipeline.process_sensors(records)
        data.anomalies.extend(a for a in result.anomalies if a.device == device)
        data.readings += result.readings
        data.dead_letters += len(result.dead_letters)
    return data


def read_anomalies(path: Path, device: str) -> list[AnomalyEvent]:
    """``device``'s anomaly events from a JSON-lines file (undecodable lines skipped)."""
    out: list[AnomalyEvent] = []
    with path.open("rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                event = decode_anomaly(line.strip())
            except Exception:
                continue
            if event.device == device or event.key == device or event.key.startswith(device + "/"):
                out.append(event)
    return out


def markers(data: ReportData, anomalies: Sequence[AnomalyEvent] | None = None) -> list[Marker]:
    """The markers of ``anomalies`` (default: the pipeline's), placed on the signal.

    A marker's value is the sensor's value at the event time (the nearest sample when
    the time is not one of them); events naming no known sensor keep ``value=None`` and
    are listed but not drawn.
    """
    out: list[Marker] = []
    for a in data.anomalies if anomalies is None else anomalies:
        value: float | None = None
        s = data.series.get(a.sensor or "")
        if s is not None and s.ts:
            i = int(np.argmin(np.abs(np.asarray(s.ts) - a.event_ts)))
            value = s.value[i]
        elif a.actual and a.sensor in a.actual:
            value = a.actual[a.sensor]
        out.append(
            Marker(
                a.sensor,
                a.event_ts,
                value,
                a.severity,
                a.kind,
                a.detector,
                a.score,
                a.key,
                a.reason,
            )
        )
    out.sort(key=lambda m: (m.ts, m.sensor or ""))
    return out


def figure_size(n_sensors: int) -> tuple[int, int]:
    """Pixel width and height of the PNG of ``n_sensors`` panels."""
    panels = max(n_sensors, 1)
    return round(FIG_WIDTH_IN * DPI), round(PANEL_HEIGHT_IN * panels * DPI)


def _datetimes(ts: Sequence[float] | np.ndarray) -> np.ndarray:
    return (np.asarray(ts, dtype=np.float64) * 1000.0).astype("datetime64[ms]")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _title(data: ReportData, marks: Sequence[Marker]) -> str:
    n_crit = sum(m.severity == "critical" for m in marks)
    return (
        f"{data.device}: {data.readings:,} readings of {_plural(len(data.series), 'sensor')}, "
        f"{len(marks)} anomalies ({n_crit} critical, {len(marks) - n_crit} warning)"
    )


def render_png(data: ReportData, marks: Sequence[Marker]) -> bytes:
    """The figure as PNG bytes: one panel per sensor, band shaded, anomalies marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    sensors = data.sensors
    n = max(len(sensors), 1)
    fig, axes = plt.subplots(
        n, 1, figsize=(FIG_WIDTH_IN, PANEL_HEIGHT_IN * n), dpi=DPI, sharex=True, squeeze=False
    )
    for ax, sensor in zip(axes[:, 0], sensors, strict=False):
        s = data.series[sensor]
        x = _datetimes(s.ts)
        y = np.asarray(s.value)
        loc = np.asarray(s.expected, dtype=np.float64)
        scale = np.asarray(s.scale, dtype=np.float64)
        # The detector learns only during warm-up: its early expectations mean nothing.
        loc[: data.warmup] = np.nan
        lo, hi = loc - BAND_SCALES * scale, loc + BAND_SCALES * scale
        ax.fill_between(x, lo, hi, color="#90caf9", alpha=0.45, lw=0, label="expected ± 3σ")
        ax.plot(x, loc, color="#1565c0", lw=0.6, ls="--", label="expected")
        ax.plot(x, y, color="#212121", lw=0.7, label="value")
        for m in marks:
            if m.sensor == sensor and m.value is not None:
                ax.plot(
                    _datetimes([m.ts]),
                    [m.value],
                    KIND_MARKERS.get(m.kind, "o"),
                    color=SEVERITY_COLOURS.get(m.severity, "black"),
                    ms=6,
                    mec="black",
                    mew=0.5,
                    zorder=5,
                )
        if len(y):
            span = float(np.ptp(y)) or max(abs(float(y[0])), 1.0)
            ax.set_ylim(float(y.min()) - 0.15 * span, float(y.max()) + 0.15 * span)
        ax.set_ylabel(sensor)
        ax.grid(alpha=0.3)
    handles = [
        Line2D([], [], color="#212121", lw=0.7, label="value"),
        Line2D([], [], color="#1565c0", lw=0.6, ls="--", label="expected"),
        Line2D(
            [], [], color="#90caf9", lw=6, alpha=0.45, label=f"expected ± {BAND_SCALES:g} scale"
        ),
    ] + [
        Line2D([], [], ls="", marker="o", color=c, label=sev) for sev, c in SEVERITY_COLOURS.items()
    ]
    axes[0, 0].legend(handles=handles, loc="upper right", fontsize=7, ncol=5)
    axes[-1, 0].set_xlabel("time (UTC)")
    fig.suptitle(_title(data, marks), fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def _fmt_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def render_html(data: ReportData, marks: Sequence[Marker], png: bytes) -> str:
    """A self-contained HTML page: the figure inline (base64) and a table of anomalies."""
    esc = html.escape
    rows = "\n".join(
        "<tr>"
        + "".join(
            f"<td>{esc(str(v))}</td>"
            for v in (
                _fmt_time(m.ts),
                m.sensor or "",
                m.severity,
                m.kind,
                m.detector,
                f"{m.score:.6f}",
                "" if m.value is None else f"{m.value:.6g}",
                m.reason or "",
            )
        )
        + "</tr>"
        for m in marks
    )
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "time (UTC)",
            "sensor",
            "severity",
            "kind",
            "detector",
            "score",
            "value",
            "reason",
        )
    )
    image = base64.b64encode(png).decode("ascii")
    title = esc(_title(data, marks))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Vigil report: {esc(data.device)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
th, td {{ border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; }}
th {{ background: #eee; }}
img {{ max-width: 100%; }}
</style></head>
<body>
<h1>{title}</h1>
<img alt="signals of {esc(data.device)}" src="data:image/png;base64,{image}">
<h2>Anomalies ({len(marks)})</h2>
<table id="anomalies">
<thead><tr>{head}</tr></thead>
<tbody>
{rows}
</tbody>
</table>
</body></html>
"""


def write_report(
    data: ReportData,
    out: Path,
    anomalies: Sequence[AnomalyEvent] | None = None,
    source: str = "pipeline",
) -> dict[str, Any]:
    """Write the PNG or HTML (by ``out``'s suffix) and its JSON sidecar; returns the sidecar.

    Raises
    ------
    ValueError
        If ``out`` ends in neither ``.png`` nor ``.html``.
    """
    suffix = out.suffix.lower()
    if suffix not in (".png", ".html", ".htm"):
        raise ValueError(f"--out must end in .png or .html, not {out.name!r}")
    marks = markers(data, anomalies)
    png = render_png(data, marks)
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".png":
        out.write_bytes(png)
    else:
        out.write_text(render_html(data, marks, png), encoding="utf-8")
    width, height = figure_size(len(data.sensors))
    sidecar = {
        "device": data.device,
        "output": str(out),
        "sensors": data.sensors,
        "readings": data.readings,
        "dead_letters": data.dead_letters,
        "anomalies_source": source,
        "counts": {
            "anomalies": len(marks),
            "critical": sum(m.severity == "critical" for m in marks),
            "warning": sum(m.severity == "warning" for m in marks),
        },
        "figure": {"width": width, "height": height, "dpi": DPI},
        "markers": [m.as_dict() for m in marks],
    }
    out.with_suffix(".json").write_bytes(orjson.dumps(sidecar, option=orjson.OPT_INDENT_2))
    return sidecar


def cmd_report(args: argparse.Namespace) -> int:
    """``vigil report``: run the embedded pipeline over a file and draw one device."""
    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".html", ".htm"):
        print(f"vigil report: --out must end in .png or .html, not {out.name!r}", file=sys.stderr)
        return 2
    settings = Settings.load(args.config)
    try:
        result = read_file(Path(args.input), args.format, args.device)
    except (ReplayError, ValueError, OSError) as exc:
        print(f"vigil report: {exc}", file=sys.stderr)
        return 2
    devices = {it.key for it in result.items if it.stream == "sensors"}
    if args.device not in devices:
        known = ", ".join(sorted(devices)[:10]) or "none"
        print(
            f"vigil report: no sensor data of device {args.device!r} in {args.input} "
            f"(devices: {known})",
            file=sys.stderr,
        )
        return 2
    data = run_report_pipeline(result.items, args.device, settings)
    anomalies = None
    source = "pipeline"
    if args.anomalies:
        anomalies = read_anomalies(Path(args.anomalies), args.device)
        source = str(args.anomalies)
    sidecar = write_report(data, out, anomalies, source)
    counts = sidecar["counts"]
    print(
        f"wrote {out} and {out.with_suffix('.json')}: {data.readings:,} readings of "
        f"{_plural(len(data.sensors), 'sensor')}, {counts['anomalies']} anomalies "
        f"({counts['critical']} critical, {counts['warning']} warning)"
    )
    return 0


def add_parser(sub: Any) -> None:
    """Add ``vigil report`` to the CLI's subparsers."""
    p = sub.add_parser("report", help="plot a device's signals, expected band and anomalies")
    p.add_argument("--device", required=True, help="device to report on (names CSV data)")
    p.add_argument("--input", required=True, help="NAB/SKAB/JSONL file, e.g. readings.jsonl")
    p.add_argument("--format", choices=FORMATS, default="auto")
    p.add_argument(
        "--anomalies", default=None, help="JSON-lines anomaly events to mark (vigil tail --json)"
    )
    p.add_argument("--out", default="report.png", help="report.png or report.html")
    p.add_argument("--config", help="YAML or TOML settings file")
    p.set_defaults(func=cmd_report)

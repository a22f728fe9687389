"""``vigil demo``: a simulated plant and its operation logs through the whole pipeline.

Without a broker it runs the pipeline core in-process (the embedded default); with
``--broker`` it creates the topics, starts a faust worker, produces the same messages to
Kafka and reads the anomalies back. Either way it ends with detections scored against
the injected truth and a PNG plot of a few sensors with the anomalies marked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.live import Live
from rich.table import Table

from stream.embedded import EmbeddedResult, Message, run_embedded
from stream.events import AnomalyEvent
from stream.pipeline import BatchResult, Pipeline
from stream.produce import INPUT_PRODUCER_CONFIG, produce_all
from stream.settings import Settings
from stream.simulate.oplogs import LogRun, simulate_oplogs
from stream.simulate.plant import Plant, PlantConfig, PlantRun
from stream.truth import DetectionReport, match_detections

#: Fault kinds the default sensor detector is meant to catch in the demo.
DEMO_FAULT_KINDS = ("spike", "level_shift", "drift", "stuck", "decoupling")

#: Granger checks in the demo learn their baseline for 1,200 ticks (the default is 2,000)
#: so a 3,000-tick run has time to show decouplings after it.
DEMO_CAUSALITY = {"lag": 3, "window": 200, "warmup": 1200}

#: Malformed messages mixed into the demo stream, to show the dead-letter path.
BAD_MESSAGES: tuple[bytes, ...] = (
    b"{not json",
    b'{"device": "pump-000", "sensor": "flow", "ts": 1704067200, "value": "high"}',
    b'{"device": "pump-000", "sensor": "flow", "value": 1.0}',
    b'{"device": "pump-000", "sensor": "flow", "ts": 1704067200, "value": 1e999}',
    b"\xff\xfe\x00garbage",
)


@dataclass(slots=True)
class DemoData:
    """The simulated input of a demo run and its ground truth."""

    plant: PlantRun
    logs: LogRun
    messages: list[Message]
    n_bad: int


def make_demo_data(
    n_devices: int = 20,
    n_ticks: int = 3000,
    n_faults: int = 30,
    seed: int = 7,
    bad_every: int = 2000,
) -> DemoData:
    """Simulate the plant and logs, and interleave them into one message stream."""
    plant = Plant(PlantConfig(n_devices=n_devices, seed=seed))
    # Faults start after 45% of the run, when the Granger baseline exists.
    plan = plant.random_faults(
        n_faults, n_ticks, kinds=DEMO_FAULT_KINDS, duration=(30, 200), warmup=0.45
    )
    run = plant.simulate(n_ticks, plan)
    logs = simulate_oplogs(n_users=5, n_events=max(n_ticks, 500), seed=seed, faults=4)
    messages: list[Message] = []
    n_bad = 0
    log_events = iter(sorted(logs.events, key=lambda e: e["ts"]))
    next_log = next(log_events, None)
    for i, rec in enumerate(run.readings()):
        messages.append(("sensors", rec["device"].encode(), orjson.dumps(rec)))
        while next_log is not None and next_log["ts"] <= rec["ts"]:
            messages.append(("logs", next_log["user"].encode(), orjson.dumps(next_log)))
            next_log = next(log_events, None)
        if bad_every and i % bad_every == bad_every - 1:
            messages.append(("sensors", b"pump-000", BAD_MESSAGES[n_bad % len(BAD_MESSAGES)]))
            n_bad += 1
    while next_log is not None:
        messages.append(("logs", next_log["user"].encode(), orjson.dumps(next_log)))
        next_log = next(log_events, None)
    return DemoData(run, logs, messages, n_bad)


# -- embedded ------------------------------------------------------------------------
def run_demo_embedded(data: DemoData, settings: Settings, console: Console) -> EmbeddedResult:
    """Drive the pipeline core in-process with a live summary."""
    pipeline = Pipeline(settings)
    started = time.perf_counter()
    total_msgs = len(data.messages)

    def summary(done: EmbeddedResult) -> Table:
        table = Table(title="vigil demo (embedded, no broker)", show_header=False)
        elapsed = time.perf_counter() - started
        table.add_row("messages", f"{done.messages:,} / {total_msgs:,}")
        table.add_row("readings scored", f"{done.readings:,}")
        table.add_row("anomaly events", f"{len(done.anomalies):,}")
        table.add_row("dead-lettered", f"{len(done.dead_letters):,}")
        table.add_row("rate", f"{done.messages / max(elapsed, 1e-9):,.0f} msg/s")
        return table

    with Live(summary(EmbeddedResult()), console=console, refresh_per_second=4) as live:

        def on_batch(_: BatchResult, done: EmbeddedResult) -> None:
            live.update(summary(done))

        result = run_embedded(pipeline, data.messages, settings.batch_size, on_batch)
        live.update(summary(result))
    return result


# -- through Kafka -------------------------------------------------------------------
def _worker_env(settings: Settings) -> dict[str, str]:
    """The environment of a worker subprocess: every setting as ``VIGIL_<NAME>``."""
    env = dict(os.environ)
    for name, value in settings.model_dump(mode="json").items():
        var = f"VIGIL_{name.upper()}"
        if value is None:
            env.pop(var, None)
        elif isinstance(value, dict | list):
            env[var] = orjson.dumps(value).decode()
        else:
            env[var] = str(value)
    return env


def start_worker(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``vigil worker`` as a subprocess with ``settings`` in its environment."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out = log_path.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "worker"],
        env=_worker_env(settings),
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def stop_worker(*procs: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """SIGTERM every worker, wait for each to finish its last batch, kill a laggard."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a worker's HTTP server)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_counts(port: int, host: str = "127.0.0.1") -> dict[str, float]:
    """Input outcomes from a worker's ``/metrics`` (``{"processed": n, "dead_letter": m}``)."""
    import urllib.request

    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    counts = {"processed": 0.0, "dead_letter": 0.0}
    for line in text.splitlines():
        if line.startswith("vigil_events_total{"):
            labels, value = line.rsplit(" ", 1)
            for outcome in counts:
                if f'outcome="{outcome}"' in labels:
                    counts[outcome] += float(value)
    return counts


def wait_for_worker(
    proc: subprocess.Popen[bytes],
    port: int,
    expected: int,
    timeout: float,
    log_path: Path | None = None,
    stall_s: float = 120.0,
) -> dict[str, float]:
    """Wait until the worker has accounted for ``expected`` input messages.

    Gives up early, with the tail of ``log_path`` in the error, when the worker has
    made no progress for ``stall_s`` seconds: a stuck worker should say why at once,
    not after the whole ``timeout``.
    """
    start = time.monotonic()
    deadline = start + timeout
    counts: dict[str, float] = {}
    last_total, last_change = -1.0, start
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with code {proc.returncode}" + _log_tail(log_path))
        try:
            counts = worker_counts(port)
        except OSError:
            counts = {}
        total = counts["processed"] + counts["dead_letter"] if counts else 0.0
        if total >= expected:
            return counts
        now = time.monotonic()
        if total != last_total:
            last_total, last_change = total, now
        elif now - last_change > stall_s:
            raise TimeoutError(
                f"worker made no progress for {stall_s:.0f}s at {total:.0f} of {expected} "
                f"messages (counts {counts})" + _log_tail(log_path)
            )
        time.sleep(0.5)
    raise TimeoutError(
        f"worker accounted for {counts} of {expected} messages in {timeout:.0f}s"
        + _log_tail(log_path)
    )


def _log_tail(log_path: Path | None, lines: int = 40) -> str:
    if log_path is None or not log_path.exists():
        return ""
    tail = log_path.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last {len(tail)} lines of {log_path} ---\n" + "\n".join(tail)


def read_topic(bootstrap: str, topic: str, timeout: float = 10.0) -> list[bytes]:
    """Every message value on ``topic`` (all partitions, from the beginning)."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"vigil-reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    idle_until = time.monotonic() + timeout
    while time.monotonic() < idle_until:
        msgs = consumer.consume(1000, timeout=0.5)
        for msg in msgs:
            value = msg.value()
            if msg.error() is None and value is not None:
                values.append(value)
        if msgs:
            idle_until = time.monotonic() + 2.0  # keep reading while data flows
    consumer.close()
    return values


def produce(bootstrap: str, settings: Settings, messages: Sequence[Message]) -> int:
    """Produce demo messages, in order (idempotent producer, murmur2 keys)."""
    from confluent_kafka import Producer

    from stream.topics import kafka_config

    # The settings' security belongs to the settings' broker (a test may write its data
    # through a plain listener of the same cluster).
    security = kafka_config(settings) if bootstrap == settings.broker else {}
    producer = Producer({**security, "bootstrap.servers": bootstrap, **INPUT_PRODUCER_CONFIG})
    records = ((settings.topic(stream), key, value) for stream, key, value in messages)
    return produce_all(producer, records)


def run_demo_kafka(
    data: DemoData, settings: Settings, console: Console, out_dir: Path
) -> EmbeddedResult:
    """Topics, a faust worker subprocess, produce, wait, and read the outputs back."""
    from stream.codecs import decode_anomaly
    from stream.events import DeadLetter
    from stream.topics import create_topics

    assert settings.broker
    create_topics(settings)
    log_path = out_dir / "worker.log"
    proc = start_worker(settings, log_path)
    try:
        console.print(f"worker started (pid {proc.pid}); producing {len(data.messages):,} messages")
        produce(settings.broker, settings, data.messages)
        counts = wait_for_worker(
            proc, settings.web_port, len(data.messages), timeout=600, log_path=log_path
        )
        console.print(f"worker accounted for every message: {counts}")
        anomalies = [
            decode_anomaly(v) for v in read_topic(settings.broker, settings.topic("anomalies"))
        ]
        dead = [
            orjson.loads(v) for v in read_topic(settings.broker, settings.topic("dead_letter"), 5.0)
        ]
    finally:
        stop_worker(proc, timeout=30)
    result = EmbeddedResult(anomalies=anomalies, messages=len(data.messages))
    result.processed = int(counts["processed"])
    result.dead_letters = [DeadLetter(**d) for d in dead]
    return result


# -- report --------------------------------------------------------------------------
def report_table(
    title: str, report: DetectionReport, causal: DetectionReport | None = None
) -> Table:
    """Recall per fault kind (and, given ``causal``, how many the causality checks saw)."""
    table = Table(title=title)
    cols = ["fault kind", "injected", "detected", "recall"]
    if causal is not None:
        cols.append("seen by Granger checks")
    for col in cols:
        table.add_column(col, justify="right" if col != "fault kind" else "left")
    for kind, (n, d) in sorted(report.by_kind.items()):
        row = [kind, str(n), str(d), f"{d / n:.0%}"]
        if causal is not None:
            row.append(str(causal.by_kind.get(kind, (0, 0))[1]))
        table.add_row(*row)
    total = [
        "all",
        str(len(report.faults)),
        str(sum(f.detected for f in report.faults)),
        f"{report.recall:.0%}",
    ]
    if causal is not None:
        total.append(str(sum(f.detected for f in causal.faults)))
    table.add_row(*total)
    return table


def plot_demo(
    run: PlantRun, anomalies: Sequence[AnomalyEvent], path: Path, n_devices: int = 3
) -> Path:
    """PNG of a few faulty devices' sensors, fault windows shaded, anomalies marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    faulty = sorted({f.device for f in run.faults})[:n_devices] or run.devices[:n_devices]
    fig, axes = plt.subplots(len(faulty), 1, figsize=(12, 2.8 * len(faulty)), squeeze=False)
    t0 = run.timestamps[0]
    by_device: dict[str, list[AnomalyEvent]] = {}
    for a in anomalies:
        if a.device:
            by_device.setdefault(a.device, []).append(a)
    for ax, device in zip(axes[:, 0], faulty, strict=True):
        d = run.devices.index(device)
        for s, sensor in enumerate(run.sensors):
            series = run.values[d, :, s]
            z = (series - series.mean()) / (series.std() or 1.0)
            ax.plot(run.timestamps - t0, z + 4 * s, lw=0.6, label=sensor)
            for a in by_device.get(device, []):
                if a.sensor == sensor:
                    i = round((a.event_ts - t0) / run.config.period_s)
                    if 0 <= i < len(z):
                        color = "red" if a.severity == "critical" else "orange"
                        ax.plot(a.event_ts - t0, z[i] + 4 * s, "o", color=color, ms=5)
        for f in run.faults:
            if f.device == device:
                ax.axvspan(f.start_ts - t0, f.end_ts - t0, color="grey", alpha=0.2)
                ax.text(f.start_ts - t0, ax.get_ylim()[1], f.kind, fontsize=7, va="top")
        ax.set_title(f"{device}: sensors (standardised, offset), faults shaded, anomalies as dots")
        ax.set_yticks([4 * s for s in range(len(run.sensors))], run.sensors)
    axes[-1, 0].set_xlabel("seconds since start")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def run_demo(
    settings: Settings,
    n_devices: int = 20,
    n_ticks: int = 3000,
    seed: int = 7,
    out_dir: Path = Path("vigil-out"),
    console: Console | None = None,
) -> dict[str, Any]:
    """The whole demo; returns the figures it printed."""
    console = console or Console()
    t0 = time.perf_counter()
    if "causality" not in settings.model_fields_set and settings.causality.enabled:
        settings = settings.model_copy(
            update={"causality": settings.causality.model_copy(update={"params": DEMO_CAUSALITY})}
        )
    data = make_demo_data(n_devices=n_devices, n_ticks=n_ticks, seed=seed)
    console.print(
        f"simulated {n_devices} pumps x {len(data.plant.sensors)} sensors x {n_ticks} ticks "
        f"with {len(data.plant.faults)} injected faults, {len(data.logs.events):,} log events "
        f"with {len(data.logs.faults)} misuse episodes, {data.n_bad} malformed messages"
    )
    if settings.broker:
        if settings.app_id == "vigil":
            # A fresh group and topics per demo, so reruns never read old data.
            tag = uuid.uuid4().hex[:6]
            settings = settings.model_copy(
                update={"app_id": f"vigil-demo-{tag}", "topic_prefix": f"vigil-demo-{tag}."}
            )
        result = run_demo_kafka(data, settings, console, out_dir)
    else:
        result = run_demo_embedded(data, settings, console)
    plant_anomalies = [a for a in result.anomalies if a.kind in ("sensor", "causality")]
    causal_anomalies = [a for a in result.anomalies if a.kind == "causality"]
    log_anomalies = [a for a in result.anomalies if a.kind == "log"]
    plant_report = match_detections(data.plant.faults, plant_anomalies, grace_s=30.0)
    causal_report = match_detections(data.plant.faults, causal_anomalies, grace_s=30.0)
    log_report = match_detections(data.logs.faults, log_anomalies, grace_s=60.0)
    console.print(report_table("sensor faults", plant_report, causal_report))
    console.print(
        f"sensors: precision {plant_report.precision:.0%} ({plant_report.true_episodes} of "
        f"{plant_report.episodes} episodes match a fault), recall {plant_report.recall:.0%}, "
        f"median detection delay {plant_report.median_delay_s or float('nan'):.0f} s"
    )
    console.print(report_table("log misuse (templates, surprise runs, auth)", log_report))
    console.print(
        f"dead-lettered {len(result.dead_letters)} of {data.n_bad} malformed messages "
        f"(reasons: {sorted({d.reason for d in result.dead_letters})})"
    )
    png = plot_demo(data.plant, plant_anomalies, out_dir / "demo.png")
    elapsed = time.perf_counter() - t0
    console.print(f"plot written to {png}  ({elapsed:.1f} s in all)")
    return {
        "sensors": plant_report.as_dict(),
        "causality": causal_report.as_dict(),
        "logs": log_report.as_dict(),
        "dead_lettered": len(result.dead_letters),
        "malformed": data.n_bad,
        "messages": len(data.messages),
        "broker": settings.broker,
        "plot": str(png),
        "seconds": elapsed,
    }


def iter_messages(data: DemoData) -> Iterator[Message]:
    """The demo's messages (for replaying them elsewhere)."""
    yield from data.messages

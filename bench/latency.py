"""Latency from a reading's event time to its anomaly event on Kafka, at a fixed input rate.

For each engine (``vigil worker`` with faust, and ``--engine kafka``) in a subprocess
with the default detectors and Granger checks, on a real broker:

1. **warm-up**: ``--warm-ticks`` ticks of ``--devices`` devices x 4 sensors, one JSON
   reading per message, time-stamped in the past and sent as fast as possible; the
   benchmark waits until the worker has processed them all (so every key is past the
   decision layer's learn-only warm-up);
2. **live**: for ``--seconds`` seconds, readings at a fixed rate (``--rate`` messages per
   second, paced every 10 ms; the four readings of a device's tick share its time
   stamp, which is the wall clock when the tick is sent). Once, at a random live tick,
   each sensor of each device gets a spike of 40 noise standard deviations;
3. a consumer of the anomalies topic, started before the live phase, notes the wall
   clock when each event arrives. A spike's latency is its anomaly event's arrival
   time minus the spiked reading's time stamp: producer batching, the broker, the
   worker's consume batch, detection, decision and the output's delivery included.

Printed per engine: spikes found, p50 / p90 / p99 / max latency, the rate achieved,
the worker's backlog when the live phase ended, and (kafka engine) how long the
phases of its checkpoints stopped the loop during the live phase (since 2026-12-02 the
periodic ones stop it only to take the state and to send the commit).
A side-by-side run of another checkout with ``PYTHONPATH`` must be started in that
checkout: the worker subprocess (``python -m``) imports from its current directory. The default rates were about half
of each engine's sustained rate in ``docs/BENCHMARKS.md`` when this benchmark was
written (12,286 and 2,562 one-reading messages per second with the default detectors);
on a quiet machine they are now about 41,000 and 7,500 (2026-12-01), so
``--rate-faust 4000`` is half of the faust worker's; half of the kafka engine's is
more than a producer sharing its 2 cores can send without starving it.

    .venv/bin/python bench/latency.py --broker 127.0.0.1:59092 [--engines kafka,faust]
        [--rate-kafka 6000] [--rate-faust 1200] [--seconds 30] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from stream.demo import free_port, start_worker, stop_worker, wait_for_worker, worker_counts
from stream.settings import Settings

SENSORS = ("current", "flow", "pressure", "temperature")
OFFSETS = (10.0, 50.0, 3.0, 40.0)
SPIKE_SD = 40.0


@dataclass
class Plant:
    """Per device an AR(1) process shared by its sensors, plus sensor noise."""

    devices: int
    seed: int = 0
    state: np.ndarray = field(init=False)
    rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.state = np.zeros(self.devices)

    def tick(self, device: int) -> list[float]:
        self.state[device] = 0.8 * self.state[device] + self.rng.normal()
        noise = self.rng.normal(0.0, 0.3, len(SENSORS))
        return [float(o + self.state[device] + e) for o, e in zip(OFFSETS, noise, strict=True)]


def reading(device: str, sensor: str, ts: float, value: float) -> bytes:
    return orjson.dumps({"device": device, "sensor": sensor, "ts": ts, "value": value})


class AnomalyClock:
    """Consumes the anomalies topic in a thread, noting when each event arrives."""

    def __init__(self, broker: str, topic: str, partitions: int) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": broker,
                "group.id": f"latency-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
        )
        # Only events from now on: assign every partition at its end.
        self.consumer.assign([TopicPartition(topic, p, -1) for p in range(partitions)])
        self.arrivals: list[tuple[float, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for m in self.consumer.consume(500, 0.05):
                if m.error() is None:
                    self.arrivals.append((time.time(), orjson.loads(m.value() or b"{}")))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.consumer.close()


def run_engine(args: argparse.Namespace, engine: str, rate: float, log_dir: Path) -> dict[str, Any]:
    uid = uuid.uuid4().hex[:6]
    settings = Settings.load(
        broker=args.broker,
        engine=engine,
        app_id=f"lat-{engine}-{uid}",
        topic_prefix=f"lat{uid}.",
        web_port=free_port(),
        data_dir=str(log_dir / f"data-{uid}"),
        partitions=args.partitions,
        **({"batch_within_s": args.batch_within_s} if args.batch_within_s else {}),
    )
    admin = AdminClient({"bootstrap.servers": args.broker})
    names = [settings.topic("sensors"), settings.topic("anomalies")]
    for f in admin.create_topics(
        [NewTopic(t, num_partitions=args.partitions, replication_factor=1) for t in names]
    ).values():
        f.result(30)
    producer = Producer(
        {
            "bootstrap.servers": args.broker,
            "linger.ms": 1,
            "partitioner": "murmur2_random",
            "enable.idempotence": True,
        }
    )
    sensors_topic = settings.topic("sensors")
    plant = Plant(args.devices)
    devices = [f"pump-{k:04d}" for k in range(args.devices)]

    def send_tick(k: int, ts: float, spike: int | None = None) -> None:
        values = plant.tick(k)
        for i, (sensor, value) in enumerate(zip(SENSORS, values, strict=True)):
            v = value + (SPIKE_SD if i == spike else 0.0)
            while True:
                try:
                    producer.produce(sensors_topic, reading(devices[k], sensor, ts, v), devices[k])
                    break
                except BufferError:
                    producer.poll(0.01)
        producer.poll(0)

    proc = start_worker(settings, log_dir / f"worker-{engine}-{uid}.log")
    try:
        # 1. warm-up, in the past, as fast as possible
        t_warm = time.time() - args.warm_ticks - 10.0
        for t in range(args.warm_ticks):
            for k in range(args.devices):
                send_tick(k, round(t_warm + t, 3))
        producer.flush(60)
        warm_n = args.warm_ticks * args.devices * len(SENSORS)
        warm_start = time.perf_counter()
        wait_for_worker(proc, settings.web_port, warm_n, timeout=900)
        warm_s = time.perf_counter() - warm_start
        checkpoints_before = checkpoint_seconds(settings.web_port)
        # 2. live, paced; 3. anomalies timed on arrival
        clock = AnomalyClock(args.broker, settings.topic("anomalies"), args.partitions)
        clock.start()
        time.sleep(1.0)  # the consumer's assignment takes effect
        ticks_per_s = rate / len(SENSORS)
        total_ticks = int(ticks_per_s * args.seconds)
        rng = np.random.default_rng(1)
        # One spike per sensor, at random ticks after the first two seconds (ticks are
        # sent round-robin over the devices, so tick j is device j % devices).
        first = int(2 * ticks_per_s)
        keys = [(k, i) for k in range(args.devices) for i in range(len(SENSORS))]
        n_spikes = min(len(keys), max(total_ticks - first, 0) // args.devices)
        chosen = rng.choice(len(keys), n_spikes, replace=False)
        spike_at: dict[int, int] = {}
        rounds = max((total_ticks - first) // args.devices, 1)
        for key_index in chosen:
            k, i = keys[key_index]
            rnd = int(rng.integers(0, rounds))
            spike_at[first + rnd * args.devices + k] = i
        spikes: dict[tuple[str, str, float], None] = {}
        start = time.perf_counter()
        sent = 0
        for j in range(total_ticks):
            due = start + j / ticks_per_s
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            k = j % args.devices
            ts = round(time.time(), 3)
            spike = spike_at.get(j)
            send_tick(k, ts, spike)
            if spike is not None:
                spikes[(devices[k], SENSORS[spike], ts)] = None
            sent += len(SENSORS)
        producer.flush(30)
        live_s = time.perf_counter() - start
        backlog = warm_n + sent - sum(worker_counts(settings.web_port).values())
        checkpoints = checkpoint_seconds(settings.web_port, since=checkpoints_before)
        time.sleep(args.drain_s)
        clock.stop()
    finally:
        stop_worker(proc)
    latencies = []
    for arrived, event in clock.arrivals:
        key = (event.get("device"), event.get("sensor"), event.get("event_ts"))
        if key in spikes:
            latencies.append(arrived - float(event["event_ts"]))
            del spikes[key]  # the first event of a spike counts
    found = len(latencies)
    lat = np.array(latencies) * 1000.0
    q = (lambda p: float(np.percentile(lat, p))) if found else (lambda p: float("nan"))
    return {
        "engine": engine,
        "batch_within_s": settings.batch_within_s,
        "rate_target": rate,
        "rate_achieved": sent / live_s,
        "seconds": live_s,
        "spikes": found + len(spikes),
        "found": found,
        "p50_ms": q(50),
        "p90_ms": q(90),
        "p99_ms": q(99),
        "max_ms": float(lat.max()) if found else float("nan"),
        "mean_ms": statistics.fmean(lat.tolist()) if found else float("nan"),
        "backlog_at_end": backlog,
        "warm_up_messages": warm_n,
        "warm_up_wait_s": warm_s,
        "anomaly_events": len(clock.arrivals),
        # kafka engine, live phase: checkpoint phases, {phase: [count, total s, over 100 ms]}
        "checkpoints": checkpoints,
    }


def checkpoint_seconds(
    port: int, since: dict[str, list[float]] | None = None
) -> dict[str, list[float]]:
    """The worker's ``vigil_checkpoint_seconds`` per phase: ``[count, total seconds,
    count over 100 ms]``, minus ``since`` (empty for the faust worker, which has none)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "vigil_checkpoint_seconds":
            continue
        for sample in family.samples:
            row = out.setdefault(sample.labels["phase"], [0.0, 0.0, 0.0])
            if sample.name.endswith("_count"):
                row[0] = sample.value
                row[2] += sample.value  # minus those at or under 100 ms, below
            elif sample.name.endswith("_sum"):
                row[1] = sample.value
            elif sample.name.endswith("_bucket") and sample.labels["le"] == "0.1":
                row[2] -= sample.value
    for phase, before in (since or {}).items():
        out[phase] = [now - then for now, then in zip(out.get(phase, before), before, strict=True)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--broker", default=os.environ.get("VIGIL_BROKER"))
    ap.add_argument("--engines", default="kafka,faust")
    ap.add_argument("--rate-kafka", type=float, default=6000.0)
    ap.add_argument("--rate-faust", type=float, default=1200.0)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--warm-ticks", type=int, default=150)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument(
        "--batch-within-s", type=float, help="the workers' batch_within_s (default: settings')"
    )
    ap.add_argument("--drain-s", type=float, default=5.0, help="wait for late events")
    ap.add_argument("--log-dir", help="keep the workers' logs here (default: a temporary dir)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not args.broker:
        ap.error("give --broker (or VIGIL_BROKER)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="vigil-latency-") as tmp:
        log_dir = Path(args.log_dir or tmp)
        for engine in args.engines.split(","):
            rate = args.rate_kafka if engine == "kafka" else args.rate_faust
            rows.append(run_engine(args, engine, rate, log_dir))
    if args.json:
        print(json.dumps(rows))
        return
    print(
        f"{'engine':7} {'rate msg/s':>11} {'achieved':>9} {'spikes found':>13} "
        f"{'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'backlog':>8}"
    )
    for r in rows:
        print(
            f"{r['engine']:7} {r['rate_target']:>11,.0f} {r['rate_achieved']:>9,.0f} "
            f"{r['found']:>6}/{r['spikes']:<6} {r['p50_ms']:>8.0f} {r['p90_ms']:>8.0f} "
            f"{r['p99_ms']:>8.0f} {r['max_ms']:>8.0f} {r['backlog_at_end']:>8,.0f}"
        )
        for phase, (n, total, slow) in r["checkpoints"].items():
            print(
                f"        checkpoint phase {phase:8} {n:>5.0f} in the live phase, "
                f"mean {1000 * total / max(n, 1):6.1f} ms, {slow:.0f} over 100 ms"
            )


if __name__ == "__main__":
    main()

"""How cost grows with devices and sensors, and what a second worker adds.

Two parts, each printed as a table:

1. **Curves, in-process** (the pipeline core, no broker): every device sends
   ``--ticks`` ticks, one batched message per device and tick (correlated random walks
   plus noise), through the default detectors and Granger checks, in batches of 1,000
   messages with the state flushed per batch. First the number of devices varies at
   4 sensors, then the number of sensors at 100 devices. Printed: readings per second
   and microseconds per reading, so a flat line means linear cost.
2. **1 vs 2 workers on Kafka** (with ``--broker``): one-reading messages of
   ``--kafka-devices`` x 4 sensors x ``--kafka-ticks`` ticks on a 4-partition topic,
   produced once; then the kafka engine (``vigil worker --engine kafka``) as one
   worker, then as two workers in one group, each run with a fresh group and state
   topics, timed from the first input processed to the last (summed over the workers'
   ``/metrics``). The machine has 2 cores and the broker runs on it too, so two workers
   compete with the broker; the ratio is what this machine allows, not a law.

    .venv/bin/python bench/scaling.py [--broker 127.0.0.1:19092] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from stream.demo import free_port, start_worker, stop_worker, worker_counts
from stream.embedded import Message, run_embedded
from stream.pipeline import Pipeline
from stream.settings import Settings


def messages(devices: int, sensors: int, ticks: int, seed: int = 0) -> list[Message]:
    """One batched message per device and tick, devices interleaved tick by tick."""
    rng = np.random.default_rng(seed)
    names = [f"s{i}" for i in range(sensors)]
    level = np.zeros(devices)
    mix = rng.normal(1.0, 0.3, (devices, sensors))
    out: list[Message] = []
    for t in range(ticks):
        level += rng.normal(0.0, 0.1, devices)
        values = level[:, None] * mix + rng.normal(0.0, 1.0, (devices, sensors))
        for k in range(devices):
            device = f"dev-{k}"
            body = {
                "device": device,
                "ts": 1.7e9 + t,
                "values": dict(zip(names, values[k].tolist(), strict=True)),
            }
            out.append(("sensors", device.encode(), orjson.dumps(body)))
    return out


def core_rate(devices: int, sensors: int, ticks: int) -> dict[str, Any]:
    msgs = messages(devices, sensors, ticks)
    readings = devices * sensors * ticks
    t0 = time.perf_counter()
    run_embedded(Pipeline(Settings.load()), msgs, 1000)
    seconds = time.perf_counter() - t0
    return {
        "devices": devices,
        "sensors": sensors,
        "ticks": ticks,
        "readings": readings,
        "seconds": seconds,
        "readings_per_s": readings / seconds,
        "us_per_reading": 1e6 * seconds / readings,
    }


def produce_readings(broker: str, topic: str, devices: int, ticks: int) -> int:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": broker})
    admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])[topic].result(30)
    producer = Producer(
        {"bootstrap.servers": broker, "linger.ms": 20, "partitioner": "murmur2_random"}
    )
    n = 0
    for _, key, value in messages(devices, 4, ticks):
        body = orjson.loads(value)
        for sensor, v in body["values"].items():
            reading = {"device": body["device"], "sensor": sensor, "ts": body["ts"], "value": v}
            while True:
                try:
                    producer.produce(topic, orjson.dumps(reading), key)
                    break
                except BufferError:
                    producer.poll(0.05)
            n += 1
    if producer.flush(120):
        raise RuntimeError("not every message was delivered")
    return n


def workers_rate(base: Settings, workers: int, n: int, log_dir: Path) -> dict[str, Any]:
    """``workers`` kafka-engine processes in one fresh group until ``n`` are processed."""
    app = f"scale-{workers}-{uuid.uuid4().hex[:6]}"
    procs = []
    ports = []
    for w in range(workers):
        port = free_port()
        s = base.model_copy(update={"app_id": app, "web_port": port, "engine": "kafka"})
        procs.append(start_worker(s, log_dir / f"{app}-{w}.log"))
        ports.append(port)
    try:
        t0 = None
        first = 0.0
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            for p in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a worker exited ({p.returncode}); see {log_dir}")
            done = 0.0
            for port in ports:
                try:
                    c = worker_counts(port)
                    done += c["processed"] + c["dead_letter"]
                except OSError:
                    pass
            now = time.monotonic()
            if done and t0 is None:
                t0, first = now, done
            if done >= n:
                assert t0 is not None
                rate = (n - first) / max(now - t0, 1e-9)
                return {"workers": workers, "messages": n, "seconds": now - t0, "msg_per_s": rate}
            time.sleep(0.1)
        raise TimeoutError("the workers did not finish in 900 s")
    finally:
        stop_worker(*procs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--broker", default=os.environ.get("VIGIL_BROKER"))
    ap.add_argument("--ticks", type=int, default=60)
    ap.add_argument("--devices", default="10,100,1000,5000")
    ap.add_argument("--sensors", default="2,4,8,16")
    ap.add_argument("--kafka-devices", type=int, default=200)
    ap.add_argument("--kafka-ticks", type=int, default=150)
    ap.add_argument("--skip-curves", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out: dict[str, Any] = {}
    if not args.skip_curves:
        out["by_devices"] = [core_rate(int(d), 4, args.ticks) for d in args.devices.split(",")]
        out["by_sensors"] = [core_rate(100, int(s), args.ticks) for s in args.sensors.split(",")]
    if args.broker:
        uid = uuid.uuid4().hex[:6]
        base = Settings.load(broker=args.broker, topic_prefix=f"scale{uid}.", partitions=4)
        n = produce_readings(
            args.broker, base.topic("sensors"), args.kafka_devices, args.kafka_ticks
        )
        with tempfile.TemporaryDirectory(prefix="vigil-scaling-") as tmp:
            out["workers"] = [workers_rate(base, w, n, Path(tmp)) for w in (1, 2)]
    if args.json:
        print(json.dumps(out))
        return
    for part in ("by_devices", "by_sensors"):
        if part in out:
            print(
                f"{'devices':>8} {'sensors':>8} {'readings':>10} {'readings/s':>11} {'us/reading':>11}"
            )
            for r in out[part]:
                print(
                    f"{r['devices']:>8,} {r['sensors']:>8} {r['readings']:>10,} "
                    f"{r['readings_per_s']:>11,.0f} {r['us_per_reading']:>11.1f}"
                )
    if "workers" in out:
        one = out["workers"][0]["msg_per_s"]
        for r in out["workers"]:
            print(
                f"{r['workers']} worker(s): {r['msg_per_s']:,.0f} msg/s "
                f"({r['msg_per_s'] / one:.2f}x one), {r['messages']:,} messages"
            )


if __name__ == "__main__":
    main()

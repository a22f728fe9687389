"""Kafka throughput on a real broker: bare consumer, the kafka engine, the faust worker.

Produces a simulated plant once (``--devices`` × 4 sensors × ``--ticks``) to three topics,
one JSON reading per message, one message per device and tick, and one message per
device and ``--ticks-per-message`` ticks (10), then measures side by side, each the
median of ``--repeats`` runs with a fresh consumer group:

(a) bare confluent-kafka: consume + ``orjson.loads``, no state (the ceiling);
(b) the kafka engine in-process (:class:`stream.engine_kafka.KafkaEngine`, the loop
    ``vigil worker --engine kafka`` runs, without its HTTP thread) with the default
    detector and Granger checks, state to the changelog, commit per batch;
(b') the same with the detectors run device by device, not stacked across the devices
    of a batch (:mod:`detectors.stacking`), to show what stacking gains;
(c) the same with ``robust_zscore`` and causality off;
(d) the faust worker (``vigil worker`` in a subprocess), timed from its ``/metrics``,
    with ``processing_guarantee`` at_least_once and exactly_once (Kafka transactions),
    and with ``robust_zscore`` and causality off (what detection costs on faust);
(e) a bare faust agent (``bench/anchors/faust_bare.py``): ``take_events`` batches,
    decode, count; no state, no output. The worker's rate over this one is what
    Vigil's pipeline costs on faust;
(f) with ``--quix``, one-reading messages only: a Quix Streams app keeping a per-key,
    per-sensor exponentially weighted z-score in its RocksDB state
    (``bench/anchors/quix_ewz.py``, run from its own environment ``.venv-quix``,
    created on first use: Quix Streams pins an older confluent-kafka than Vigil).

A run is timed from the first message consumed to the last (group join and, for faust,
start-up are left out; they are printed separately for the faust worker). With
``--warm-ticks W`` the plant's first ``W`` ticks go to the topics first, and the kafka
engine and the faust worker are timed from the first message after them: 250 ticks
are all inside the detectors' and the Granger checks' warm-ups (SPOT calibrates on
1,000 scores per key, the Granger checks on 2,000 rows), so the default figures are
those of a fresh worker; ``--warm-ticks 2000`` gives the sustained rate of a worker
past every warm-up (the bare consumer and the anchors read the whole topic: their
work does not change with it). "cpu" is the
process CPU time over wall time for in-process runs (librdkafka threads included; 2.0 =
both cores of a 2-core machine).

    .venv/bin/python bench/bench_kafka.py --broker 127.0.0.1:59092 [--quick] [--quix] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from stream.demo import free_port, start_worker, stop_worker, worker_counts
from stream.engine_kafka import KafkaEngine, changelog_topic
from stream.settings import CausalitySpec, DetectorSpec, Settings
from stream.simulate.plant import Plant, PlantConfig

#: One measured run: (seconds, cpu seconds or None, extra figures).
Run = tuple[float, float | None, dict[str, Any]]


def produce_once(broker: str, topic: str, values: list[tuple[bytes, bytes]], parts: int) -> None:
    admin = AdminClient({"bootstrap.servers": broker})
    admin.create_topics([NewTopic(topic, num_partitions=parts, replication_factor=1)])[
        topic
    ].result(30)
    producer = Producer(
        {
            "bootstrap.servers": broker,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "partitioner": "murmur2_random",
        }
    )
    for key, value in values:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise RuntimeError("not every benchmark message was delivered")


def bare(broker: str, topic: str, n: int) -> Run:
    """(a) consume + decode, nothing else: what one Python process can read."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker,
            "group.id": f"bench-bare-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen = 0
    t0 = c0 = 0.0
    while seen < n:
        msgs = consumer.consume(1000, 0.1)
        if msgs and not seen:
            t0, c0 = time.perf_counter(), time.process_time()
        for m in msgs:
            if m.error() is None:
                orjson.loads(m.value() or b"null")
                seen += 1
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    consumer.close()
    return seconds, cpu, {}


def engine(settings: Settings, n: int, warm: int = 0) -> Run:
    """(b)/(c) the kafka engine's loop in-process until ``n`` inputs are committed,
    timed from the first input (or from the batch after the first ``warm`` inputs)."""
    eng = KafkaEngine(settings)
    mark: list[tuple[float, float, int]] = []  # (wall, cpu, consumed) once past warm

    def until(e: KafkaEngine) -> bool:
        if warm and not mark and e.counts.consumed >= warm:
            mark.append((time.monotonic(), time.process_time(), e.counts.consumed))
        return e.counts.consumed >= n

    c0 = time.process_time()
    counts = eng.run(until=until)
    # Until every input is committed (the last checkpoint), not until the group is left.
    assert counts.first_message_at is not None and counts.last_commit_at is not None
    if warm:
        t0, c0, done = mark[0]
        extra = {"batches": counts.batches, "rate_basis": n - done}
        return counts.last_commit_at - t0, time.process_time() - c0, extra
    seconds = counts.last_commit_at - counts.first_message_at
    # c0 includes the (short) group join: a slight overestimate of CPU per second.
    return seconds, time.process_time() - c0, {"batches": counts.batches}


def poll_interval(done: float, n: int, first: float, elapsed: float) -> float:
    """Seconds until the next look at the worker's ``/metrics``.

    Each look costs the worker a scrape (3–7 ms of its loop on this machine): at 10 a
    second that was several per cent of the rate measured. So it looks once a second
    while far from the end and, near it, after half the time the rest should take at
    the rate so far (at least 50 ms): the end is still caught within a few per cent
    of a second."""
    if elapsed <= 0 or done <= first:
        return 0.1  # not started yet: catch the first input early
    rate = (done - first) / elapsed
    return min(1.0, max(0.05, (n - done) / rate / 2))


def faust(settings: Settings, n: int, log_dir: Path, warm: int = 0) -> Run:
    """(d) ``vigil worker`` (faust) in a subprocess, timed from its ``/metrics`` (from
    the first poll that finds ``warm`` inputs done, when ``warm``)."""
    started = time.monotonic()
    proc = start_worker(settings, log_dir / f"faust-{settings.app_id}.log")
    try:
        t0 = None
        first = 0.0
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"faust worker exited ({proc.returncode}); see {log_dir}")
            try:
                c = worker_counts(settings.web_port)
                done = c["processed"] + c["dead_letter"]
            except OSError:
                done = 0.0
            now = time.monotonic()
            if done and done >= warm and t0 is None:
                t0, first = now, done
            if done >= n:
                assert t0 is not None
                # Messages counted at the first poll were read before t0: leave them out.
                return now - t0, None, {"startup_s": t0 - started, "rate_basis": n - first}
            time.sleep(poll_interval(done, n, first, now - t0 if t0 is not None else 0.0))
        raise TimeoutError("the faust worker did not finish in 900 s")
    finally:
        stop_worker(proc)


REPO = Path(__file__).resolve().parents[1]
QUIX_VENV = REPO / ".venv-quix"
QUIX_VERSION = "3.28.1"


def quix_python() -> Path:
    """The interpreter of ``.venv-quix``, created with Quix Streams on first use."""
    python = QUIX_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", f"quixstreams=={QUIX_VERSION}"],
            check=True,
        )
    return python


def anchor(cmd: list[str], timeout: float = 900) -> Run:
    """(e)/(f) an anchor app in a subprocess; it prints ``{"seconds", "startup_s"}``."""
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    # faust's worker sends stdout through its logger (to stderr): look in both.
    found = [
        ln[ln.index('{"seconds"') : ln.rindex("}") + 1]
        for ln in (out.stdout + out.stderr).splitlines()
        if '{"seconds"' in ln
    ]
    if not found:
        raise RuntimeError(f"{cmd[1]} printed no figure; stderr:\n{out.stderr[-2000:]}")
    fig = json.loads(found[-1])
    return float(fig["seconds"]), None, {"startup_s": fig["startup_s"]}


def median_run(fn: Callable[[], Run], n: int, repeats: int) -> dict[str, Any]:
    """Median messages/s (and CPU, seconds) of ``repeats`` runs of ``fn`` over ``n`` inputs."""
    runs = [fn() for _ in range(repeats)]
    rates = [r[2].get("rate_basis", n) / r[0] for r in runs]
    cpus = [r[1] / r[0] for r in runs if r[1] is not None]
    median = statistics.median(rates)
    extra = {
        k: v for k, v in runs[rates.index(min(rates, key=lambda x: abs(x - median)))][2].items()
    }
    extra.pop("rate_basis", None)
    return {
        "messages_per_s": median,
        "seconds": round(statistics.median(r[0] for r in runs), 3),
        "cpu": round(statistics.median(cpus), 2) if cpus else None,
        "runs": [round(r) for r in rates],
        **extra,
    }


def one_by_one(settings: Settings, n: int, warm: int = 0) -> Run:
    """(b) with the detectors and the Granger checks not stacked across devices (the
    path before stacking)."""
    import detectors.causality.stacked as granger_module
    import stream.pipeline as pipeline_module

    saved = pipeline_module.MIN_KEYS, granger_module.MIN_MONITORS
    pipeline_module.MIN_KEYS = granger_module.MIN_MONITORS = 10**9
    try:
        return engine(settings, n, warm)
    finally:
        pipeline_module.MIN_KEYS, granger_module.MIN_MONITORS = saved


def cases(
    args: argparse.Namespace,
    base: Settings,
    n: int,
    topics: list[str],
    log_dir: Path,
    one_reading: bool,
    warm: int = 0,
) -> list[tuple[str, Callable[[], Run]]]:
    """The measured cases on ``base``'s input topic; new topics' names go to ``topics``.
    The engines are timed past the first ``warm`` inputs."""

    def fresh(**over: Any) -> Settings:
        app = f"{base.topic_prefix}{uuid.uuid4().hex[:6]}"
        s = base.model_copy(update={"app_id": app, **over})
        topics.extend(changelog_topic(s, st) for st in ("sensors", "logs"))
        topics.append(f"{app}-__assignor-__leader")  # faust's
        return s

    topic = base.topic("sensors")
    out: list[tuple[str, Callable[[], Run]]] = [
        ("bare confluent-kafka + orjson (ceiling)", lambda: bare(args.broker, topic, n)),
        ("kafka engine, default detector + Granger", lambda: engine(fresh(), n, warm)),
        ("kafka engine, the same, devices one by one", lambda: one_by_one(fresh(), n, warm)),
        (
            "kafka engine, robust_zscore, no causality",
            lambda: engine(
                fresh(
                    sensor_detector=DetectorSpec(name="robust_zscore"),
                    causality=CausalitySpec(enabled=False),
                ),
                n,
                warm,
            ),
        ),
    ]
    if args.quix and one_reading:
        python = quix_python()
        out.append(
            (
                "Quix Streams, per-key EW z-score, RocksDB",
                lambda: anchor(
                    [
                        str(python),
                        str(REPO / "bench/anchors/quix_ewz.py"),
                        args.broker,
                        topic,
                        str(n),
                    ]
                ),
            )
        )
    if not args.skip_faust:
        out.append(
            (
                "bare faust agent + orjson, take_events",
                lambda: anchor(
                    [
                        sys.executable,
                        str(REPO / "bench/anchors/faust_bare.py"),
                        args.broker,
                        topic,
                        str(n),
                        str(base.partitions),
                    ]
                ),
            )
        )
        for guarantee in ("at_least_once", "exactly_once"):
            out.append(
                (
                    f"faust worker, default detector + Granger, {guarantee}",
                    lambda g=guarantee: faust(  # type: ignore[misc]
                        fresh(
                            web_port=free_port(),
                            data_dir=str(log_dir / uuid.uuid4().hex[:6]),
                            processing_guarantee=g,
                        ),
                        min(n, args.faust_messages or n),
                        log_dir,
                        warm,
                    ),
                )
            )
        # What the pipeline's detection costs on faust: the same worker with the
        # lightest detector and no Granger checks.
        out.append(
            (
                "faust worker, robust_zscore, no causality, at_least_once",
                lambda: faust(
                    fresh(
                        web_port=free_port(),
                        data_dir=str(log_dir / uuid.uuid4().hex[:6]),
                        sensor_detector=DetectorSpec(name="robust_zscore"),
                        causality=CausalitySpec(enabled=False),
                    ),
                    min(n, args.faust_messages or n),
                    log_dir,
                    warm,
                ),
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--broker", default=os.environ.get("VIGIL_BROKER"))
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--ticks", type=int, default=250)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-faust", action="store_true")
    ap.add_argument(
        "--faust-messages",
        type=int,
        default=None,
        help="time the faust worker over the first N messages only (default: all)",
    )
    ap.add_argument(
        "--ticks-per-message",
        type=int,
        default=10,
        help="a third form: this many ticks of a device per message (1: leave it out)",
    )
    ap.add_argument("--forms", default="", help="only the message forms whose name has this")
    ap.add_argument("--cases", default="", help="only the cases whose name has this")
    ap.add_argument(
        "--warm-ticks",
        type=int,
        default=0,
        help="ticks produced first and not timed for the engines (past the warm-ups: 2000)",
    )
    ap.add_argument("--quick", action="store_true", help="50 devices x 100 ticks, 1 run")
    ap.add_argument("--quix", action="store_true", help="add the Quix Streams anchor (f)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep-topics", action="store_true")
    args = ap.parse_args()
    if not args.broker:
        sys.exit("bench_kafka: give --broker or set VIGIL_BROKER")
    if args.quick:
        args.devices, args.ticks, args.repeats = 50, 100, 1

    run = Plant(PlantConfig(n_devices=args.devices, seed=1)).simulate(args.warm_ticks + args.ticks)
    n_readings = args.devices * (args.warm_ticks + args.ticks) * len(run.sensors)
    forms = {
        "one reading per message": [
            (r["device"].encode(), orjson.dumps(r)) for r in run.readings()
        ],
        "one message per device and tick": [
            (r["device"].encode(), orjson.dumps(r)) for r in run.batches()
        ],
    }
    if args.ticks_per_message > 1:
        forms[f"{args.ticks_per_message} ticks of a device per message"] = [
            (r["device"].encode(), orjson.dumps(r))
            for r in run.tick_batches(args.ticks_per_message)
        ]
    if args.forms:
        forms = {name: values for name, values in forms.items() if args.forms in name}
    tag = uuid.uuid4().hex[:6]
    log_dir = Path(tempfile.mkdtemp(prefix=f"bench-kafka-{tag}-"))  # faust logs and data
    rows: list[dict[str, Any]] = []
    topics: list[str] = []
    for i, (form, values) in enumerate(forms.items()):
        base = Settings.load(
            broker=args.broker, topic_prefix=f"bench-{tag}-{i}.", partitions=args.partitions
        )
        produce_once(args.broker, base.topic("sensors"), values, args.partitions)
        topics += [base.topic(t) for t in ("sensors", "logs", "anomalies", "dead_letter")]
        n = len(values)
        # Messages of the warm-up ticks (the forms hold the ticks in time order).
        warm = n * args.warm_ticks // (args.warm_ticks + args.ticks)
        ceiling = None
        measured = cases(args, base, n, topics, log_dir, form.startswith("one reading"), warm)
        for label, fn in measured:
            if args.cases and args.cases not in label and "ceiling" not in label:
                continue
            row = {"case": label, "form": form, "messages": n, **median_run(fn, n, args.repeats)}
            rate = row["messages_per_s"]
            ceiling = ceiling or rate
            row["readings_per_s"] = rate * n_readings / n
            row["of_ceiling"] = rate / ceiling
            rows.append(row)
            if not args.json:
                print(
                    f"{form:32} {label:42} {rate:>9,.0f} msg/s {row['readings_per_s']:>9,.0f}"
                    f" readings/s {rate / ceiling:>6.1%} of ceiling  runs {row['runs']}"
                    + (f"  cpu {row['cpu']:.2f}" if row["cpu"] is not None else "")
                    + (f"  start-up {row['startup_s']:.1f}s" if "startup_s" in row else ""),
                    flush=True,
                )
    if not args.keep_topics:
        admin = AdminClient({"bootstrap.servers": args.broker})
        for fut in admin.delete_topics(sorted(set(topics)), operation_timeout=30).values():
            with contextlib.suppress(Exception):  # a topic never created (logs, say)
                fut.result(30)
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()

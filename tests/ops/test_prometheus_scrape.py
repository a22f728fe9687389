"""A real Prometheus scrapes a real worker: the metrics arrive and move.

A ``vigil worker`` subprocess runs against the test broker (unique topics, app id and
web port); Debian's ``prometheus`` binary runs with a temporary configuration derived
from ops/prometheus/prometheus-local.yml (target rewritten to the worker's port, 1 s
scrape interval, the project's alert rules loaded). A small simulated plant is produced
over about ten seconds, and everything is asserted through Prometheus's HTTP API, as a
dashboard or an alert would see it. Without the binary the test skips; in CI it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from stream.demo import produce, start_worker
from stream.embedded import Message
from stream.settings import Settings
from stream.simulate.plant import Plant, PlantConfig
from stream.topics import create_topics

pytestmark = [pytest.mark.kafka, pytest.mark.prometheus, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
LOCAL_CONFIG = REPO / "ops" / "prometheus" / "prometheus-local.yml"
RULES_DIR = REPO / "ops" / "prometheus" / "rules"
JOB = "vigil-worker"
BAD_MESSAGES = [b"{not json", b'{"device": "pump-000", "sensor": "flow", "value": 1.0}']


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        why = "the `prometheus` binary is not installed (Debian package `prometheus`)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return path


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def _wait_until(what: str, check: Callable[[], Any], timeout: float, proc: Any = None) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        for p in proc or ():
            if p.poll() is not None:
                pytest.fail(f"{what}: a process exited with code {p.returncode}")
        try:
            last = check()
        except OSError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def local_config_for(worker_port: int) -> dict[str, Any]:
    """prometheus-local.yml with the worker's port, 1 s intervals and absolute rule paths."""
    cfg = yaml.safe_load(LOCAL_CONFIG.read_text())
    cfg["global"]["scrape_interval"] = "1s"
    cfg["global"]["evaluation_interval"] = "1s"
    cfg["rule_files"] = [str(LOCAL_CONFIG.parent / f) for f in cfg.get("rule_files", [])]
    jobs = [job for job in cfg["scrape_configs"] if job["job_name"] == JOB]
    assert jobs, f"{LOCAL_CONFIG.name} has no {JOB!r} scrape job"
    for job in jobs:
        job["scrape_interval"] = "1s"
        job["scrape_timeout"] = "1s"
        for sc in job["static_configs"]:
            sc["targets"] = [f"127.0.0.1:{worker_port}" for _ in sc["targets"]]
    return cfg


class Prom:
    """Prometheus's HTTP API on ``base``."""

    def __init__(self, base: str) -> None:
        self.base = base

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.base}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, body = _get(url)
        doc = json.loads(body)
        assert status == 200 and doc["status"] == "success", f"{url}: {status} {body[:500]!r}"
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def scalar(self, expr: str) -> float | None:
        """The value of a one-element vector query (None when empty)."""
        result = self.query(expr)
        assert len(result) <= 1, f"{expr}: {result}"
        return float(result[0]["value"][1]) if result else None


@pytest.fixture()
def settings(kafka_broker: str, tmp_path: Path) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return Settings.load(
        broker=kafka_broker,
        app_id=f"vigil-prom-{tag}",
        topic_prefix=f"prom-{tag}.",
        partitions=2,
        web_port=_free_port(),
        data_dir=str(tmp_path / "data"),
        batch_within_s=0.05,
    )


@pytest.fixture()
def prometheus_binary() -> str:
    """Checked before the worker starts, so a missing binary costs nothing."""
    return _prometheus_binary()


@pytest.fixture()
def worker(
    settings: Settings, prometheus_binary: str, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    create_topics(settings)
    log_path = tmp_path / "worker.log"
    proc = start_worker(settings, log_path)
    try:
        _wait_until(
            "worker /metrics answers",
            lambda: _get(f"http://127.0.0.1:{settings.web_port}/metrics")[0] == 200,
            timeout=120,
            proc=[proc],
        )
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        print("worker log tail:\n" + log_path.read_text(errors="replace")[-3000:])


@pytest.fixture()
def prometheus(
    settings: Settings, prometheus_binary: str, worker: subprocess.Popen[bytes], tmp_path: Path
) -> Iterator[tuple[Prom, subprocess.Popen[bytes]]]:
    binary = prometheus_binary
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(local_config_for(settings.web_port), sort_keys=False))
    port = _free_port()
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until("prometheus ready", lambda: _get(f"{base}/-/ready")[0] == 200, 60, proc=[proc])
        yield Prom(base), proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        print("prometheus log tail:\n" + log_path.read_text(errors="replace")[-3000:])


def plant_chunks(n_chunks: int) -> list[list[Message]]:
    """A small simulated plant (readings in time order) cut into ``n_chunks`` pieces."""
    run = Plant(PlantConfig(n_devices=4, seed=3)).simulate(300)
    messages: list[Message] = [
        ("sensors", rec["device"].encode(), orjson.dumps(rec)) for rec in run.readings()
    ]
    size = -(-len(messages) // n_chunks)
    chunks = [messages[i : i + size] for i in range(0, len(messages), size)]
    for i, bad in enumerate(BAD_MESSAGES):  # and a few messages for the dead-letter path
        chunks[i].append(("sensors", b"pump-000", bad))
    return chunks


def test_prometheus_scrapes_a_live_worker(
    settings: Settings,
    worker: subprocess.Popen[bytes],
    prometheus: tuple[Prom, subprocess.Popen[bytes]],
) -> None:
    prom, prom_proc = prometheus
    procs = [worker, prom_proc]
    target = f"127.0.0.1:{settings.web_port}"
    broker = settings.broker or ""

    # The worker is a healthy target of the project's job.
    _wait_until(
        "up == 1",
        lambda: prom.scalar(f'up{{job="{JOB}", instance="{target}"}}') == 1.0,
        30,
        procs,
    )
    targets = prom.api("targets")["activeTargets"]
    assert [(t["labels"]["job"], t["health"]) for t in targets] == [(JOB, "up")], targets

    # Produce the plant over ~10 s and watch the counters move through Prometheus.
    chunks = plant_chunks(10)
    produce(broker, settings, chunks[0])
    first = _wait_until(
        "vigil_events_total scraped",
        lambda: prom.scalar(f'sum(vigil_events_total{{job="{JOB}"}})'),
        60,
        procs,
    )
    readings_first = prom.scalar(f'sum(vigil_readings_total{{job="{JOB}"}})') or 0.0
    for chunk in chunks[1:]:
        time.sleep(1.0)
        produce(broker, settings, chunk)
    total = sum(len(c) for c in chunks)
    last = _wait_until(
        "every produced message counted",
        lambda: (v := prom.scalar(f'sum(vigil_events_total{{job="{JOB}"}})')) == total and v,
        120,
        procs,
    )
    assert last > first > 0, (first, last)
    readings_last = prom.scalar(f'sum(vigil_readings_total{{job="{JOB}"}})') or 0.0
    assert readings_last > readings_first, (readings_first, readings_last)
    assert readings_last == total - len(BAD_MESSAGES)  # one reading per good message

    # Outcomes and dead letters, by label, as the dashboards and alerts query them.
    sensors = settings.topic("sensors")
    by_outcome = {
        r["metric"]["outcome"]: float(r["value"][1])
        for r in prom.query(f'sum by (outcome) (vigil_events_total{{topic="{sensors}"}})')
    }
    assert by_outcome == {"processed": total - len(BAD_MESSAGES), "dead_letter": len(BAD_MESSAGES)}
    assert prom.scalar("sum(vigil_dead_letter_total)") == len(BAD_MESSAGES)
    # The counters moved within the last minute, as rate()/increase() see it.
    assert (prom.scalar(f'sum(increase(vigil_events_total{{job="{JOB}"}}[1m]))') or 0) > 0
    # Histograms, gauges and the build info are there too.
    assert (prom.scalar('sum(vigil_processing_seconds_count{job="vigil-worker"})') or 0) > 0
    assert (prom.scalar('sum(vigil_event_lag_seconds_count{job="vigil-worker"})') or 0) > 0
    p99 = prom.scalar(
        "histogram_quantile(0.99, sum by (le) (rate(vigil_processing_seconds_bucket[1m])))"
    )
    assert p99 is not None and p99 > 0
    assert prom.scalar('vigil_active_keys{stream="sensors"}') == 4.0  # the plant's devices
    assert prom.query('vigil_incidents_open{severity="critical"}'), "gauge not pre-created"
    assert prom.query("vigil_build_info"), "no build info"

    # The project's alert rules were loaded from ops/prometheus/rules and evaluate cleanly.
    groups = prom.api("rules")["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert "VigilWorkerDown" in rules and "VigilAnomalyStorm" in rules, sorted(rules)
    bad = {n: r.get("lastError") for n, r in rules.items() if r.get("health") != "ok"}
    assert not bad, bad
    assert rules["VigilWorkerDown"]["state"] == "inactive"

"""The worker's HTTP API on a running faust worker: state, incidents, suppressions."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.demo import produce, start_worker, wait_for_worker
from stream.settings import Settings
from stream.simulate.faults import FaultSpec
from stream.simulate.plant import Plant, PlantConfig
from stream.topics import create_topics

pytestmark = [pytest.mark.kafka]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(port: int, path: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw[:1] in (b"{", b"[") else raw.decode()
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_worker_api(kafka_broker: str, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    s = Settings.load(
        broker=kafka_broker,
        app_id=f"vigil-api-{tag}",
        topic_prefix=f"api-{tag}.",
        partitions=2,
        web_port=_free_port(),
        data_dir=str(tmp_path / "data"),
    )
    plant = Plant(PlantConfig(n_devices=3, seed=2))
    # pump-002's flow sticks from tick 400 to the end: a critical episode stays open.
    stuck = FaultSpec("pump-002", ("flow",), "stuck", 400, 600)
    run = plant.simulate(600, [*plant.random_faults(2, 380, kinds=("spike",)), stuck])
    msgs = [("sensors", r["device"].encode(), orjson.dumps(r)) for r in run.batches()]
    create_topics(s)
    proc = start_worker(s, tmp_path / "worker.log")
    try:
        produce(kafka_broker, s, msgs)
        wait_for_worker(proc, s.web_port, len(msgs), timeout=180, log_path=tmp_path / "worker.log")
        status, health = call(s.web_port, "/health")
        assert status == 200 and health["devices"] == 3
        status, state = call(s.web_port, "/api/v1/keys/pump-000")
        assert status == 200 and [x["sensor"] for x in state["sensors"]] == list(run.sensors)
        assert all(x["samples"] == 600 for x in state["sensors"])
        assert all(len(x["recent_scores"]) == 20 for x in state["sensors"])
        assert call(s.web_port, "/api/v1/keys/nope")[0] == 404
        status, incidents = call(s.web_port, "/api/v1/incidents")
        assert status == 200
        assert {"key": "pump-002/flow", "severity": "critical"}.items() <= incidents[0].items()
        status, sup = call(
            s.web_port, "/api/v1/suppressions", "POST", {"pattern": "pump-00*", "minutes": 5}
        )
        assert status == 201 and sup["pattern"] == "pump-00*"
        assert [x["id"] for x in call(s.web_port, "/api/v1/suppressions")[1]] == [sup["id"]]
        assert call(s.web_port, "/api/v1/suppressions", "POST", {"pattern": ""})[0] == 400
        assert call(s.web_port, f"/api/v1/suppressions/{sup['id']}", "DELETE")[0] == 200
        assert call(s.web_port, "/api/v1/suppressions")[1] == []
        status, spec = call(s.web_port, "/openapi.json")
        assert status == 200 and "/api/v1/incidents" in spec["paths"]
        import time

        time.sleep(6)  # the lag gauge is refreshed every 5 s
        metrics_text = call(s.web_port, "/metrics")[1]
        assert f'vigil_consumer_lag{{topic="{s.topic("sensors")}"}} 0.0' in metrics_text
        # What the VigilCriticalIncidentsOpen alert rule watches:
        assert 'vigil_incidents_open{severity="critical"} 1.0' in metrics_text
        # The state is written at each offset commit, timed for operators:
        for phase in ("state", "commit"):
            line = f'vigil_checkpoint_seconds_count{{phase="{phase}"}} '
            counts = [x for x in metrics_text.splitlines() if x.startswith(line)]
            assert counts and float(counts[0].split()[-1]) > 0, phase
    finally:
        proc.terminate()
        proc.wait(60)

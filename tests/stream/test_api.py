"""The HTTP API's functions over a pipeline: key state, incidents, suppressions."""

from __future__ import annotations

import time

import orjson
import pytest

from stream import api
from stream.pipeline import Pipeline, Record
from stream.settings import Settings


def spiky(device: str, n: int, spike_at: int, t0: float) -> list[Record]:
    out = []
    for t in range(n):
        v = 10.0 + (t % 7) * 0.1 + (40.0 if t >= spike_at else 0.0)
        msg = {"device": device, "sensor": "a", "ts": t0 + t, "value": v}
        out.append(Record("t", 0, t, device.encode(), orjson.dumps(msg)))
    return out


def test_key_state_and_incidents() -> None:
    p = Pipeline(Settings.load(warmup=50))
    now = time.time()
    result = p.process_sensors(spiky("d1", 400, 390, now - 1000))
    assert result.anomalies
    state = api.key_state(p, "d1")
    assert state["kind"] == "device" and state["sensors"][0]["sensor"] == "a"
    assert state["sensors"][0]["samples"] == 400 and state["state_bytes"] > 0
    recent = state["sensors"][0]["recent_scores"]
    assert len(recent) == 20 and recent[-1]["ts"] == now - 1000 + 399
    assert recent[-1]["score"] >= state["thresholds"]["warning"]  # the shifted values
    incidents = api.open_incidents(p)
    assert [i["key"] for i in incidents] == ["d1/a"]
    with pytest.raises(api.ApiError) as info:
        api.key_state(p, "nope")
    assert info.value.status == 404
    assert api.to_jsonable({"x": float("nan")}) == {"x": None}


def test_recent_scores_keep_the_last_ones_per_channel_oldest_first() -> None:
    from stream.state import RECENT_SCORES, RecentScores

    ring = RecentScores()
    assert ring.get(0) == [] and ring.get(5) == []
    for t in range(3):
        ring.add(2, float(t), 10.0 + t)  # channels 0 and 1 exist but stay empty
    assert ring.get(2) == [(0.0, 10.0), (1.0, 11.0), (2.0, 12.0)] and ring.get(1) == []
    n = 3 * RECENT_SCORES + 7
    for t in range(n):
        ring.add(0, float(t), -float(t))
    assert ring.get(0) == [(float(t), -float(t)) for t in range(n - RECENT_SCORES, n)]
    assert len(ring.get(2)) == 3  # a neighbour's ring is untouched


def test_suppression_hides_anomalies_until_it_ends() -> None:
    p = Pipeline(Settings.load(warmup=50))
    now = time.time()
    sup = api.add_suppression(p, {"pattern": "d1*", "minutes": 5, "reason": "maintenance"})
    assert [s["id"] for s in api.suppressions(p)] == [sup["id"]]
    assert p.process_sensors(spiky("d1", 400, 390, now - 1000)).anomalies == []
    assert p.process_sensors(spiky("d2", 400, 390, now - 1000)).anomalies  # other devices alert
    api.delete_suppression(p, sup["id"])
    assert p.process_sensors(spiky("d3", 400, 390, now - 1000)).anomalies
    for bad in (
        {},
        {"pattern": ""},
        {"pattern": "x"},
        {"pattern": "x", "minutes": -1},
        {"pattern": "x", "until": 1.0},
    ):
        with pytest.raises(api.ApiError):
            api.add_suppression(p, bad)


def test_openapi_lists_every_route() -> None:
    spec = api.openapi()
    assert spec["openapi"].startswith("3.1")
    assert {
        "/health",
        "/ready",
        "/api/v1/keys/{key}",
        "/api/v1/incidents",
        "/api/v1/suppressions",
    } <= set(spec["paths"])

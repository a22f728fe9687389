"""The worker's HTTP API, as plain functions over the pipeline (the web layer is thin).

Routes (served by ``stream.app`` on ``web_host:web_port``, 127.0.0.1 by default):

==========================  ======  ==================================================
path                        method  what
==========================  ======  ==================================================
``/health``                 GET     the worker is up; keys in memory
``/ready``                  GET     consuming (not rebalancing); 503 otherwise
``/metrics``                GET     Prometheus metrics
``/api/v1/keys/{key}``      GET     a device's or log key's model: sensors, expected
                                    values and scales, thresholds, recent scores,
                                    episodes, causal graph
``/api/v1/incidents``       GET     open anomalous episodes in this worker's memory
``/api/v1/commits``         GET     per input partition: committed, read and
                                    acknowledged offsets (faust worker; why lag stays)
``/api/v1/suppressions``    GET     active maintenance windows
``/api/v1/suppressions``    POST    ``{"pattern", "minutes" | "until", "reason"}``
``/api/v1/suppressions/id`` DELETE  end a window early
``/openapi.json``           GET     this API as OpenAPI 3.1
==========================  ======  ==================================================

Only keys of partitions this worker owns (and has touched since it started) are
visible: each worker answers for its own keys.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from stream import __version__
from stream.pipeline import Pipeline


class ApiError(ValueError):
    """A request that cannot be served; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def health(pipeline: Pipeline) -> dict[str, Any]:
    return {
        "status": "ok",
        "version": __version__,
        "devices": len(pipeline.devices),
        "log_keys": len(pipeline.log_sources),
    }


def key_state(pipeline: Pipeline, key: str) -> dict[str, Any]:
    """The model of a device (or a log key) as an operator wants to see it."""
    device = pipeline.devices.get(key)
    if device is not None:
        expected = device.expected()
        sensors = []
        for i, name in enumerate(device.sensors):
            ep = device.episodes[i]
            sensors.append(
                {
                    "sensor": name,
                    "last_value": _finite(device.last_values[i]),
                    "expected": None if expected is None else _finite(float(expected[0][i])),
                    "scale": None if expected is None else _finite(float(expected[1][i])),
                    "samples": ep.n_seen,
                    "recent_scores": [{"ts": t, "score": sc} for t, sc in device.recent.get(i)],
                    "episode_open_since": ep.open_since,
                    "episode_severity": ep.peak_severity,
                }
            )
        profile = pipeline._profile(key)
        granger = device.granger
        return {
            "kind": "device",
            "key": key,
            "group": profile.group,
            "detector": profile.detector_spec,
            "model_version": profile.model_version,
            "thresholds": {
                "warning": pipeline.thresholds.warning,
                "critical": pipeline.thresholds.critical,
                "warmup": pipeline.settings.warmup,
            },
            "rows": device.n_rows,
            "state_bytes": device.state_size(),
            "sensors": sensors,
            "causal_graph": None if granger is None else granger.baseline_graph(),
            "causal_warmed_up": None if granger is None else granger.warmed_up,
            "shadow": profile.shadow,
            "open_incident": device.incidents.incident_id,
            "feedback": device.feedback.to_dict(),
        }
    source = pipeline.log_sources.get(key)
    if source is not None:
        return {
            "kind": "log",
            "key": key,
            "events": source.n_seen,
            "templates": source.miner.templates(),
            "thresholds": {
                "warning": pipeline.log_thresholds.warning,
                "critical": pipeline.log_thresholds.critical,
            },
            "episodes_open": {
                name: ep.peak_severity
                for name, ep in source.episodes.items()
                if ep.open_since is not None
            },
            "open_incident": source.incidents.incident_id,
            "feedback": source.feedback.to_dict(),
        }
    raise ApiError(404, f"no state for key {key!r} in this worker")


def open_incidents(pipeline: Pipeline) -> list[dict[str, Any]]:
    """Open episodes of every key in memory (with their incident), most severe first."""
    out: list[dict[str, Any]] = []
    for name, dev in pipeline.devices.items():
        for sensor, ep in zip(dev.sensors, dev.episodes, strict=True):
            if ep.open_since is not None:
                out.append(
                    {
                        "key": f"{name}/{sensor}",
                        "device": name,
                        "sensor": sensor,
                        "since": ep.open_since,
                        "severity": ep.peak_severity,
                        "incident_id": dev.incidents.incident_id,
                    }
                )
        if dev.device_episodes.open_since is not None:
            ep = dev.device_episodes
            out.append(
                {
                    "key": name,
                    "device": name,
                    "since": ep.open_since,
                    "severity": ep.peak_severity,
                    "incident_id": dev.incidents.incident_id,
                }
            )
    for key, src in pipeline.log_sources.items():
        for det, ep in src.episodes.items():
            if ep.open_since is not None:
                out.append(
                    {
                        "key": f"{key}/{det}",
                        "detector": det,
                        "since": ep.open_since,
                        "severity": ep.peak_severity,
                        "incident_id": src.incidents.incident_id,
                    }
                )
    rank = {"critical": 0, "warning": 1}
    out.sort(key=lambda i: (rank.get(str(i["severity"]), 2), i["since"]))
    return out


def suppressions(pipeline: Pipeline) -> list[dict[str, Any]]:
    now = time.time()
    return [
        {"id": s.id, "pattern": s.pattern, "until": s.until, "reason": s.reason}
        for s in pipeline.suppressions.values()
        if s.until > now
    ]


def add_suppression(pipeline: Pipeline, body: Any, now: float | None = None) -> dict[str, Any]:
    """Validate a suppression request and start it."""
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    pattern = body.get("pattern")
    if not isinstance(pattern, str) or not pattern.strip() or len(pattern) > 256:
        raise ApiError(400, "'pattern' must be a non-empty string (a shell-style key pattern)")
    now = time.time() if now is None else now
    if "until" in body:
        until = body["until"]
    elif "minutes" in body:
        minutes = body["minutes"]
        if not isinstance(minutes, int | float) or not 0 < minutes <= 7 * 24 * 60:
            raise ApiError(400, "'minutes' must be a number in (0, 10080]")
        until = now + 60.0 * float(minutes)
    else:
        raise ApiError(400, "give 'minutes' or 'until' (epoch seconds)")
    if not isinstance(until, int | float) or not math.isfinite(until) or until <= now:
        raise ApiError(400, "'until' must be a finite time in the future")
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise ApiError(400, "'reason' must be a string")
    sup = pipeline.suppress(pattern, float(until), reason[:500])
    return {"id": sup.id, "pattern": sup.pattern, "until": sup.until, "reason": sup.reason}


def delete_suppression(pipeline: Pipeline, sup_id: str) -> dict[str, Any]:
    if pipeline.suppressions.pop(sup_id, None) is None:
        raise ApiError(404, f"no suppression {sup_id!r}")
    return {"deleted": sup_id}


def _schema(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required or []}


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 description of the routes above."""
    json_ok = {"200": {"description": "OK", "content": {"application/json": {}}}}
    suppression = _schema(
        {
            "pattern": {"type": "string", "maxLength": 256},
            "minutes": {"type": "number", "exclusiveMinimum": 0, "maximum": 10080},
            "until": {"type": "number"},
            "reason": {"type": "string", "maxLength": 500},
        },
        ["pattern"],
    )
    return {
        "openapi": "3.1.0",
        "info": {"title": "Vigil worker API", "version": __version__},
        "paths": {
            "/health": {"get": {"summary": "Liveness", "responses": json_ok}},
            "/ready": {
                "get": {
                    "summary": "Readiness",
                    "responses": {**json_ok, "503": {"description": "rebalancing"}},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "text"}},
                }
            },
            "/api/v1/keys/{key}": {
                "get": {
                    "summary": "Model state of a device or log key",
                    "parameters": [
                        {
                            "name": "key",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {**json_ok, "404": {"description": "not held by this worker"}},
                }
            },
            "/api/v1/incidents": {"get": {"summary": "Open episodes", "responses": json_ok}},
            "/api/v1/commits": {
                "get": {
                    "summary": "Offset commits per input partition (faust worker)",
                    "responses": json_ok,
                }
            },
            "/api/v1/suppressions": {
                "get": {"summary": "Active maintenance windows", "responses": json_ok},
                "post": {
                    "summary": "Start a maintenance window",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": suppression}},
                    },
                    "responses": {
                        "201": {"description": "created"},
                        "400": {"description": "invalid"},
                    },
                },
            },
            "/api/v1/suppressions/{id}": {
                "delete": {
                    "summary": "End a maintenance window",
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {**json_ok, "404": {"description": "unknown"}},
                }
            },
        },
    }


def to_jsonable(obj: Any) -> Any:
    """numpy scalars and non-finite floats made JSON-safe (``None``)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj

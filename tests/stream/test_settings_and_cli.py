"""Settings from files and the environment; the CLI's config check and demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from stream.cli import main
from stream.demo import free_port
from stream.settings import Settings


def test_file_then_environment_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text("partitions: 8\nwarmup: 10\nsensor_detector:\n  name: robust_zscore\n")
    monkeypatch.setenv("VIGIL_WARMUP", "20")
    s = Settings.load(cfg)
    assert (s.partitions, s.warmup, s.sensor_detector.name) == (8, 20, "robust_zscore")


def test_bad_settings_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('partitions = 0\nsensor_detector = { name = "nope" }\n')
    with pytest.raises(ValidationError) as info:
        Settings.load(cfg)
    text = str(info.value)
    assert "partitions" in text and "unknown detector 'nope'" in text
    assert main(["config", "check", str(cfg)]) == 1
    assert "invalid configuration" in capsys.readouterr().err


def test_web_binds_loopback_by_default() -> None:
    assert Settings.load().web_host == "127.0.0.1"


def _check_demo_figures(out: str) -> dict[str, Any]:
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    assert figures["dead_lettered"] == figures["malformed"] > 0
    assert figures["sensors"]["faults"] > 0 and figures["sensors"]["recall"] > 0.5
    png = Path(figures["plot"])
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return figures


def test_demo_embedded_small(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The README's first command on a machine with no broker configured.
    monkeypatch.delenv("VIGIL_BROKER", raising=False)
    rc = main(["demo", "--devices", "6", "--ticks", "1500", "--out", str(tmp_path), "--json"])
    assert rc == 0
    figures = _check_demo_figures(capsys.readouterr().out)
    assert figures["broker"] is None


@pytest.mark.kafka
def test_demo_on_kafka_small(
    kafka_broker: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The same demo given a broker: topics, a worker subprocess, outputs read back.
    args = ["demo", "--broker", kafka_broker, "--web-port", str(free_port())]
    rc = main([*args, "--devices", "6", "--ticks", "1500", "--out", str(tmp_path), "--json"])
    assert rc == 0
    figures = _check_demo_figures(capsys.readouterr().out)
    assert figures["broker"] == kafka_broker
    assert (tmp_path / "worker.log").exists()


def test_gc_threshold_is_set_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Vigil process collects young objects every ``gc_threshold`` (env var too);
    0 leaves Python's setting alone."""
    import gc

    from stream.runtime import tune_gc

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        monkeypatch.setenv("VIGIL_GC_THRESHOLD", "12345")
        tune_gc(Settings.load())
        assert gc.get_threshold() == (12345, 10, 10)
        tune_gc(Settings.load(gc_threshold=0))
        assert gc.get_threshold() == (12345, 10, 10)
    finally:
        gc.set_threshold(*before)

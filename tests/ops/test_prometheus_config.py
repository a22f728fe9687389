"""Prometheus configs under ops/prometheus/ are valid (promtool) and scrape the worker."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIGS = [
    REPO / "ops" / "prometheus" / "prometheus.yml",
    REPO / "ops" / "prometheus" / "prometheus-local.yml",
]


def test_local_config_scrapes_local_worker() -> None:
    cfg = yaml.safe_load(CONFIGS[1].read_text())
    targets = [
        t
        for job in cfg["scrape_configs"]
        for sc in job.get("static_configs", [])
        for t in sc["targets"]
    ]
    assert "127.0.0.1:6066" in targets


@pytest.mark.prometheus
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_promtool_check_config(path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package `prometheus`)")
    proc = subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

"""``wait_for_worker``: a stuck worker is reported early, with its log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stream.demo import free_port, wait_for_worker


def _fake_worker(tmp_path: Path, processed: int) -> tuple[subprocess.Popen[bytes], int]:
    # A process serving a fixed /metrics, as a worker that has stopped making progress.
    (tmp_path / "metrics").write_text(
        f'vigil_events_total{{stream="sensors",outcome="processed"}} {processed}.0\n'
    )
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, port


def test_stalled_worker_fails_early_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text("starting\nconsumer stuck on partition 3\n")
    proc, port = _fake_worker(tmp_path, processed=5)
    try:
        with pytest.raises(TimeoutError) as info:
            wait_for_worker(proc, port, expected=10, timeout=60, log_path=log, stall_s=2)
    finally:
        proc.kill()
        proc.wait()
    text = str(info.value)
    assert "no progress for 2s at 5 of 10" in text
    assert "consumer stuck on partition 3" in text


def test_finished_worker_returns_counts(tmp_path: Path) -> None:
    proc, port = _fake_worker(tmp_path, processed=10)
    try:
        counts = wait_for_worker(proc, port, expected=10, timeout=60, stall_s=30)
    finally:
        proc.kill()
        proc.wait()
    assert counts == {"processed": 10.0, "dead_letter": 0.0}

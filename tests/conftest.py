"""Shared fixtures: the real Kafka broker, and the datasets directory."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _reachable(bootstrap: str, timeout: float = 3.0) -> bool:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def kafka_broker() -> str:
    """The broker that `make test` started (``VIGIL_BROKER``).

    Outside CI a missing broker skips the test; in CI (``CI`` set) it fails it, so
    integration tests can never pass by not running.
    """
    broker = os.environ.get("VIGIL_BROKER", "")
    if broker and _reachable(broker):
        return broker
    why = (
        f"no reachable Kafka broker (VIGIL_BROKER={broker!r}); "
        "run `make test`, which starts ops/kafka/local-kafka.sh"
    )
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """``$VIGIL_DATASETS`` or ``../shared/datasets``; fails in CI when absent."""
    path = Path(os.environ.get("VIGIL_DATASETS", REPO.parent / "shared" / "datasets"))
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"datasets directory not found: {path}")
        pytest.skip(f"datasets directory not found: {path}")
    return path

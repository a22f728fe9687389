"""Reading the cluster's metadata: refusals end the wait at once, nothing else does."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException

from stream.settings import Settings
from stream.topics import _refusal, read_metadata


def test_an_unreachable_broker_is_waited_for_until_the_timeout() -> None:
    # Nothing listens there: the broker may be starting, so the wait is not cut short.
    started = time.monotonic()
    with pytest.raises(KafkaException):
        read_metadata(Settings.load(broker="127.0.0.1:1"), timeout=2.5)
    assert 2.0 < time.monotonic() - started < 15.0


def test_only_refused_logins_and_certificates_are_refusals() -> None:
    assert _refusal(KafkaError(KafkaError._AUTHENTICATION))
    assert _refusal(KafkaError(KafkaError.SASL_AUTHENTICATION_FAILED))
    assert _refusal(KafkaError(KafkaError._SSL))
    assert not _refusal(KafkaError(KafkaError._TRANSPORT))
    assert not _refusal(KafkaError(KafkaError._ALL_BROKERS_DOWN))

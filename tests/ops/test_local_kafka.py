"""Smoke test of the broker started by ops/kafka/local-kafka.sh (`make test` exports VIGIL_BROKER).

Plain produce/consume, and a transactional producer (init/begin/commit plus an
abort) on the single-node KRaft broker: the RF=1 transaction-state settings are
what make this work on one node.
"""

from __future__ import annotations

import time
import uuid

import pytest

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def broker(kafka_broker: str) -> str:
    return kafka_broker


def _consume(broker: str, topic: str, n: int, isolation: str, timeout: float = 30.0) -> list[bytes]:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": broker,
            "group.id": f"vigil-smoke-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "isolation.level": isolation,
            "enable.auto.commit": False,
        }
    )
    got: list[bytes] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert not msg.error(), msg.error()
            got.append(msg.value())
        consumer.commit(asynchronous=False)  # group coordinator works (offsets topic RF=1)
    finally:
        consumer.close()
    return got


def test_metadata(broker: str) -> None:
    from confluent_kafka.admin import AdminClient

    md = AdminClient({"bootstrap.servers": broker}).list_topics(timeout=15)
    assert len(md.brokers) == 1


def test_produce_consume(broker: str) -> None:
    from confluent_kafka import Producer

    topic = f"vigil-smoke-{uuid.uuid4().hex[:8]}"  # auto-created
    producer = Producer({"bootstrap.servers": broker, "enable.idempotence": True})
    for i in range(3):
        producer.produce(topic, key=b"k", value=f"m{i}".encode())
    assert producer.flush(30) == 0
    assert _consume(broker, topic, 3, "read_uncommitted") == [b"m0", b"m1", b"m2"]


def test_transactional_commit(broker: str) -> None:
    from confluent_kafka import Producer

    topic = f"vigil-smoke-tx-{uuid.uuid4().hex[:8]}"
    producer = Producer(
        {"bootstrap.servers": broker, "transactional.id": f"vigil-smoke-{uuid.uuid4().hex[:8]}"}
    )
    producer.init_transactions(60)
    producer.begin_transaction()
    producer.produce(topic, value=b"aborted")
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"committed-1")
    producer.produce(topic, value=b"committed-2")
    producer.commit_transaction(30)
    assert _consume(broker, topic, 2, "read_committed") == [b"committed-1", b"committed-2"]

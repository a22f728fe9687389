"""One producer loop for everything Vigil writes to Kafka's input topics.

The demo, the simulator (``vigil simulate``) and ``vigil replay`` all produce records
in order, optionally on a schedule, wait for every delivery and fail loudly when one
fails. They share this loop; each only builds its producer and its records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

#: Settings of every producer that writes Vigil's *input* topics. Idempotence keeps a
#: partition's records in the order they were produced, without duplicates, when the
#: client retries (a broker restart, a leader change, a topic just created): without it
#: librdkafka may retry one batch behind the next, so a device's readings arrive out of
#: order and its detectors learn a different stream (seen on fresh test brokers: a
#: device's tick 0 stored after its tick 693). ``murmur2_random`` hashes keys as
#: Kafka's Java clients and aiokafka do, so keys land where the workers expect them.
INPUT_PRODUCER_CONFIG: dict[str, Any] = {
    "enable.idempotence": True,
    "linger.ms": 5,
    "partitioner": "murmur2_random",
}

#: ``(topic, key, value)``, ready to send.
Record = tuple[str, bytes | None, bytes]


class DeliveryError(RuntimeError):
    """Kafka reported failed deliveries, or messages were still queued after the flush."""


def produce_all(
    producer: Any,
    records: Iterable[Record],
    *,
    schedule: Callable[[int], float] | None = None,
    on_sent: Callable[[int], None] | None = None,
    flush_timeout: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Produce ``records`` in order with a confluent-kafka ``producer``; return deliveries.

    Parameters
    ----------
    producer
        A ``confluent_kafka.Producer`` (or anything with ``produce``/``poll``/``flush``).
    records
        ``(topic, key, value)`` in send order.
    schedule
        Seconds after the start at which record ``i`` is due; the loop sleeps while it
        is ahead (``None``: as fast as possible).
    on_sent
        Called with the number of records handed to the producer so far.
    flush_timeout
        Seconds to wait for outstanding deliveries at the end.
    clock, sleep
        Injection points for tests.

    Raises
    ------
    DeliveryError
        If any delivery failed, or messages remained queued after the flush.
    """
    errors: list[str] = []
    delivered = 0

    def on_delivery(err: Any, _msg: Any) -> None:
        nonlocal delivered
        if err is None:
            delivered += 1
        else:
            errors.append(str(err))

    t0 = clock()
    for i, (topic, key, value) in enumerate(records):
        if schedule is not None:
            ahead = t0 + schedule(i) - clock()
            if ahead > 0.002:  # sleeping for less is all overhead
                sleep(ahead)
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)  # local queue full: let deliveries drain
        producer.poll(0)
        if errors:
            raise DeliveryError(f"delivery failed: {errors[0]} ({len(errors)} errors)")
        if on_sent is not None:
            on_sent(i + 1)
    remaining = producer.flush(flush_timeout)
    if errors:
        raise DeliveryError(f"delivery failed: {errors[0]} ({len(errors)} errors)")
    if remaining:
        raise DeliveryError(f"{remaining} messages still queued after {flush_timeout:g} s")
    return delivered
